//! Monitor checks: what one check probes ([`Probe`]) and what it saw ([`CheckResult`]).
//!
//! The spec reads a monitor's `check:` into a [`Probe`]; `agent/check` runs it (locally or on
//! a remote agent, which is why both halves cross the wire); the monitor machine judges the
//! [`CheckResult`] against the monitor's conditions. Nothing here does IO.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Most bytes of a response body kept for conditions unless a monitor says otherwise.
pub const DEFAULT_MAX_BODY: u64 = 1 << 20;

/// What one check of a monitor probes, with every parameter already validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Probe {
    /// An HTTP or HTTPS request.
    Http(HttpProbe),
    /// A TCP connect, optionally a line sent and a reply expected.
    Tcp(TcpProbe),
    /// A TLS handshake: the chain and its expiry, nothing sent after it.
    Tls(TlsProbe),
    /// One DNS query.
    Dns(DnsProbe),
    /// ICMP echo requests.
    Icmp(IcmpProbe),
    /// A process run by the executor, as a task is.
    Command(CommandProbe),
    /// A dead man's switch: healthy while pings arrive in time.
    Push(PushProbe),
    /// One of our own workflows has succeeded recently enough.
    Workflow(WorkflowProbe),
}

impl Probe {
    /// The kind's name as a user writes it under `check:`.
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Http(_) => "http",
            Probe::Tcp(_) => "tcp",
            Probe::Tls(_) => "tls",
            Probe::Dns(_) => "dns",
            Probe::Icmp(_) => "icmp",
            Probe::Command(_) => "command",
            Probe::Push(_) => "push",
            Probe::Workflow(_) => "workflow",
        }
    }
}

/// An HTTP request and how to treat its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpProbe {
    /// An absolute `http://` or `https://` URL.
    pub url: String,
    /// The request method.
    pub method: HttpMethod,
    /// Request headers in the order written.
    pub headers: Vec<(String, String)>,
    /// Request body, sent as written.
    pub body: Option<String>,
    /// Follow 3xx answers (at most 10 hops) instead of judging the first one.
    pub follow_redirects: bool,
    /// Accept any server certificate (the expiry is still read).
    pub insecure_skip_verify: bool,
    /// A client certificate for mutual TLS.
    pub client_cert: Option<ClientCert>,
    /// Most bytes of the body read; the rest is not read and the result says it was cut.
    pub max_body: u64,
}

/// The methods an HTTP check may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// GET (the default).
    Get,
    /// HEAD.
    Head,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
    /// OPTIONS.
    Options,
}

impl HttpMethod {
    /// The method as it goes on the request line.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Options => "OPTIONS",
        }
    }
}

/// PEM files of a client certificate and its private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCert {
    /// The certificate chain, PEM.
    pub cert: PathBuf,
    /// The private key, PEM.
    pub key: PathBuf,
}

/// A TCP connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpProbe {
    /// A host name or an IP address.
    pub host: String,
    /// The port.
    pub port: u16,
    /// Sent once connected.
    pub send: Option<String>,
    /// The reply must contain this; what was read is the result's body.
    pub expect: Option<String>,
}

/// A TLS handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsProbe {
    /// A host name (also the SNI name) or an IP address.
    pub host: String,
    /// The port.
    pub port: u16,
}

/// One DNS query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsProbe {
    /// `IP` or `IP:PORT` of the server asked; `None` asks the system's resolvers.
    pub server: Option<String>,
    /// The name asked for.
    pub name: String,
    /// The record type asked for.
    pub record: DnsRecord,
}

/// The record types a DNS check may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DnsRecord {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
    /// Canonical name.
    Cname,
    /// Mail exchanger.
    Mx,
    /// Text.
    Txt,
    /// Name server.
    Ns,
    /// Start of authority.
    Soa,
}

/// ICMP echo requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcmpProbe {
    /// A host name or an IP address.
    pub host: String,
    /// Echo requests sent per check; connected when any reply comes back.
    pub count: u8,
}

/// A command run by the executor, its output kept for conditions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandProbe {
    /// Program and arguments, already rendered (a shell string as `sh -c STRING`).
    pub argv: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory (`None`: the monitor file's directory).
    pub cwd: Option<PathBuf>,
    /// Most bytes of output kept (both streams together).
    pub max_output: usize,
}

/// A dead man's switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushProbe {
    /// How late a ping may be, beyond the monitor's `every`, before the check fails.
    pub grace: Duration,
}

/// A workflow watched by its own monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowProbe {
    /// The workflow's name.
    pub name: String,
    /// The check fails when its last success is older than this.
    pub succeeded_within: Duration,
}

/// What one check saw: the values Gatus's placeholders read, and the phase timings
/// blackbox_exporter records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// When the check began (for display; order comes from the store's sequence).
    pub started: Option<DateTime<Utc>>,
    /// From the start to the last byte read, or to the failure: `[RESPONSE_TIME]`.
    pub response_time: Duration,
    /// A connection was made, a reply came back, or the process ran: `[CONNECTED]`.
    pub connected: bool,
    /// Why the probe could not complete (timed out while connecting, refused, bad
    /// certificate, ...), in words for an operator.
    pub error: Option<String>,
    /// Where the time went.
    pub phases: Phases,
    /// The address reached: `[IP]`.
    pub ip: Option<IpAddr>,
    /// The HTTP status code: `[STATUS]`.
    pub status: Option<u16>,
    /// Response headers, names in lower case: `[HEADERS].name`.
    pub headers: Vec<(String, String)>,
    /// The body read (HTTP), the reply read (TCP), the answers one per line (DNS), lossy
    /// UTF-8 and at most the probe's cap: `[BODY]`.
    pub body: String,
    /// The body was longer than the cap and was cut.
    pub body_truncated: bool,
    /// Milliseconds until the soonest expiry in the server's chain, negative once expired:
    /// `[CERTIFICATE_EXPIRATION]`.
    pub certificate_expiration_ms: Option<i64>,
    /// The DNS response code: `[DNS_RCODE]`.
    pub dns_rcode: Option<DnsRcode>,
    /// The command's exit code (`None` when killed by a signal): `[EXIT_CODE]`.
    pub exit_code: Option<i32>,
    /// The command's output, both streams, at most its cap: `[OUTPUT]`.
    pub output: String,
}

/// Time spent in each phase of a check; `None` for a phase the check did not have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phases {
    /// Resolving the host name.
    pub dns: Option<Duration>,
    /// The TCP connect.
    pub connect: Option<Duration>,
    /// The TLS handshake.
    pub tls: Option<Duration>,
    /// From the request sent to the first byte of the answer.
    pub first_byte: Option<Duration>,
    /// Reading the rest of the answer.
    pub transfer: Option<Duration>,
}

/// A DNS response code, named as Gatus and dig name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DnsRcode {
    /// NOERROR.
    NoError,
    /// FORMERR.
    FormErr,
    /// SERVFAIL.
    ServFail,
    /// NXDOMAIN.
    NxDomain,
    /// NOTIMP.
    NotImp,
    /// REFUSED.
    Refused,
    /// Any other code, by number.
    Other(u16),
}

impl fmt::Display for DnsRcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsRcode::NoError => f.write_str("NOERROR"),
            DnsRcode::FormErr => f.write_str("FORMERR"),
            DnsRcode::ServFail => f.write_str("SERVFAIL"),
            DnsRcode::NxDomain => f.write_str("NXDOMAIN"),
            DnsRcode::NotImp => f.write_str("NOTIMP"),
            DnsRcode::Refused => f.write_str("REFUSED"),
            DnsRcode::Other(n) => write!(f, "RCODE{n}"),
        }
    }
}

impl CheckResult {
    /// A check that could not complete, for `why`, after `took`.
    pub fn failed(started: Option<DateTime<Utc>>, took: Duration, why: impl Into<String>) -> Self {
        Self {
            started,
            response_time: took,
            error: Some(why.into()),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_and_a_result_cross_the_wire_unchanged() {
        let probe = Probe::Http(HttpProbe {
            url: "https://127.0.0.1:8443/health".into(),
            method: HttpMethod::Post,
            headers: vec![("Authorization".into(), "Bearer x".into())],
            body: Some("{}".into()),
            follow_redirects: false,
            insecure_skip_verify: true,
            client_cert: None,
            max_body: DEFAULT_MAX_BODY,
        });
        let json = serde_json::to_string(&probe).expect("serialises");
        assert!(json.contains(r#""kind":"http""#), "{json}");
        assert_eq!(serde_json::from_str::<Probe>(&json).expect("parses"), probe);

        let result = CheckResult {
            status: Some(200),
            dns_rcode: Some(DnsRcode::NxDomain),
            certificate_expiration_ms: Some(-5),
            ..CheckResult::failed(None, Duration::from_millis(12), "timed out")
        };
        let json = serde_json::to_string(&result).expect("serialises");
        assert_eq!(
            serde_json::from_str::<CheckResult>(&json).expect("parses"),
            result
        );
        assert_eq!(DnsRcode::NxDomain.to_string(), "NXDOMAIN");
    }
}
