//! Probes against local servers on 127.0.0.1, each bounded in time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::Prober;
use crate::protocol::check::{Probe, TcpProbe, TlsProbe};

async fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

fn tcp(port: u16, send: Option<&str>, expect: Option<&str>) -> Probe {
    Probe::Tcp(TcpProbe {
        host: "127.0.0.1".into(),
        port,
        send: send.map(Into::into),
        expect: expect.map(Into::into),
    })
}

#[tokio::test]
async fn tcp_sends_and_finds_the_expected_reply() {
    let (l, port) = listener().await;
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"PING\n");
        s.write_all(b"+PONG\r\n").await.expect("write");
    });
    let r = Prober::new()
        .run(
            &tcp(port, Some("PING\n"), Some("PONG")),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(r.error, None, "{r:?}");
    assert!(r.connected);
    assert_eq!(r.body, "+PONG\r\n");
    assert!(r.phases.connect.is_some() && r.phases.transfer.is_some());
    assert_eq!(r.ip, Some([127, 0, 0, 1].into()));
}

#[tokio::test]
async fn a_refused_port_is_a_clear_failure() {
    let (l, port) = listener().await;
    drop(l);
    let r = Prober::new()
        .run(&tcp(port, None, None), Duration::from_secs(5))
        .await;
    assert!(!r.connected);
    let error = r.error.expect("an error");
    assert!(error.contains("connect to 127.0.0.1"), "{error}");
}

#[tokio::test]
async fn a_target_that_accepts_and_never_answers_is_cut_at_the_timeout() {
    let (l, port) = listener().await;
    let held = tokio::spawn(async move {
        let mut keep = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            keep.push(s);
        }
    });
    let t = Instant::now();
    let r = Prober::new()
        .run(
            &tcp(port, Some("hi\n"), Some("never")),
            Duration::from_millis(300),
        )
        .await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "held {:?}",
        t.elapsed()
    );
    assert!(r.error.expect("an error").contains("timed out"));
    held.abort();
}

#[tokio::test]
async fn a_trickling_target_is_cut_at_the_timeout() {
    let (l, port) = listener().await;
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        for _ in 0..30 {
            if s.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let t = Instant::now();
    let r = Prober::new()
        .run(&tcp(port, None, Some("done")), Duration::from_millis(1500))
        .await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "held {:?}",
        t.elapsed()
    );
    assert!(r.error.expect("an error").contains("timed out"));
    server.abort();
}

/// A TLS acceptor for `localhost` with a self-signed certificate valid from 2000 until the
/// start of `not_after_year`.
pub(crate) fn self_signed_acceptor(not_after_year: i32) -> tokio_rustls::TlsAcceptor {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
    let cert = params.self_signed(&key).expect("cert");
    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(super::ring_provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A TLS server on 127.0.0.1 with a self-signed certificate valid between the two dates.
async fn tls_server(not_after_year: i32) -> u16 {
    let acceptor = self_signed_acceptor(not_after_year);
    let (l, port) = listener().await;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(s)).await;
            });
        }
    });
    port
}

fn tls(port: u16) -> Probe {
    Probe::Tls(TlsProbe {
        host: "localhost".into(),
        port,
    })
}

#[tokio::test]
async fn tls_reads_a_self_signed_chain_and_its_expiry() {
    let port = tls_server(2100).await;
    let r = Prober::new().run(&tls(port), Duration::from_secs(5)).await;
    assert_eq!(r.error, None, "{r:?}");
    assert!(r.phases.tls.is_some());
    let days = r.certificate_expiration_ms.expect("an expiry") / 86_400_000;
    println!("self-signed chain expires in {days} days");
    assert!(days > 365 * 50, "{days}");
}

#[tokio::test]
async fn tls_says_an_expired_chain_has_expired() {
    let port = tls_server(2001).await;
    let r = Prober::new().run(&tls(port), Duration::from_secs(5)).await;
    let ms = r.certificate_expiration_ms.expect("an expiry");
    println!("expired chain: {ms} ms");
    assert!(ms < 0, "{ms}");
}

#[tokio::test]
async fn push_and_workflow_are_not_network_probes() {
    let probe = Probe::Push(crate::protocol::check::PushProbe {
        grace: Duration::from_secs(1),
    });
    let r = Prober::new().run(&probe, Duration::from_secs(1)).await;
    assert!(r.error.expect("an error").contains("not a network probe"));
}

fn dns(port: u16) -> Probe {
    Probe::Dns(crate::protocol::check::DnsProbe {
        server: Some(format!("127.0.0.1:{port}")),
        name: "example.test.".into(),
        record: crate::protocol::check::DnsRecord::A,
    })
}

#[tokio::test]
async fn dns_asks_a_local_responder() {
    use hickory_proto::op::{Message, MessageType};
    use hickory_proto::rr::{RData, Record, rdata::A};
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = sock.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        let (n, from) = sock.recv_from(&mut buf).await.expect("recv");
        let q = Message::from_vec(&buf[..n]).expect("a query");
        let mut a = q.clone();
        a.set_message_type(MessageType::Response);
        let name = q.queries()[0].name().clone();
        a.add_answer(Record::from_rdata(name, 60, RData::A(A::new(10, 1, 2, 3))));
        sock.send_to(&a.to_vec().expect("encode"), from)
            .await
            .expect("send");
    });
    let r = Prober::new().run(&dns(port), Duration::from_secs(5)).await;
    assert_eq!(r.error, None, "{r:?}");
    assert_eq!(r.dns_rcode, Some(crate::protocol::check::DnsRcode::NoError));
    assert_eq!(r.body, "10.1.2.3");
}

#[tokio::test]
async fn a_dns_server_that_never_answers_is_cut_at_the_timeout() {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = sock.local_addr().expect("addr").port();
    let t = Instant::now();
    let r = Prober::new()
        .run(&dns(port), Duration::from_millis(300))
        .await;
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(r.error.expect("an error").contains("timed out"));
    drop(sock);
}

// ---- http, https, icmp, webhooks and the bound on checks in flight ----

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::protocol::check::{HttpMethod, HttpProbe, IcmpProbe};

/// Reads one request (head, and a body by its Content-Length up to 64 KiB); `None` at EOF.
async fn read_request<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 65536 {
            return None;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
        .min(65536);
    let mut body = buf[end..].to_vec();
    while body.len() < len {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Some((head, String::from_utf8_lossy(&body).into_owned()))
}

/// An HTTP/1.1 server on 127.0.0.1 that answers every request on a connection (keep-alive)
/// with `answer(head, body)`; counts the connections it accepted.
async fn http_server<F>(answer: F) -> (u16, Arc<AtomicUsize>)
where
    F: Fn(&str, &str) -> String + Send + Sync + 'static,
{
    let (l, port) = listener().await;
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                while let Some((head, body)) = read_request(&mut s).await {
                    let reply = answer(&head, &body);
                    if s.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, accepted)
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Check: yes\r\n\r\n{body}",
        body.len()
    )
}

fn get(url: String) -> HttpProbe {
    HttpProbe {
        url,
        method: HttpMethod::Get,
        headers: Vec::new(),
        body: None,
        follow_redirects: false,
        insecure_skip_verify: false,
        client_cert: None,
        max_body: crate::protocol::check::DEFAULT_MAX_BODY,
    }
}

/// Generous bound for a loaded 2-core machine; the checks' own timeouts are far shorter.
const HELD: Duration = Duration::from_secs(10);

#[tokio::test]
async fn http_records_status_headers_body_and_phases() {
    let (port, _) = http_server(|head, _| {
        assert!(head.starts_with("GET /health?x=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("Host: 127.0.0.1:"), "{head}");
        assert!(head.contains("User-Agent: opsconsole-check/"), "{head}");
        assert!(head.contains("X-Token: t1"), "{head}");
        ok(r#"{"status":"ok"}"#)
    })
    .await;
    let mut p = get(format!("http://127.0.0.1:{port}/health?x=1"));
    p.headers.push(("X-Token".into(), "t1".into()));
    let r = Prober::new()
        .run(&Probe::Http(p), Duration::from_secs(5))
        .await;
    println!(
        "http: status {:?}, phases {:?}, body {:?}",
        r.status, r.phases, r.body
    );
    assert_eq!(r.error, None, "{r:?}");
    assert_eq!(r.status, Some(200));
    assert_eq!(r.body, r#"{"status":"ok"}"#);
    assert!(
        r.headers.contains(&("x-check".into(), "yes".into())),
        "{:?}",
        r.headers
    );
    assert_eq!(r.ip, Some([127, 0, 0, 1].into()));
    assert!(r.connected && !r.body_truncated);
    assert!(r.phases.connect.is_some() && r.phases.first_byte.is_some());
    assert!(r.phases.transfer.is_some() && r.phases.tls.is_none());
}

#[tokio::test]
async fn http_keep_alive_reuses_one_connection() {
    let (port, accepted) = http_server(|_, _| ok("fine")).await;
    let prober = Prober::new();
    let probe = Probe::Http(get(format!("http://127.0.0.1:{port}/")));
    let first = prober.run(&probe, Duration::from_secs(5)).await;
    let second = prober.run(&probe, Duration::from_secs(5)).await;
    let n = accepted.load(Ordering::SeqCst);
    println!(
        "keep-alive: 2 checks, {n} connection(s) accepted; second check phases {:?}",
        second.phases
    );
    assert_eq!((first.status, second.status), (Some(200), Some(200)));
    assert_eq!(n, 1, "the second check reused the first one's connection");
    assert_eq!(
        second.phases.connect, None,
        "no connect on a reused connection"
    );
    assert_eq!(prober.idle_connections(), 1);
}

#[tokio::test]
async fn http_that_accepts_and_never_answers_times_out_in_first_byte() {
    let (l, port) = listener().await;
    let held = tokio::spawn(async move {
        let mut keep = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            keep.push(s);
        }
    });
    let t = Instant::now();
    let r = Prober::new()
        .run(
            &Probe::Http(get(format!("http://127.0.0.1:{port}/"))),
            Duration::from_millis(300),
        )
        .await;
    let error = r.error.clone().expect("an error");
    println!("silent server: {error:?} after {:?}", t.elapsed());
    assert!(t.elapsed() < HELD);
    assert!(
        error.contains("timed out after 300ms in phase first_byte"),
        "{error}"
    );
    assert!(r.connected && r.phases.connect.is_some());
    held.abort();
}

#[tokio::test]
async fn http_a_1_gb_body_is_cut_at_1_mib() {
    let (l, port) = listener().await;
    let written = Arc::new(AtomicUsize::new(0));
    let w = written.clone();
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let _ = read_request(&mut s).await;
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..(1 << 14) {
            if s.write_all(&chunk).await.is_err() {
                return;
            }
            w.fetch_add(chunk.len(), Ordering::SeqCst);
        }
    });
    let t = Instant::now();
    let r = Prober::new()
        .run(
            &Probe::Http(get(format!("http://127.0.0.1:{port}/big"))),
            Duration::from_secs(8),
        )
        .await;
    let took = t.elapsed();
    // Let the server see the connection close, then count what it managed to write.
    let _ = tokio::time::timeout(HELD, server).await;
    let sent = written.load(Ordering::SeqCst);
    println!(
        "1 GB body: kept {} bytes, truncated {}, took {took:?}; the server wrote {} KiB before \
         the connection closed",
        r.body.len(),
        r.body_truncated,
        sent >> 10
    );
    assert_eq!(r.error, None, "{r:?}");
    assert_eq!(r.body.len(), 1 << 20);
    assert!(r.body_truncated);
    assert!(sent < 64 << 20, "read far past the cap: {sent} bytes");
}

#[tokio::test]
async fn http_a_trickling_server_times_out_in_transfer() {
    let (l, port) = listener().await;
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let _ = read_request(&mut s).await;
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for _ in 0..100 {
            if s.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let t = Instant::now();
    let r = Prober::new()
        .run(
            &Probe::Http(get(format!("http://127.0.0.1:{port}/slow"))),
            Duration::from_millis(1500),
        )
        .await;
    let error = r.error.clone().expect("an error");
    println!(
        "trickle: {error:?} after {:?}, {} byte(s) read, status {:?}",
        t.elapsed(),
        r.body.len(),
        r.status
    );
    assert!(t.elapsed() < HELD);
    assert!(error.contains("in phase transfer"), "{error}");
    assert_eq!(r.status, Some(200));
    server.abort();
}

#[tokio::test]
async fn http_a_redirect_loop_and_too_many_redirects_are_errors() {
    let (port, _) = http_server(|head, _| {
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let number = |prefix: &str| {
            path.strip_prefix(prefix)
                .and_then(|n| n.parse::<u32>().ok())
        };
        let to = match (path.as_str(), number("/n"), number("/c")) {
            ("/a", ..) => "/b".to_string(),
            ("/b", ..) => "/a".to_string(),
            (_, Some(n), _) if n < 3 => format!("/n{}", n + 1),
            // An endless chain of distinct URLs.
            (_, _, Some(n)) => format!("/c{}", n + 1),
            ("/done", ..) => return ok("done"),
            _ => "/done".to_string(),
        };
        format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n")
    })
    .await;
    let prober = Prober::new();
    let follow = |path: &str| {
        let mut p = get(format!("http://127.0.0.1:{port}{path}"));
        p.follow_redirects = true;
        Probe::Http(p)
    };
    let r = prober.run(&follow("/a"), Duration::from_secs(5)).await;
    let error = r.error.clone().expect("an error");
    println!("redirect loop: {error}");
    assert!(error.starts_with("redirect loop:"), "{error}");

    let r = prober.run(&follow("/n0"), Duration::from_secs(5)).await;
    println!("three redirects: status {:?}, body {:?}", r.status, r.body);
    assert_eq!(
        (r.error, r.status, r.body.as_str()),
        (None, Some(200), "done")
    );

    let r = prober.run(&follow("/c0"), Duration::from_secs(5)).await;
    let error = r.error.clone().expect("an error");
    println!("endless chain: {error}");
    assert!(error.starts_with("more than 10 redirects"), "{error}");

    // Not followed: the 302 itself is the answer.
    let r = prober
        .run(
            &Probe::Http(get(format!("http://127.0.0.1:{port}/a"))),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!((r.error, r.status), (None, Some(302)));
}

/// Serves every request on 127.0.0.1 through `acceptor` with a 200 whose body is `body`;
/// returns the port.
async fn serve_tls(acceptor: tokio_rustls::TlsAcceptor, body: &'static str) -> u16 {
    let (l, port) = listener().await;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(Ok(mut tls)) =
                    tokio::time::timeout(Duration::from_secs(5), acceptor.accept(s)).await
                else {
                    return;
                };
                while read_request(&mut tls).await.is_some() {
                    if tls.write_all(ok(body).as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// A TLS server on 127.0.0.1 whose self-signed chain expires in `not_after_year`, answering
/// every request 200.
async fn https_server(not_after_year: i32) -> u16 {
    let acceptor = self_signed_acceptor(not_after_year);
    serve_tls(acceptor, "secure").await
}

#[tokio::test]
async fn https_expired_and_self_signed_chains_fail_with_their_expiry() {
    for (year, what) in [(2001, "expired"), (2100, "self-signed")] {
        let port = https_server(year).await;
        let prober = Prober::new();
        let r = prober
            .run(
                &Probe::Http(get(format!("https://localhost:{port}/"))),
                Duration::from_secs(5),
            )
            .await;
        let error = r.error.clone().expect("an error");
        let ms = r.certificate_expiration_ms.expect("an expiry");
        println!(
            "{what} chain: {error:?}; expiry in {} days",
            ms / 86_400_000
        );
        assert!(error.contains("TLS handshake"), "{error}");
        assert_eq!(r.status, None);
        assert!(r.phases.tls.is_some());
        if year < 2026 {
            assert!(ms < 0, "{ms}");
        } else {
            assert!(ms > 0, "{ms}");
        }
        // insecure_skip_verify: the answer comes through, the expiry is still read.
        let mut p = get(format!("https://localhost:{port}/"));
        p.insecure_skip_verify = true;
        let r = prober.run(&Probe::Http(p), Duration::from_secs(5)).await;
        println!(
            "{what} chain, insecure_skip_verify: status {:?}, body {:?}, phases {:?}",
            r.status, r.body, r.phases
        );
        assert_eq!((r.error, r.status), (None, Some(200)));
        assert_eq!(r.body, "secure");
        assert!(r.certificate_expiration_ms.is_some());
    }
}

#[tokio::test]
async fn icmp_to_loopback_or_a_clear_error() {
    let prober = Prober::new();
    match prober.icmp_mode().await {
        Ok(mode) => {
            let r = prober
                .run(
                    &Probe::Icmp(IcmpProbe {
                        host: "127.0.0.1".into(),
                        count: 3,
                    }),
                    Duration::from_secs(5),
                )
                .await;
            println!(
                "icmp through a {mode}: {} , rtt {:?}, error {:?}",
                r.body, r.response_time, r.error
            );
            assert_eq!(r.error, None, "{r:?}");
            assert!(r.connected);
            assert_eq!(r.body, "3/3 replies");
        }
        Err(why) => {
            println!("icmp not possible in this sandbox: {why}");
            assert!(why.contains("net.ipv4.ping_group_range"), "{why}");
            let r = prober
                .run(
                    &Probe::Icmp(IcmpProbe {
                        host: "127.0.0.1".into(),
                        count: 1,
                    }),
                    Duration::from_secs(1),
                )
                .await;
            assert!(r.error.expect("an error").contains("ping_group_range"));
        }
    }
}

#[tokio::test]
async fn a_webhook_is_retried_until_it_is_accepted() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, s) = (calls.clone(), seen.clone());
    let (port, _) = http_server(move |head, body| {
        s.lock()
            .expect("lock")
            .push((head.to_string(), body.to_string()));
        if c.fetch_add(1, Ordering::SeqCst) < 2 {
            "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n".to_string()
        } else {
            ok("")
        }
    })
    .await;
    let body = serde_json::json!({"monitor": "api", "state": "unhealthy", "incident": 7});
    let tries = Prober::new()
        .post_webhook(
            &format!("http://127.0.0.1:{port}/hook"),
            &[("X-Key".into(), "k".into())],
            &body,
            Duration::from_secs(2),
            3,
        )
        .await;
    println!("webhook tries: {tries:?}");
    assert_eq!(tries.len(), 3);
    assert!(!tries[0].succeeded() && !tries[1].succeeded() && tries[2].succeeded());
    assert_eq!(tries[0].error.as_deref(), Some("answered 503"));
    let seen = seen.lock().expect("lock").clone();
    let (head, sent) = &seen[0];
    assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
    assert!(head.contains("Content-Type: application/json"), "{head}");
    assert!(head.contains("X-Key: k"), "{head}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(sent).ok(),
        Some(body)
    );

    // Nobody listens: every try fails, and there are 1 + retries of them.
    let (l, dead) = listener().await;
    drop(l);
    let tries = Prober::new()
        .post_webhook(
            &format!("http://127.0.0.1:{dead}/"),
            &[],
            &serde_json::json!({}),
            Duration::from_secs(1),
            1,
        )
        .await;
    assert_eq!(tries.len(), 2);
    assert!(
        tries
            .iter()
            .all(|t| t.error.is_some() && t.status.is_none())
    );
}

#[tokio::test]
async fn many_checks_never_hold_more_than_the_bound() {
    let (l, port) = listener().await;
    let open = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (o, m) = (open.clone(), most.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let now = o.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            let o = o.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                // Counted as closed before the client can see the reply.
                o.fetch_sub(1, Ordering::SeqCst);
                let _ = s.write_all(b"ok\n").await;
            });
        }
    });
    let prober = Prober::build(super::ProberConfig {
        max_in_flight: 4,
        ..super::ProberConfig::default()
    });
    let checks = (0..60u32).map(move |i| (i, tcp(port, None, Some("ok")), Duration::from_secs(5)));
    let mut results = prober.run_many(checks);
    let mut got = Vec::new();
    while let Some((i, r)) = tokio::time::timeout(HELD, results.recv())
        .await
        .expect("results in time")
    {
        assert_eq!(r.error, None, "{r:?}");
        got.push(i);
    }
    got.sort_unstable();
    let most = most.load(Ordering::SeqCst);
    println!("60 checks, bound 4: at most {most} connections open at once");
    assert_eq!(got, (0..60).collect::<Vec<_>>());
    assert!(most <= 4, "{most} in flight");
}

#[tokio::test]
async fn https_with_a_client_certificate_passes_mutual_tls() {
    // A CA, a client certificate it signs, and a server that requires one.
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let client_key = rcgen::KeyPair::generate().expect("key");
    let mut client_params =
        rcgen::CertificateParams::new(vec!["client.test".to_string()]).expect("params");
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params
        .signed_by(&client_key, &issuer)
        .expect("client cert");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_file, key_file) = (dir.path().join("client.pem"), dir.path().join("client.key"));
    std::fs::write(&cert_file, client.pem()).expect("write cert");
    std::fs::write(&key_file, client_key.serialize_pem()).expect("write key");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("ca root");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        super::ring_provider(),
    )
    .build()
    .expect("client verifier");
    let server_key = rcgen::KeyPair::generate().expect("key");
    let server_cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&server_key)
        .expect("cert");
    let config = rustls::ServerConfig::builder_with_provider(super::ring_provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let port = serve_tls(acceptor, "mutual").await;
    let prober = Prober::new();
    let mut p = get(format!("https://localhost:{port}/"));
    p.insecure_skip_verify = true;
    let without = prober
        .run(&Probe::Http(p.clone()), Duration::from_secs(5))
        .await;
    println!("mTLS without a client certificate: {:?}", without.error);
    assert!(
        without.error.is_some() && without.status.is_none(),
        "{without:?}"
    );
    p.client_cert = Some(crate::protocol::check::ClientCert {
        cert: cert_file,
        key: key_file,
    });
    let with = prober.run(&Probe::Http(p), Duration::from_secs(5)).await;
    println!(
        "mTLS with a client certificate: status {:?}, body {:?}",
        with.status, with.body
    );
    assert_eq!((with.error, with.status), (None, Some(200)));
    assert_eq!(with.body, "mutual");
}

/// A down service on an even port of the ephemeral range is reached within a few thousand
/// connects by a connect to itself (Linux walks the even ports of its range for a connect,
/// about 14,000 of them): never taken for up, and the port is left free for the service (no
/// socket of this host stays connected to itself there).
#[tokio::test]
async fn a_connect_that_reaches_itself_is_refused_not_taken_for_a_live_service() {
    let (l, port) = listener().await;
    drop(l);
    let port = if port % 2 == 1 { port - 1 } else { port };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let t0 = Instant::now();
    let mut refused = 0u32;
    while refused < 30_000 && t0.elapsed() < Duration::from_secs(20) {
        match super::connect(addr).await {
            Ok(s) => panic!(
                "connected to {addr} where nothing listens, from {:?}, after {refused} refusals",
                s.local_addr()
            ),
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
                refused += 1;
            }
        }
    }
    // No socket is left connected to itself on the port (in any state, TIME_WAIT included),
    // which would keep the service from binding it. Binding it here to see would race with
    // tests running beside this one, which may hold the port as the source of their connects.
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let me = format!("0100007F:{port:04X}");
    let own: Vec<&str> = table
        .lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace().skip(1);
            fields.next() == Some(me.as_str()) && fields.next() == Some(me.as_str())
        })
        .collect();
    assert!(own.is_empty(), "connected to itself on {addr}: {own:?}");
}

#[test]
fn the_prober_fits_its_descriptors_in_half_of_the_open_files_limit() {
    use super::bounds_for;
    for limit in [64u64, 256, 1024, 4096, 20_000, 1 << 20, u64::MAX] {
        let (in_flight, idle) = bounds_for(limit);
        assert!(
            (16..=super::DEFAULT_MAX_IN_FLIGHT).contains(&in_flight),
            "{limit}"
        );
        if limit >= 256 {
            assert!(
                (in_flight + idle) as u64 <= limit / 2,
                "{limit}: {in_flight} + {idle}"
            );
        }
    }
    // The usual soft limit leaves a quarter to checks; a raised one gives the full pool.
    assert_eq!(bounds_for(1024), (256, 256));
    assert_eq!(bounds_for(65_536), (1024, 4096));
}
