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

/// A `kind: workflow` document. Required keys default to [`absent`] and are checked after
/// parsing, so every missing one is reported, at a useful place.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkflow {
    /// `kind:` (must be `workflow`).
    #[serde(default = "absent")]
    pub kind: Spanned<String>,
    /// `name:`.
    #[serde(default = "absent")]
    pub name: Spanned<String>,
    /// `description:`.
    #[serde(default)]
    pub description: Option<String>,
    /// `schedule:` cron expression.
    #[serde(default)]
    pub schedule: Option<Spanned<String>>,
    /// `timezone:` IANA name.
    #[serde(default)]
    pub timezone: Option<Spanned<String>>,
    /// `overlap:` policy name.
    #[serde(default)]
    pub overlap: Option<Spanned<String>>,
    /// `catchup:`.
    #[serde(default)]
    pub catchup: Option<bool>,
    /// `catchup_limit:`.
    #[serde(default)]
    pub catchup_limit: Option<u32>,
    /// `fail_fast:`.
    #[serde(default)]
    pub fail_fast: Option<bool>,
    /// `max_active_runs:`.
    #[serde(default)]
    pub max_active_runs: Option<Spanned<u32>>,
    /// `params:` name -> scalar default.
    #[serde(default)]
    pub params: Option<OrderedMap<Option<String>>>,
    /// `tasks:` name -> task, in file order.
    #[serde(default = "absent", deserialize_with = "null_as_default")]
    pub tasks: Spanned<OrderedMap<Spanned<RawTask>>>,
}

/// One entry of `tasks:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTask {
    /// `run:` command.
    #[serde(default = "absent")]
    pub run: Spanned<RawRun>,
    /// `depends_on:` task names.
    #[serde(default)]
    pub depends_on: Option<Vec<Spanned<String>>>,
    /// `trigger:` rule name.
    #[serde(default)]
    pub trigger: Option<Spanned<String>>,
    /// `retries:`.
    #[serde(default)]
    pub retries: Option<u32>,
    /// `backoff:`.
    #[serde(default)]
    pub backoff: Option<RawBackoff>,
    /// `timeout:` duration.
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    /// `env:` name -> template.
    #[serde(default)]
    pub env: Option<OrderedMap<Spanned<String>>>,
    /// `cwd:`.
    #[serde(default)]
    pub cwd: Option<String>,
}

/// `backoff:` of a task; every field is optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    /// `initial:` duration.
    #[serde(default)]
    pub initial: Option<Spanned<String>>,
    /// `max:` duration.
    #[serde(default)]
    pub max: Option<Spanned<String>>,
    /// `multiplier:`.
    #[serde(default)]
    pub multiplier: Option<Spanned<f64>>,
    /// `jitter:`.
    #[serde(default)]
    pub jitter: Option<bool>,
}

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
