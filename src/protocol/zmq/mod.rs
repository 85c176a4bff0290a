//! The ZeroMQ transport of the [`Client`](super::api::Client) protocol.
//!
//! A principal [`serve`]s on two sockets: a ROUTER for requests and a PUB for events. A face
//! connects a [`ZmqClient`], which implements `Client` just like the in-process
//! `PrincipalHandle`, so every face works the same over the network.
//!
//! Every message is one frame of JSON: an envelope `{"v": PROTOCOL_VERSION, "id": u64,
//! "body": ...}` whose body is a `Request`, a `Response` or an `Event`. A reply carries the id of
//! its request; events carry an increasing sequence number, so a subscriber can tell when it
//! missed some.
//!
//! The transport is treated as unreliable ("Paranoid Pirate" in the ZeroMQ guide): frames that
//! do not parse are logged and dropped, every call has a deadline, and a client whose request
//! went unanswered throws its socket away and opens a new one with a fresh identity rather than
//! trusting the `zeromq` crate's own reconnects.

pub mod agent_link;
pub mod agents;
pub mod auth;
mod client;
pub mod keys;
pub mod limits;
mod listen;
mod server;
mod shares;
mod wire;

use std::path::Path;

pub use client::ZmqClient;
pub use server::{
    Bound, MAX_IN_FLIGHT, MAX_IN_FLIGHT_PER_PEER, serve, serve_principal, serve_principal_curve,
};
pub use shares::{MAX_LONG_POLLS_PER_KEY, OPERATOR_RESERVE, SHARED_SHARE};

/// Largest message (bytes) either side sends or accepts. A peer that declares a larger one
/// is disconnected by the socket before anything is allocated for it.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Largest message (bytes) a subscriber may send to the events socket: all it sends is its
/// handshake and subscriptions, a few bytes each. A larger one disconnects it.
pub const MAX_SUBSCRIBER_MESSAGE: usize = 4096;

/// Where a principal listens: requests (ROUTER) and events (PUB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The ROUTER socket requests are sent to, e.g. `tcp://127.0.0.1:5555`.
    pub requests: String,
    /// The PUB socket events are published on, e.g. `tcp://127.0.0.1:5556`.
    pub events: String,
}

impl Endpoints {
    /// For `tcp://HOST:PORT` the events socket is `tcp://HOST:PORT+1`; for `ipc://PATH` it is
    /// `ipc://PATH.events`. Port 0 asks for free ports for both (see [`serve`]'s answer for the
    /// ones picked). Error text for anything else.
    pub fn from_listen(listen: &str) -> Result<Endpoints, String> {
        let usage = "use tcp://HOST:PORT (such as tcp://127.0.0.1:5555) or ipc://PATH";
        if let Some(address) = listen.strip_prefix("tcp://") {
            let Some((host, port)) = address.rsplit_once(':') else {
                return Err(format!("`{listen}` has no port: {usage}"));
            };
            if host.is_empty() {
                return Err(format!("`{listen}` has no host: {usage}"));
            }
            let port: u16 = port
                .parse()
                .map_err(|_| format!("`{port}` in `{listen}` is not a port (0-65535): {usage}"))?;
            let events_port = match port {
                // Two ephemeral ports: PORT+1 of "any port" means nothing.
                0 => 0,
                p => p.checked_add(1).ok_or_else(|| {
                    format!(
                        "`{listen}` leaves no room for the events socket at PORT+1; \
                         choose a port below 65535"
                    )
                })?,
            };
            let endpoints = Endpoints {
                requests: format!("tcp://{host}:{port}"),
                events: format!("tcp://{host}:{events_port}"),
            };
            // Let the crate judge the host too, so that a bad one is reported here and not
            // as a puzzling bind failure later.
            check_endpoint(&endpoints.requests).map_err(|e| e.to_string())?;
            Ok(endpoints)
        } else if let Some(path) = listen.strip_prefix("ipc://") {
            if path.is_empty() {
                return Err(format!("`{listen}` has no socket path: {usage}"));
            }
            Ok(Endpoints {
                requests: listen.to_string(),
                events: format!("{listen}.events"),
            })
        } else {
            Err(format!("`{listen}` is not a listen address: {usage}"))
        }
    }

    /// Where agents connect beside the requests endpoint `requests`: `tcp://HOST:PORT+2`
    /// (a free port for port 0, or when PORT+2 is past the last port), `ipc://PATH.agents`.
    /// Agents learn it from `status`, so it need not be guessed.
    pub fn agents_for(requests: &str) -> String {
        if let Some((host, port)) = requests
            .strip_prefix("tcp://")
            .and_then(|a| a.rsplit_once(':'))
        {
            let port = match port.parse::<u16>() {
                Ok(0) | Err(_) => 0,
                Ok(p) => p.checked_add(2).unwrap_or(0),
            };
            format!("tcp://{host}:{port}")
        } else {
            format!("{requests}.agents")
        }
    }

    /// The local socket of a data dir: `ipc://<data_dir>/principal.sock` (+ `.events`).
    pub fn for_data_dir(data_dir: &Path) -> Endpoints {
        let socket = data_dir.join("principal.sock");
        Endpoints {
            requests: format!("ipc://{}", socket.display()),
            events: format!("ipc://{}.events", socket.display()),
        }
    }
}

/// Why the ZeroMQ transport could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZmqError {
    /// An endpoint string is not something ZeroMQ can use.
    #[error("`{endpoint}` is not a usable endpoint ({reason}); use tcp://HOST:PORT or ipc://PATH")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A socket could not listen on its endpoint.
    #[error("cannot listen on {endpoint}: {reason}")]
    Bind {
        /// The endpoint as given.
        endpoint: String,
        /// Why, and what to do about it.
        reason: String,
    },
}

/// Checks that `endpoint` parses as a ZeroMQ endpoint.
fn check_endpoint(endpoint: &str) -> Result<zeromq::Endpoint, ZmqError> {
    endpoint
        .parse::<zeromq::Endpoint>()
        .map_err(|e| ZmqError::InvalidEndpoint {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_map_to_two_endpoints() {
        assert_eq!(
            Endpoints::from_listen("tcp://127.0.0.1:5555"),
            Ok(Endpoints {
                requests: "tcp://127.0.0.1:5555".into(),
                events: "tcp://127.0.0.1:5556".into(),
            })
        );
        assert_eq!(
            Endpoints::from_listen("tcp://127.0.0.1:0").map(|e| e.events),
            Ok("tcp://127.0.0.1:0".into())
        );
        assert_eq!(
            Endpoints::from_listen("ipc:///run/x.sock"),
            Ok(Endpoints {
                requests: "ipc:///run/x.sock".into(),
                events: "ipc:///run/x.sock.events".into(),
            })
        );
        for bad in [
            "127.0.0.1:5555",
            "tcp://127.0.0.1",
            "tcp://:5555",
            "tcp://127.0.0.1:70000",
            "tcp://127.0.0.1:65535",
            "ipc://",
            "udp://127.0.0.1:1",
        ] {
            let err = Endpoints::from_listen(bad).expect_err(bad);
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn agents_listen_two_ports_up_or_on_a_free_port() {
        assert_eq!(
            Endpoints::agents_for("tcp://127.0.0.1:5555"),
            "tcp://127.0.0.1:5557"
        );
        // "Any port" for requests is any port for agents too, never PORT+2 of the one picked.
        assert_eq!(
            Endpoints::agents_for("tcp://127.0.0.1:0"),
            "tcp://127.0.0.1:0"
        );
        assert_eq!(Endpoints::agents_for("tcp://[::1]:65534"), "tcp://[::1]:0");
        assert_eq!(
            Endpoints::agents_for("ipc:///run/x.sock"),
            "ipc:///run/x.sock.agents"
        );
    }

    #[test]
    fn data_dir_socket_is_inside_the_data_dir() {
        let e = Endpoints::for_data_dir(Path::new("/var/lib/ops"));
        assert_eq!(e.requests, "ipc:///var/lib/ops/principal.sock");
        assert_eq!(e.events, "ipc:///var/lib/ops/principal.sock.events");
    }
}
