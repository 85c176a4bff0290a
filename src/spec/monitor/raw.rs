//! The YAML shape of a `kind: monitor` document, as written, with source locations.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use crate::spec::raw::{
    Fields, NullAsDefault, OrderedMap, RawRun, StrayKeys, absent, deserialize_fields,
};

/// A scalar read as text whatever its YAML type (`port: 443` and `port: "{{ target.port }}"`).
#[derive(Debug, Clone, Default)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a single value (text or a number)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar(v.to_string()))
    }
}

/// A list of values.
pub type List<T> = Spanned<Vec<Spanned<T>>>;

/// A `kind: monitor` document: one monitor (its keys at the top), or `monitors:` with shared
/// `defaults:`.
pub struct RawDoc {
    /// `kind:` (is `monitor`, or the document would not be read as one).
    pub kind: Spanned<String>,
    /// `defaults:` shared by every entry of `monitors:`.
    pub defaults: Option<Spanned<RawMonitor>>,
    /// `monitors:` in file order.
    pub monitors: Option<List<RawMonitor>>,
    /// The keys of a monitor written at the top.
    pub body: RawMonitor,
    /// Keys that are neither a document's nor a monitor's.
    pub stray: StrayKeys,
}

/// Keys of the document itself (beside a monitor's).
pub const DOC_KEYS: &[&str] = &["kind", "defaults", "monitors"];

/// Every key a document may have (for messages).
pub const ALL_DOC_KEYS: &[&str] = &[
    "kind",
    "defaults",
    "monitors",
    "name",
    "description",
    "every",
    "timeout",
    "check",
    "conditions",
    "degraded_when",
    "unhealthy_after",
    "healthy_after",
    "depends_on",
    "maintenance",
    "tags",
    "from",
    "quorum",
    "on_unhealthy",
    "on_degraded",
    "on_recovered",
    "targets",
];

impl Fields for RawDoc {
    const KEYS: &'static [&'static str] = ALL_DOC_KEYS;

    fn empty() -> Self {
        Self {
            kind: absent(),
            defaults: None,
            monitors: None,
            body: RawMonitor::empty(),
            stray: StrayKeys::default(),
        }
    }

    fn stray(&mut self) -> &mut StrayKeys {
        &mut self.stray
    }

    fn key_at(&mut self, key: &'static str, at: Location) {
        if !DOC_KEYS.contains(&key) {
            self.body.key_at(key, at);
        }
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "kind" => self.kind = map.next_value()?,
            "defaults" => self.defaults = map.next_value()?,
            "monitors" => self.monitors = Some(map.next_value::<NullAsDefault<_>>()?.0),
            other => self.body.read(other, map)?,
        }
        Ok(())
    }
}

deserialize_fields!(RawDoc);

/// One monitor (or `defaults:`), every key optional: required ones are checked after merging
/// with the defaults.
pub struct RawMonitor {
    pub name: Option<Spanned<String>>,
    pub description: Option<Spanned<String>>,
    pub every: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub check: Option<Spanned<RawCheck>>,
    pub conditions: Option<List<String>>,
    pub degraded_when: Option<List<String>>,
    pub unhealthy_after: Option<Spanned<u64>>,
    pub healthy_after: Option<Spanned<u64>>,
    pub depends_on: Option<List<String>>,
    pub maintenance: Option<List<RawWindow>>,
    pub tags: Option<List<Scalar>>,
    pub from: Option<List<OrderedMap<Spanned<Scalar>>>>,
    pub quorum: Option<Spanned<u64>>,
    pub on_unhealthy: Option<List<RawIntervention>>,
    pub on_degraded: Option<List<RawIntervention>>,
    pub on_recovered: Option<List<RawIntervention>>,
    pub targets: Option<Spanned<RawTargets>>,
    /// Where each key read is written, in file order.
    pub keys: Vec<(&'static str, Location)>,
    pub stray: StrayKeys,
}

/// The keys of one monitor.
pub const MONITOR_KEYS: &[&str] = <RawMonitor as Fields>::KEYS;

impl Fields for RawMonitor {
    const KEYS: &'static [&'static str] = &[
        "name",
        "description",
        "every",
        "timeout",
        "check",
        "conditions",
        "degraded_when",
        "unhealthy_after",
        "healthy_after",
        "depends_on",
        "maintenance",
        "tags",
        "from",
        "quorum",
        "on_unhealthy",
        "on_degraded",
        "on_recovered",
        "targets",
    ];

    fn empty() -> Self {
        Self {
            name: None,
            description: None,
            every: None,
            timeout: None,
            check: None,
            conditions: None,
            degraded_when: None,
            unhealthy_after: None,
            healthy_after: None,
            depends_on: None,
            maintenance: None,
            tags: None,
            from: None,
            quorum: None,
            on_unhealthy: None,
            on_degraded: None,
            on_recovered: None,
            targets: None,
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
            "description" => self.description = map.next_value()?,
            "every" => self.every = map.next_value()?,
            "timeout" => self.timeout = map.next_value()?,
            "check" => self.check = map.next_value()?,
            "conditions" => self.conditions = Some(map.next_value::<NullAsDefault<_>>()?.0),
            "degraded_when" => self.degraded_when = Some(map.next_value::<NullAsDefault<_>>()?.0),
            "unhealthy_after" => self.unhealthy_after = map.next_value()?,
            "healthy_after" => self.healthy_after = map.next_value()?,
            "depends_on" => self.depends_on = Some(map.next_value::<NullAsDefault<_>>()?.0),
            "maintenance" => self.maintenance = Some(map.next_value::<NullAsDefault<_>>()?.0),
            "tags" => self.tags = Some(map.next_value::<NullAsDefault<_>>()?.0),
            "from" => self.from = Some(map.next_value::<NullAsDefault<_>>()?.0),
            "quorum" => self.quorum = map.next_value()?,
            "on_unhealthy" => self.on_unhealthy = Some(map.next_value::<NullAsDefault<_>>()?.0),
            "on_degraded" => self.on_degraded = Some(map.next_value::<NullAsDefault<_>>()?.0),
            "on_recovered" => self.on_recovered = Some(map.next_value::<NullAsDefault<_>>()?.0),
            "targets" => self.targets = map.next_value()?,
            _ => {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

deserialize_fields!(RawMonitor);

/// Declares a [`Fields`] struct whose keys are all optional `Spanned` values.
macro_rules! optional_fields {
    ($(#[$doc:meta])* $ty:ident { $($field:ident: $t:ty = $key:literal),* $(,)? }) => {
        $(#[$doc])*
        pub struct $ty {
            $(pub $field: Option<Spanned<$t>>,)*
            /// Where each key read is written, in file order.
            pub keys: Vec<(&'static str, Location)>,
            /// Keys that do not belong here.
            pub stray: StrayKeys,
        }

        impl Fields for $ty {
            const KEYS: &'static [&'static str] = &[$($key),*];

            fn empty() -> Self {
                Self { $($field: None,)* keys: Vec::new(), stray: StrayKeys::default() }
            }

            fn stray(&mut self) -> &mut StrayKeys {
                &mut self.stray
            }

            fn key_at(&mut self, key: &'static str, at: Location) {
                self.keys.push((key, at));
            }

            fn read<'de, A: MapAccess<'de>>(
                &mut self,
                key: &str,
                map: &mut A,
            ) -> Result<(), A::Error> {
                match key {
                    $($key => self.$field = map.next_value()?,)*
                    _ => {
                        map.next_value::<de::IgnoredAny>()?;
                    }
                }
                Ok(())
            }
        }

        deserialize_fields!($ty);
    };
}

optional_fields!(
    /// `check:`: exactly one kind.
    RawCheck {
        http: RawHttp = "http",
        tcp: RawHostPort = "tcp",
        tls: RawHostPort = "tls",
        dns: RawDns = "dns",
        icmp: RawIcmp = "icmp",
        command: RawCommand = "command",
        push: RawPush = "push",
        workflow: RawWorkflowCheck = "workflow",
    }
);

optional_fields!(
    /// `check: { http: ... }`.
    RawHttp {
        url: String = "url",
        method: String = "method",
        headers: OrderedMap<Spanned<Scalar>> = "headers",
        body: String = "body",
        follow_redirects: bool = "follow_redirects",
        insecure_skip_verify: bool = "insecure_skip_verify",
        client_cert: RawClientCert = "client_cert",
        max_body: String = "max_body",
    }
);

optional_fields!(
    /// `client_cert:` of an http check.
    RawClientCert {
        cert: String = "cert",
        key: String = "key",
    }
);

optional_fields!(
    /// `check: { tcp: ... }` and `check: { tls: ... }` (which has no `send`/`expect`).
    RawHostPort {
        host: String = "host",
        port: Scalar = "port",
        send: String = "send",
        expect: String = "expect",
    }
);

optional_fields!(
    /// `check: { dns: ... }`.
    RawDns {
        server: String = "server",
        name: String = "name",
        record: String = "type",
    }
);

optional_fields!(
    /// `check: { icmp: ... }`.
    RawIcmp {
        host: String = "host",
        count: u64 = "count",
    }
);

optional_fields!(
    /// `check: { command: ... }`, like a task.
    RawCommand {
        run: RawRun = "run",
        env: OrderedMap<Spanned<Scalar>> = "env",
        cwd: String = "cwd",
        max_output: String = "max_output",
    }
);

optional_fields!(
    /// `check: { push: ... }`.
    RawPush {
        grace: String = "grace",
    }
);

optional_fields!(
    /// `check: { workflow: ... }`.
    RawWorkflowCheck {
        name: String = "name",
        succeeded_within: String = "succeeded_within",
    }
);

optional_fields!(
    /// One entry of `maintenance:`.
    RawWindow {
        cron: String = "cron",
        duration: String = "duration",
        timezone: String = "timezone",
    }
);

optional_fields!(
    /// One entry of `on_unhealthy:` / `on_degraded:` / `on_recovered:`.
    RawIntervention {
        restart: String = "restart",
        run: String = "run",
        params: OrderedMap<Spanned<Scalar>> = "params",
        command: RawRun = "command",
        env: OrderedMap<Spanned<Scalar>> = "env",
        cwd: String = "cwd",
        timeout: String = "timeout",
        webhook: RawWebhook = "webhook",
        cooldown: String = "cooldown",
        max_attempts: u64 = "max_attempts",
    }
);

optional_fields!(
    /// `webhook:` of an intervention.
    RawWebhook {
        url: String = "url",
        headers: OrderedMap<Spanned<Scalar>> = "headers",
        timeout: String = "timeout",
        retries: u64 = "retries",
    }
);

/// `targets:`: a list of `{column: value}` maps, or `{ csv: FILE }`.
pub enum RawTargets {
    /// Rows written in the document.
    List(Vec<Spanned<OrderedMap<Spanned<Scalar>>>>),
    /// A CSV file beside the document.
    Csv {
        /// `csv:` path, relative to the document's directory.
        file: Option<Spanned<String>>,
        /// Other keys (refused).
        stray: Vec<Spanned<String>>,
    },
}

impl<'de> Deserialize<'de> for RawTargets {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TargetsVisitor)
    }
}

struct TargetsVisitor;

impl<'de> Visitor<'de> for TargetsVisitor {
    type Value = RawTargets;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of `{column: value}` maps, or `{ csv: FILE }`")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawTargets, A::Error> {
        let mut rows = Vec::new();
        while let Some(row) = seq.next_element()? {
            rows.push(row);
        }
        Ok(RawTargets::List(rows))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawTargets, A::Error> {
        let mut file = None;
        let mut stray = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            if key.value == "csv" && file.is_none() {
                file = Some(map.next_value()?);
            } else {
                map.next_value::<de::IgnoredAny>()?;
                stray.push(key);
            }
        }
        Ok(RawTargets::Csv { file, stray })
    }
}
