//! The YAML shape of a workflow file, as written, with source locations where checks need them.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

/// Placeholder for a required key that is not in the document (see [`is_absent`]).
pub fn absent<T: Default>() -> Spanned<T> {
    Spanned::new(T::default(), Location::UNKNOWN, Location::UNKNOWN)
}

/// True for a value produced by [`absent`].
pub fn is_absent<T>(value: &Spanned<T>) -> bool {
    value.referenced == Location::UNKNOWN
}

/// Reads a value that may be written as null (`key:` alone), keeping its location.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<Spanned<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    let read = Spanned::<Option<T>>::deserialize(deserializer)?;
    Ok(Spanned::new(
        read.value.unwrap_or_default(),
        read.referenced,
        read.defined,
    ))
}

/// Just enough of any document to learn its `kind`.
#[derive(Deserialize)]
pub struct KindProbe {
    /// The document's kind, when present.
    #[serde(default)]
    pub kind: Option<Spanned<String>>,
}

/// Keys of a fixed mapping that were not read into a field: reported by the checks, with
/// their positions, beside every other problem of the file (an unknown key must not hide the
/// rest, as it would if it aborted the parse).
#[derive(Default)]
pub struct StrayKeys {
    /// Keys that are not allowed in this mapping, in file order.
    pub unknown: Vec<Spanned<String>>,
    /// Second and later occurrences of an allowed key.
    pub repeated: Vec<Spanned<String>>,
}

/// A mapping with a fixed set of keys, read by [`FieldsVisitor`].
pub(super) trait Fields: Sized {
    /// Every key allowed, in the order the docs list them.
    const KEYS: &'static [&'static str];
    /// The value before any key is read (required keys [`absent`]).
    fn empty() -> Self;
    fn stray(&mut self) -> &mut StrayKeys;
    /// Reads the value of `key` (one of [`Self::KEYS`]) from `map`.
    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error>;
    /// Called with where each allowed key is written, before its value is read; a mapping
    /// whose checks report about keys (not values) keeps these.
    fn key_at(&mut self, _key: &'static str, _at: Location) {}
}

/// Reads a [`Fields`] mapping, setting unknown and repeated keys aside.
pub(super) struct FieldsVisitor<T>(pub(super) PhantomData<T>);

impl<'de, T: Fields> Visitor<'de> for FieldsVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping (`key: value` lines)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut out = T::empty();
        let mut seen: Vec<&'static str> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            match T::KEYS.iter().find(|k| **k == key.value) {
                Some(k) if seen.contains(k) => {
                    map.next_value::<de::IgnoredAny>()?;
                    out.stray().repeated.push(key);
                }
                Some(k) => {
                    seen.push(k);
                    out.key_at(k, key.referenced);
                    out.read(k, &mut map)?;
                }
                None => {
                    map.next_value::<de::IgnoredAny>()?;
                    out.stray().unknown.push(key);
                }
            }
        }
        Ok(out)
    }
}

/// `Deserialize` for a [`Fields`] type.
macro_rules! deserialize_fields {
    ($ty:ident) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_struct(
                    stringify!($ty),
                    <$ty as $crate::spec::raw::Fields>::KEYS,
                    $crate::spec::raw::FieldsVisitor(std::marker::PhantomData),
                )
            }
        }
    };
}
pub(super) use deserialize_fields;

/// A value written as null (`key:` alone) reads as the default, keeping its location.
pub(super) struct NullAsDefault<T>(pub(super) Spanned<T>);

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for NullAsDefault<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        null_as_default(deserializer).map(NullAsDefault)
    }
}

/// A `kind: workflow` document. Required keys start [`absent`] and are checked after
/// parsing, so every missing one is reported, at a useful place.
pub struct RawWorkflow {
    /// `kind:` (must be `workflow`).
    pub kind: Spanned<String>,
    /// `name:`.
    pub name: Spanned<String>,
    /// `description:`.
    pub description: Option<String>,
    /// `schedule:` cron expression.
    pub schedule: Option<Spanned<String>>,
    /// `timezone:` IANA name.
    pub timezone: Option<Spanned<String>>,
    /// `overlap:` policy name.
    pub overlap: Option<Spanned<String>>,
    /// `catchup:`.
    pub catchup: Option<bool>,
    /// `catchup_limit:` (read wide so that an absurd count gets a clear bound message).
    pub catchup_limit: Option<Spanned<u64>>,
    /// `fail_fast:`.
    pub fail_fast: Option<bool>,
    /// `max_active_runs:`.
    pub max_active_runs: Option<Spanned<u64>>,
    /// `params:` name -> scalar default.
    pub params: Option<OrderedMap<Option<String>>>,
    /// `tasks:` name -> task, in file order.
    pub tasks: Spanned<OrderedMap<Spanned<RawTask>>>,
    /// Keys that are not part of a workflow.
    pub stray: StrayKeys,
}

impl Fields for RawWorkflow {
    const KEYS: &'static [&'static str] = &[
        "kind",
        "name",
        "description",
        "schedule",
        "timezone",
        "overlap",
        "catchup",
        "catchup_limit",
        "fail_fast",
        "max_active_runs",
        "params",
        "tasks",
    ];

    fn empty() -> Self {
        Self {
            kind: absent(),
            name: absent(),
            description: None,
            schedule: None,
            timezone: None,
            overlap: None,
            catchup: None,
            catchup_limit: None,
            fail_fast: None,
            max_active_runs: None,
            params: None,
            tasks: absent(),
            stray: StrayKeys::default(),
        }
    }

    fn stray(&mut self) -> &mut StrayKeys {
        &mut self.stray
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "kind" => self.kind = map.next_value()?,
            "name" => self.name = map.next_value()?,
            "description" => self.description = map.next_value()?,
            "schedule" => self.schedule = map.next_value()?,
            "timezone" => self.timezone = map.next_value()?,
            "overlap" => self.overlap = map.next_value()?,
            "catchup" => self.catchup = map.next_value()?,
            "catchup_limit" => self.catchup_limit = map.next_value()?,
            "fail_fast" => self.fail_fast = map.next_value()?,
            "max_active_runs" => self.max_active_runs = map.next_value()?,
            "params" => self.params = map.next_value()?,
            "tasks" => self.tasks = map.next_value::<NullAsDefault<_>>()?.0,
            // KEYS lists exactly the keys matched above; anything else is read and dropped.
            _ => {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

deserialize_fields!(RawWorkflow);

/// One entry of `tasks:`.
pub struct RawTask {
    /// `run:` command.
    pub run: Spanned<RawRun>,
    /// `depends_on:` task names.
    pub depends_on: Option<Vec<Spanned<String>>>,
    /// `trigger:` rule name.
    pub trigger: Option<Spanned<String>>,
    /// `retries:` (read wide so that an absurd count gets a clear bound message).
    pub retries: Option<Spanned<u64>>,
    /// `backoff:`.
    pub backoff: Option<RawBackoff>,
    /// `timeout:` duration.
    pub timeout: Option<Spanned<String>>,
    /// `max_output:` size.
    pub max_output: Option<Spanned<String>>,
    /// `env:` name -> template.
    pub env: Option<OrderedMap<Spanned<String>>>,
    /// `cwd:`.
    pub cwd: Option<String>,
    /// `agent:` label -> value an agent must have to run the task.
    pub agent: Option<OrderedMap<Spanned<String>>>,
    /// Keys that are not part of a task.
    pub stray: StrayKeys,
}

impl Fields for RawTask {
    const KEYS: &'static [&'static str] = &[
        "run",
        "depends_on",
        "trigger",
        "retries",
        "backoff",
        "timeout",
        "max_output",
        "env",
        "cwd",
        "agent",
    ];

    fn empty() -> Self {
        Self {
            run: absent(),
            depends_on: None,
            trigger: None,
            retries: None,
            backoff: None,
            timeout: None,
            max_output: None,
            env: None,
            cwd: None,
            agent: None,
            stray: StrayKeys::default(),
        }
    }

    fn stray(&mut self) -> &mut StrayKeys {
        &mut self.stray
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "run" => self.run = map.next_value()?,
            "depends_on" => self.depends_on = map.next_value()?,
            "trigger" => self.trigger = map.next_value()?,
            "retries" => self.retries = map.next_value()?,
            "backoff" => self.backoff = map.next_value()?,
            "timeout" => self.timeout = map.next_value()?,
            "max_output" => self.max_output = map.next_value()?,
            "env" => self.env = map.next_value()?,
            "cwd" => self.cwd = map.next_value()?,
            "agent" => self.agent = map.next_value()?,
            // KEYS lists exactly the keys matched above; anything else is read and dropped.
            _ => {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

deserialize_fields!(RawTask);

/// `backoff:` of a task; every field is optional.
pub struct RawBackoff {
    /// `initial:` duration.
    pub initial: Option<Spanned<String>>,
    /// `max:` duration.
    pub max: Option<Spanned<String>>,
    /// `multiplier:`.
    pub multiplier: Option<Spanned<f64>>,
    /// `jitter:`.
    pub jitter: Option<bool>,
    /// Keys that are not part of a backoff.
    pub stray: StrayKeys,
}

impl Fields for RawBackoff {
    const KEYS: &'static [&'static str] = &["initial", "max", "multiplier", "jitter"];

    fn empty() -> Self {
        Self {
            initial: None,
            max: None,
            multiplier: None,
            jitter: None,
            stray: StrayKeys::default(),
        }
    }

    fn stray(&mut self) -> &mut StrayKeys {
        &mut self.stray
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "initial" => self.initial = map.next_value()?,
            "max" => self.max = map.next_value()?,
            "multiplier" => self.multiplier = map.next_value()?,
            "jitter" => self.jitter = map.next_value()?,
            // KEYS lists exactly the keys matched above; anything else is read and dropped.
            _ => {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

deserialize_fields!(RawBackoff);

/// The keys allowed in a workflow, a task and a backoff mapping (for messages).
pub const WORKFLOW_KEYS: &[&str] = <RawWorkflow as Fields>::KEYS;
/// See [`WORKFLOW_KEYS`].
pub const TASK_KEYS: &[&str] = <RawTask as Fields>::KEYS;
/// See [`WORKFLOW_KEYS`].
pub const BACKOFF_KEYS: &[&str] = <RawBackoff as Fields>::KEYS;

/// `run:` as written: a shell string or an argv list.
#[derive(Default)]
pub enum RawRun {
    /// `run: "cmd args"` (also a bare number or boolean, e.g. `run: true`).
    Shell(String),
    /// `run: [prog, arg, ...]`.
    Argv(Vec<Spanned<String>>),
    /// `run:` with no value (or no `run:` at all, see [`absent`]).
    #[default]
    Missing,
}

impl<'de> Deserialize<'de> for RawRun {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RunVisitor)
    }
}

struct RunVisitor;

impl<'de> Visitor<'de> for RunVisitor {
    type Value = RawRun;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a command: a list like [\"prog\", \"arg\"] or a shell string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawRun, E> {
        Ok(RawRun::Shell(v.to_string()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawRun, E> {
        Ok(RawRun::Shell(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawRun, E> {
        Ok(RawRun::Shell(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawRun, E> {
        Ok(RawRun::Shell(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawRun, E> {
        Ok(RawRun::Shell(v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawRun, E> {
        Ok(RawRun::Missing)
    }

    fn visit_none<E: de::Error>(self) -> Result<RawRun, E> {
        Ok(RawRun::Missing)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawRun, A::Error> {
        let mut argv = Vec::new();
        while let Some(arg) = seq.next_element::<Spanned<String>>()? {
            argv.push(arg);
        }
        Ok(RawRun::Argv(argv))
    }
}

/// A mapping read in file order, duplicates kept (they are reported by the checks).
pub struct OrderedMap<V> {
    /// Entries as written.
    pub entries: Vec<(Spanned<String>, V)>,
}

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

struct MapVisitor<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
    type Value = OrderedMap<V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of `name: value` entries")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<V>()?;
            entries.push((key, value));
        }
        Ok(OrderedMap { entries })
    }
}
