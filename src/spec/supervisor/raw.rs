//! The YAML shape of a `kind: supervisor` document, as written, with source locations.

use serde::de::{self, MapAccess};
use serde_saphyr::{Location, Spanned};

use crate::spec::raw::{
    Fields, NullAsDefault, OrderedMap, RawBackoff, RawRun, StrayKeys, absent, deserialize_fields,
};

/// A `kind: supervisor` document. Required keys start [`absent`].
pub struct RawSupervisor {
    /// `kind:` (is `supervisor`, or the document would not be read as one).
    pub kind: Spanned<String>,
    /// `name:`.
    pub name: Spanned<String>,
    /// `description:`.
    pub description: Option<String>,
    /// `strategy:`, `intensity:`, `period:`, `auto_shutdown:`, `children:`.
    pub body: RawBody,
    /// Keys that are not part of a supervisor.
    pub stray: StrayKeys,
}

/// What a supervisor document and an inline supervisor have in common.
#[derive(Default)]
pub struct RawBody {
    /// `strategy:` name.
    pub strategy: Option<Spanned<String>>,
    /// `intensity:` (read wide so that an absurd count gets a clear bound message).
    pub intensity: Option<Spanned<u64>>,
    /// `period:` duration.
    pub period: Option<Spanned<String>>,
    /// `auto_shutdown:` name.
    pub auto_shutdown: Option<Spanned<String>>,
    /// `children:` in order.
    pub children: Option<Spanned<Vec<Spanned<RawChild>>>>,
}

impl RawBody {
    /// Reads `key` if it is one of the body's keys; false otherwise.
    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        match key {
            "strategy" => self.strategy = map.next_value()?,
            "intensity" => self.intensity = map.next_value()?,
            "period" => self.period = map.next_value()?,
            "auto_shutdown" => self.auto_shutdown = map.next_value()?,
            "children" => {
                self.children = Some(map.next_value::<NullAsDefault<_>>()?.0);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl Fields for RawSupervisor {
    const KEYS: &'static [&'static str] = &[
        "kind",
        "name",
        "description",
        "strategy",
        "intensity",
        "period",
        "auto_shutdown",
        "children",
    ];

    fn empty() -> Self {
        Self {
            kind: absent(),
            name: absent(),
            description: None,
            body: RawBody::default(),
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
            other => {
                if !self.body.read(other, map)? {
                    // KEYS lists exactly the keys matched; anything else is read and dropped.
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

deserialize_fields!(RawSupervisor);

/// One entry of `children:`: a service (`run:`), an inline supervisor (`children:`) or a
/// supervisor document used by name (`supervisor: NAME`). All their keys are read here; the
/// checks decide which form it is and report keys that do not belong to it.
pub struct RawChild {
    /// `name:`.
    pub name: Option<Spanned<String>>,
    /// `supervisor:` name of another document.
    pub supervisor: Option<Spanned<String>>,
    /// `restart:` type.
    pub restart: Option<Spanned<String>>,
    /// `significant:`.
    pub significant: Option<Spanned<bool>>,
    /// `run:` command of a service.
    pub run: Option<Spanned<RawRun>>,
    /// `env:` name -> template.
    pub env: Option<OrderedMap<Spanned<String>>>,
    /// `cwd:`.
    pub cwd: Option<String>,
    /// `backoff:`.
    pub backoff: Option<RawBackoff>,
    /// `stable_after:` duration.
    pub stable_after: Option<Spanned<String>>,
    /// `max_output:` size.
    pub max_output: Option<Spanned<String>>,
    /// `ready:`.
    pub ready: Option<Spanned<RawReady>>,
    /// `stop:`.
    pub stop: Option<RawStop>,
    /// The keys of an inline supervisor.
    pub body: RawBody,
    /// Where each key read is written, in file order.
    pub keys: Vec<(&'static str, Location)>,
    /// Keys that no child form has.
    pub stray: StrayKeys,
}

/// Keys of a child that is a service.
pub const SERVICE_KEYS: &[&str] = &[
    "name",
    "run",
    "env",
    "cwd",
    "restart",
    "backoff",
    "stable_after",
    "max_output",
    "ready",
    "stop",
    "significant",
];
/// Keys of a child that is an inline supervisor.
pub const INLINE_KEYS: &[&str] = &[
    "name",
    "strategy",
    "intensity",
    "period",
    "auto_shutdown",
    "children",
    "restart",
    "significant",
];
/// Keys of a child that uses a supervisor document by name.
pub const REFERENCE_KEYS: &[&str] = &["supervisor", "restart", "significant"];

impl Fields for RawChild {
    const KEYS: &'static [&'static str] = &[
        "name",
        "supervisor",
        "restart",
        "significant",
        "run",
        "env",
        "cwd",
        "backoff",
        "stable_after",
        "max_output",
        "ready",
        "stop",
        "strategy",
        "intensity",
        "period",
        "auto_shutdown",
        "children",
    ];

    fn empty() -> Self {
        Self {
            name: None,
            supervisor: None,
            restart: None,
            significant: None,
            run: None,
            env: None,
            cwd: None,
            backoff: None,
            stable_after: None,
            max_output: None,
            ready: None,
            stop: None,
            body: RawBody::default(),
            keys: Vec::new(),
            stray: StrayKeys::default(),
        }
    }

    fn stray(&mut self) -> &mut StrayKeys {
        &mut self.stray
    }

    fn key_at(&mut self, key: &'static str, at: Location) {
        self.keys.push((key, at));
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "name" => self.name = map.next_value()?,
            "supervisor" => self.supervisor = map.next_value()?,
            "restart" => self.restart = map.next_value()?,
            "significant" => self.significant = map.next_value()?,
            "run" => self.run = Some(map.next_value::<NullAsDefault<_>>()?.0),
            "env" => self.env = map.next_value()?,
            "cwd" => self.cwd = map.next_value()?,
            "backoff" => self.backoff = map.next_value()?,
            "stable_after" => self.stable_after = map.next_value()?,
            "max_output" => self.max_output = map.next_value()?,
            "ready" => self.ready = map.next_value()?,
            "stop" => self.stop = map.next_value()?,
            other => {
                if !self.body.read(other, map)? {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

deserialize_fields!(RawChild);

/// `ready:` of a service: one probe and an optional `timeout`.
pub struct RawReady {
    /// `tcp: HOST:PORT`.
    pub tcp: Option<Spanned<String>>,
    /// `http: URL`.
    pub http: Option<Spanned<String>>,
    /// `command:` argv or shell string.
    pub command: Option<Spanned<RawRun>>,
    /// `log: REGEX`.
    pub log: Option<Spanned<String>>,
    /// `notify: true`.
    pub notify: Option<Spanned<bool>>,
    /// `timeout:` duration.
    pub timeout: Option<Spanned<String>>,
    /// Where each probe key is written, in file order.
    pub keys: Vec<(&'static str, Location)>,
    /// Keys that are not part of a readiness check.
    pub stray: StrayKeys,
}

/// Keys of `ready:` that name a probe.
pub const PROBE_KEYS: &[&str] = &["tcp", "http", "command", "log", "notify"];

impl Fields for RawReady {
    const KEYS: &'static [&'static str] = &["tcp", "http", "command", "log", "notify", "timeout"];

    fn empty() -> Self {
        Self {
            tcp: None,
            http: None,
            command: None,
            log: None,
            notify: None,
            timeout: None,
            keys: Vec::new(),
            stray: StrayKeys::default(),
        }
    }

    fn stray(&mut self) -> &mut StrayKeys {
        &mut self.stray
    }

    fn key_at(&mut self, key: &'static str, at: Location) {
        if PROBE_KEYS.contains(&key) {
            self.keys.push((key, at));
        }
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "tcp" => self.tcp = map.next_value()?,
            "http" => self.http = map.next_value()?,
            "command" => self.command = Some(map.next_value::<NullAsDefault<_>>()?.0),
            "log" => self.log = map.next_value()?,
            "notify" => self.notify = map.next_value()?,
            "timeout" => self.timeout = map.next_value()?,
            _ => {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

deserialize_fields!(RawReady);

/// `stop:` of a service.
pub struct RawStop {
    /// `signal:` name.
    pub signal: Option<Spanned<String>>,
    /// `grace:` duration.
    pub grace: Option<Spanned<String>>,
    /// Keys that are not part of a stop policy.
    pub stray: StrayKeys,
}

impl Fields for RawStop {
    const KEYS: &'static [&'static str] = &["signal", "grace"];

    fn empty() -> Self {
        Self {
            signal: None,
            grace: None,
            stray: StrayKeys::default(),
        }
    }

    fn stray(&mut self) -> &mut StrayKeys {
        &mut self.stray
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "signal" => self.signal = map.next_value()?,
            "grace" => self.grace = map.next_value()?,
            _ => {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

deserialize_fields!(RawStop);

/// See [`RawSupervisor`].
pub const SUPERVISOR_KEYS: &[&str] = <RawSupervisor as Fields>::KEYS;
/// See [`RawReady`].
pub const READY_KEYS: &[&str] = <RawReady as Fields>::KEYS;
/// See [`RawStop`].
pub const STOP_KEYS: &[&str] = <RawStop as Fields>::KEYS;
