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

/// A TLS server on 127.0.0.1 with a self-signed certificate valid between the two dates.
async fn tls_server(not_after_year: i32) -> u16 {
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
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
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
