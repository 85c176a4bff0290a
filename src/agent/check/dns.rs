//! dns checks: one query over UDP to the given server (or the first of /etc/resolv.conf).

use std::net::SocketAddr;
use std::time::Instant;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::net::UdpSocket;

use crate::protocol::check::{CheckResult, DnsProbe, DnsRcode, DnsRecord};

fn server(p: &DnsProbe) -> Result<SocketAddr, String> {
    let text = match &p.server {
        Some(s) => s.clone(),
        None => std::fs::read_to_string("/etc/resolv.conf")
            .ok()
            .and_then(|t| {
                t.lines()
                    .filter_map(|l| l.trim().strip_prefix("nameserver"))
                    .map(|s| s.trim().to_string())
                    .next()
            })
            .ok_or("no server given and no nameserver in /etc/resolv.conf")?,
    };
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
        .map_err(|_| format!("DNS server {text:?} is not IP or IP:PORT"))
}

fn rtype(r: DnsRecord) -> RecordType {
    match r {
        DnsRecord::A => RecordType::A,
        DnsRecord::Aaaa => RecordType::AAAA,
        DnsRecord::Cname => RecordType::CNAME,
        DnsRecord::Mx => RecordType::MX,
        DnsRecord::Txt => RecordType::TXT,
        DnsRecord::Ns => RecordType::NS,
        DnsRecord::Soa => RecordType::SOA,
    }
}

fn rcode(c: ResponseCode) -> DnsRcode {
    match u16::from(c) {
        0 => DnsRcode::NoError,
        1 => DnsRcode::FormErr,
        2 => DnsRcode::ServFail,
        3 => DnsRcode::NxDomain,
        4 => DnsRcode::NotImp,
        5 => DnsRcode::Refused,
        n => DnsRcode::Other(n),
    }
}

/// Asks once; the answers, one per line, are the body.
pub(super) async fn run(p: &DnsProbe, t0: Instant) -> CheckResult {
    match ask(p, t0).await {
        Ok(r) => r,
        Err(e) => CheckResult::failed(None, t0.elapsed(), e),
    }
}

async fn ask(p: &DnsProbe, t0: Instant) -> Result<CheckResult, String> {
    let to = server(p)?;
    let name = Name::from_ascii(&p.name).map_err(|e| format!("bad name {:?}: {e}", p.name))?;
    let id = fastrand::u16(..);
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name, rtype(p.record)));
    let bytes = m.to_vec().map_err(|e| format!("DNS query: {e}"))?;
    let bind: SocketAddr = if to.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("UDP socket: {e}"))?;
    sock.connect(to)
        .await
        .map_err(|e| format!("DNS server {to}: {e}"))?;
    sock.send(&bytes)
        .await
        .map_err(|e| format!("send to {to}: {e}"))?;
    let mut buf = vec![0u8; 4096];
    // Datagrams that are not our answer (wrong id, garbage) are skipped; the caller's timeout
    // bounds the wait.
    loop {
        let n = sock
            .recv(&mut buf)
            .await
            .map_err(|e| format!("from {to}: {e}"))?;
        let Ok(answer) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if answer.id() != id || answer.message_type() != MessageType::Response {
            continue;
        }
        let body: Vec<String> = answer
            .answers()
            .iter()
            .map(|r| r.data().to_string())
            .collect();
        return Ok(CheckResult {
            response_time: t0.elapsed(),
            connected: true,
            ip: Some(to.ip()),
            dns_rcode: Some(rcode(answer.response_code())),
            body: body.join("\n"),
            ..CheckResult::default()
        });
    }
}
