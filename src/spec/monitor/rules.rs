//! What a rendered string of a monitor must look like. A literal is checked once where it is
//! written; a template is checked for every target, where the target's row is written.

use crate::spec::check::valid_name;

/// Longest monitor name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Longest tag, in bytes.
pub const MAX_TAG_BYTES: usize = 64;
/// Longest header value, in bytes.
pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;

/// A rule a rendered value must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A monitor or workflow name.
    Name,
    /// An absolute http:// or https:// URL with a host.
    HttpUrl,
    /// A host name or an IP address.
    Host,
    /// A port from 1 to 65535.
    Port,
    /// A DNS name to query.
    DnsName,
    /// `IP` or `IP:PORT` of a DNS server.
    DnsServer,
    /// A tag.
    Tag,
    /// A supervised service's path, `web/api`.
    ServicePath,
    /// An HTTP header value.
    HeaderValue,
    /// Any text that is not empty.
    NotEmpty,
}

impl Rule {
    /// `Ok` when `s` follows the rule, otherwise what is wrong (to follow the value).
    pub fn check(self, s: &str) -> Result<(), String> {
        let ok = match self {
            Rule::Name => {
                if s.len() > MAX_NAME_BYTES {
                    return Err(format!(
                        "is {} bytes, longer than the limit of {MAX_NAME_BYTES}",
                        s.len()
                    ));
                }
                valid_name(s)
            }
            Rule::HttpUrl => return http_url(s),
            Rule::Host => host(s),
            Rule::Port => s.trim().parse::<u16>().is_ok_and(|p| p > 0),
            Rule::DnsName => dns_name(s),
            Rule::DnsServer => dns_server(s),
            Rule::Tag => {
                !s.is_empty()
                    && s.len() <= MAX_TAG_BYTES
                    && !s
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == ',')
            }
            Rule::ServicePath => s.split('/').all(|seg| valid_name(seg) && seg != "."),
            Rule::HeaderValue => {
                s.len() <= MAX_HEADER_VALUE_BYTES && !s.contains(['\r', '\n', '\0'])
            }
            Rule::NotEmpty => !s.trim().is_empty(),
        };
        if ok {
            Ok(())
        } else {
            Err(self.expected().to_string())
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Rule::Name => {
                "is not a valid name: use only letters, digits, `_`, `.` and `-`, starting with \
                 a letter, digit or `_`"
            }
            Rule::HttpUrl => "is not an absolute http:// or https:// URL with a host",
            Rule::Host => "is not a host name or an IP address",
            Rule::Port => "is not a port from 1 to 65535",
            Rule::DnsName => "is not a DNS name (labels of letters, digits, `-` and `_`)",
            Rule::DnsServer => {
                "is not the address of a DNS server: `IP` or `IP:PORT` (e.g. `127.0.0.1:53`, \
                 `[::1]:53`)"
            }
            Rule::Tag => "is not a tag: 1 to 64 bytes, without spaces, `,` or control characters",
            Rule::ServicePath => {
                "is not the path of a supervised service or supervisor, like `web/api` or `web`"
            }
            Rule::HeaderValue => "is not a header value: at most 8 KiB, without line breaks",
            Rule::NotEmpty => "is empty",
        }
    }
}

fn http_url(s: &str) -> Result<(), String> {
    if s.len() > MAX_URL_BYTES {
        return Err(format!(
            "is {} bytes, longer than the limit of {MAX_URL_BYTES}",
            s.len()
        ));
    }
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    let ok = rest.is_some_and(|r| {
        let authority = r.split(['/', '?', '#']).next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        authority_ok(host_port) && !r.chars().any(|c| c.is_whitespace() || c.is_control())
    });
    if ok {
        Ok(())
    } else {
        Err(Rule::HttpUrl.expected().to_string())
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`, with a non-empty host and a port of 1-65535.
fn authority_ok(host_port: &str) -> bool {
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, after)) => match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return false,
            },
            None => return false,
        },
        None => match host_port.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => return false,
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        },
    };
    !host.is_empty() && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

fn host(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    dns_name(s)
}

fn dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '*')
        })
}

fn dns_server(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
        || s.parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.port() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_hosts_and_servers() {
        for ok in [
            "http://127.0.0.1:8080/health",
            "https://example.com",
            "https://[::1]:8443/x?y#z",
            "http://user:pw@host:1/",
        ] {
            assert!(Rule::HttpUrl.check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://x",
            "http://",
            "example.com/health",
            "http://a b/",
            "http://h:0/",
            "http://h:99999/",
        ] {
            assert!(Rule::HttpUrl.check(bad).is_err(), "{bad}");
        }
        assert!(Rule::Host.check("db-1.internal").is_ok());
        assert!(Rule::Host.check("::1").is_ok());
        assert!(Rule::Host.check("a b").is_err());
        assert!(Rule::DnsServer.check("1.1.1.1:53").is_ok());
        assert!(Rule::DnsServer.check("[::1]:53").is_ok());
        assert!(Rule::DnsServer.check("dns.google").is_err());
        assert!(Rule::ServicePath.check("web/api").is_ok());
        assert!(Rule::ServicePath.check("web//api").is_err());
        assert!(Rule::Port.check("0").is_err());
    }
}
