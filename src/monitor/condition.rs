//! Monitor conditions in Gatus's syntax, so users can paste theirs unchanged:
//! `[STATUS] == 200`, `[BODY].data[0].status == ok`, `len([BODY].items) > 0`,
//! `[CERTIFICATE_EXPIRATION] > 72h`, `[STATUS] == any(200, 204)`, `[BODY] == pat(*ok*)`.
//!
//! Parsing is done once, when the spec is loaded ([`Condition::parse`], errors carry the byte
//! offset in the condition so the spec can point at line and column); judging is pure and
//! reads a [`CheckResult`] through an [`Observation`], which parses the body as JSON at most
//! once however many conditions read it (Gatus parses it once per condition).
//!
//! Comparison rules: Gatus's where Gatus accepts the input (`==` and `!=` compare as integers
//! when both sides are integers, otherwise as text; durations such as `48h` are milliseconds),
//! and stricter where Gatus silently reads 0: decimals compare as decimals, and an ordering
//! (`<`, `<=`, `>`, `>=`) with a side that can never be a number is refused when parsed.

use std::cell::OnceCell;
use std::fmt;

use serde_json::Value as Json;
use serde_json_path::JsonPath;

use crate::protocol::check::CheckResult;

/// Longest condition accepted, in bytes.
pub const MAX_CONDITION_BYTES: usize = 4096;

/// Most alternatives in one `any(...)`.
pub const MAX_ANY: usize = 256;

/// Longest value shown as "seen" for a condition (the rest is cut with `…`).
pub const MAX_SEEN_CHARS: usize = 200;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
}

impl Op {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    fn ordering(self) -> bool {
        matches!(self, Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }
}

/// An HTTP phase, as blackbox_exporter names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Name resolution.
    Dns,
    /// TCP connect.
    Connect,
    /// TLS handshake.
    Tls,
    /// Request sent to first byte.
    FirstByte,
    /// The rest of the answer.
    Transfer,
}

/// What a placeholder reads from a result.
#[derive(Debug, Clone)]
pub enum Placeholder {
    /// `[STATUS]`.
    Status,
    /// `[RESPONSE_TIME]` in milliseconds.
    ResponseTime,
    /// `[BODY]`, or the node its JSONPath suffix selects.
    Body(Option<Box<JsonPath>>),
    /// `[HEADERS].name` (lower case).
    Header(Box<str>),
    /// `[IP]`.
    Ip,
    /// `[CONNECTED]`.
    Connected,
    /// `[CERTIFICATE_EXPIRATION]` in milliseconds.
    CertificateExpiration,
    /// `[DNS_RCODE]`.
    DnsRcode,
    /// `[EXIT_CODE]`.
    ExitCode,
    /// `[OUTPUT]`.
    Output,
    /// `[PHASE_DNS]`, `[PHASE_CONNECT]`, `[PHASE_TLS]`, `[PHASE_FIRST_BYTE]`,
    /// `[PHASE_TRANSFER]` in milliseconds.
    Phase(Phase),
}

impl Placeholder {
    /// True when the value read is never a number.
    fn never_numeric(&self) -> bool {
        matches!(
            self,
            Placeholder::Ip | Placeholder::Connected | Placeholder::DnsRcode
        )
    }
}

/// One side of a comparison.
#[derive(Debug, Clone)]
pub enum Operand {
    /// A value read from the result.
    Read(Placeholder),
    /// `len(X)`: the length of a text, or the number of items of a JSON array or object.
    Len(Placeholder),
    /// `has(X)`: `true` when the placeholder has a value (a JSONPath selects something).
    Has(Placeholder),
    /// A value written in the condition.
    Literal(Literal),
    /// `pat(GLOB)`: `*` any run of characters, `?` one character (right side of `==`/`!=`).
    Pattern(Box<str>),
    /// `any(A, B, ...)`: equal to one of them (right side of `==`/`!=`).
    Any(Box<[Literal]>),
}

/// A value written in a condition, with its numeric reading (durations in milliseconds).
#[derive(Debug, Clone)]
pub struct Literal {
    /// As written (trimmed).
    pub text: Box<str>,
    /// Its number, when it is one.
    pub number: Option<Number>,
}

impl Literal {
    fn new(text: &str) -> Self {
        Literal {
            text: text.into(),
            number: Number::parse(text),
        }
    }
}

/// A number as compared: integers exactly, decimals as decimals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// A whole number (also a duration in milliseconds).
    Int(i64),
    /// A decimal.
    Dec(f64),
}

impl Number {
    /// Reads an integer, a decimal or a duration (`250ms`, `30s`, `5m`, `48h`, `7d`, `1h30m`).
    pub fn parse(text: &str) -> Option<Number> {
        let t = text.trim();
        if let Ok(i) = t.parse::<i64>() {
            return Some(Number::Int(i));
        }
        if t.bytes().any(|b| b.is_ascii_digit())
            && t.bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
            && let Ok(f) = t.parse::<f64>()
            && f.is_finite()
        {
            return Some(Number::Dec(f));
        }
        duration_ms(t).map(Number::Int)
    }

    fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Dec(f) => f,
        }
    }

    fn cmp(self, other: Number) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }
}

/// `48h`, `250ms`, `1h30m`, `7d` in milliseconds; `None` for anything else.
fn duration_ms(t: &str) -> Option<i64> {
    if t.is_empty() || !t.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    let mut total: i64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    Some(total)
}

/// A parsed condition.
#[derive(Debug, Clone)]
pub struct Condition {
    /// As written, for messages and `check`.
    pub text: Box<str>,
    /// Left side.
    pub left: Operand,
    /// Operator.
    pub op: Op,
    /// Right side.
    pub right: Operand,
}

/// Why a condition cannot be parsed, and where in it (byte offset).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConditionError {
    /// Byte offset in the condition of the offending part.
    pub offset: usize,
    /// What is wrong and what to write instead.
    pub message: String,
}

fn error(offset: usize, message: impl Into<String>) -> ConditionError {
    ConditionError {
        offset,
        message: message.into(),
    }
}

/// Operators in the order Gatus looks for them (each with a space either side).
const OPS: [(&str, Op); 6] = [
    (" == ", Op::Eq),
    (" != ", Op::Ne),
    (" <= ", Op::Le),
    (" >= ", Op::Ge),
    (" > ", Op::Gt),
    (" < ", Op::Lt),
];

const PLACEHOLDERS: &str = "[STATUS], [RESPONSE_TIME], [BODY], [HEADERS].name, [IP], \
     [CONNECTED], [CERTIFICATE_EXPIRATION], [DNS_RCODE], [EXIT_CODE], [OUTPUT], [PHASE_DNS], \
     [PHASE_CONNECT], [PHASE_TLS], [PHASE_FIRST_BYTE], [PHASE_TRANSFER]";

impl Condition {
    /// Parses one condition, e.g. `[STATUS] == 200`.
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        if text.len() > MAX_CONDITION_BYTES {
            return Err(error(
                0,
                format!(
                    "condition is {} bytes, more than the limit of {MAX_CONDITION_BYTES}",
                    text.len()
                ),
            ));
        }
        let Some((at, token, op)) = OPS
            .iter()
            .filter_map(|(token, op)| text.find(token).map(|at| (at, *token, *op)))
            .min_by_key(|(at, ..)| *at)
        else {
            return Err(error(
                0,
                "no comparison: write one of `==`, `!=`, `<`, `<=`, `>`, `>=` with a space on \
                 either side, e.g. `[STATUS] == 200`",
            ));
        };
        let left_text = &text[..at];
        let right_start = at + token.len();
        let right_text = &text[right_start..];
        let left = operand(left_text, 0, false)?;
        let right = operand(right_text, right_start, true)?;
        if matches!(left, Operand::Pattern(_) | Operand::Any(_)) {
            return Err(error(
                lead(left_text),
                "pat() and any() go on the right side of `==` or `!=`",
            ));
        }
        if op.ordering() {
            for (side, offset, side_text) in
                [(&left, 0, left_text), (&right, right_start, right_text)]
            {
                if let Some(why) = not_a_number(side) {
                    return Err(error(
                        offset + lead(side_text),
                        format!(
                            "`{}` compares with `{}`, which {why}: ordering needs a number or a \
                             duration on both sides",
                            op.as_str(),
                            side_text.trim()
                        ),
                    ));
                }
            }
        }
        Ok(Condition {
            text: text.into(),
            left,
            op,
            right,
        })
    }

    /// Judges this condition against `obs`: whether it holds, and the value its left side
    /// read (its right side's when the left is a literal).
    pub fn judge(&self, obs: &Observation<'_>) -> Judged {
        let left = obs.resolve(&self.left);
        let seen = match (&self.left, &left) {
            (Operand::Literal(_), _) => obs.resolve(&self.right).shown(),
            _ => left.shown(),
        };
        let passed = match &self.right {
            Operand::Pattern(glob) => {
                let matched = left.text().is_some_and(|t| glob_match(glob, &t));
                matched == (self.op == Op::Eq)
            }
            Operand::Any(options) => {
                let hit = options.iter().any(|o| equal(&left, &Resolved::from(o)));
                hit == (self.op == Op::Eq)
            }
            right => {
                let right = obs.resolve(right);
                compare(&left, self.op, &right)
            }
        };
        Judged {
            passed,
            seen: cut(seen),
        }
    }
}

/// Why `side` can never be a number, if so.
fn not_a_number(side: &Operand) -> Option<&'static str> {
    match side {
        Operand::Literal(l) if l.number.is_none() => Some("is not a number"),
        Operand::Read(p) if p.never_numeric() => Some("is never a number"),
        Operand::Has(_) => Some("is true or false"),
        Operand::Pattern(_) | Operand::Any(_) => Some("is a pattern or a list"),
        _ => None,
    }
}

/// Offset of the first non-space character of `s`.
fn lead(s: &str) -> usize {
    s.len() - s.trim_start().len()
}

/// Parses one side; `right` allows pat() and any().
fn operand(raw: &str, base: usize, right: bool) -> Result<Operand, ConditionError> {
    let offset = base + lead(raw);
    let t = raw.trim();
    if t.is_empty() {
        return Err(error(
            offset,
            "missing value on this side of the comparison",
        ));
    }
    for (name, kind) in [("len(", 0u8), ("has(", 1), ("pat(", 2), ("any(", 3)] {
        let Some(inner) = t.strip_prefix(name) else {
            continue;
        };
        let Some(inner) = inner.strip_suffix(')') else {
            return Err(error(
                offset,
                format!("`{name}` is not closed: end it with `)`"),
            ));
        };
        let inner_at = offset + name.len();
        return match kind {
            0 | 1 => {
                let p = placeholder(inner.trim(), inner_at + lead(inner))?.ok_or_else(|| {
                    error(
                        inner_at,
                        format!("`{name}...)` takes a placeholder such as [BODY].items"),
                    )
                })?;
                Ok(if kind == 0 {
                    Operand::Len(p)
                } else {
                    Operand::Has(p)
                })
            }
            _ if !right => Err(error(
                offset,
                "pat() and any() go on the right side of `==` or `!=`",
            )),
            2 => Ok(Operand::Pattern(inner.into())),
            _ => {
                let items: Vec<Literal> =
                    inner.split(',').map(|s| Literal::new(s.trim())).collect();
                if items.len() > MAX_ANY {
                    return Err(error(
                        offset,
                        format!(
                            "any() has {} values, more than the limit of {MAX_ANY}",
                            items.len()
                        ),
                    ));
                }
                Ok(Operand::Any(items.into()))
            }
        };
    }
    match placeholder(t, offset)? {
        Some(p) => Ok(Operand::Read(p)),
        None => Ok(Operand::Literal(Literal::new(t))),
    }
}

/// Reads a placeholder (`[NAME]` with an optional suffix); `None` when `t` is not one.
fn placeholder(t: &str, offset: usize) -> Result<Option<Placeholder>, ConditionError> {
    if !t.starts_with('[') {
        return Ok(None);
    }
    let Some(close) = t.find(']') else {
        return Ok(None);
    };
    let name = &t[1..close];
    if !name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') || name.is_empty() {
        return Ok(None);
    }
    let suffix = &t[close + 1..];
    let suffix_at = offset + close + 1;
    let plain = |p: Placeholder| {
        if suffix.is_empty() {
            Ok(Some(p))
        } else {
            Err(error(
                suffix_at,
                format!("[{name}] takes no suffix (only [BODY] and [HEADERS] do)"),
            ))
        }
    };
    match name {
        "STATUS" => plain(Placeholder::Status),
        "RESPONSE_TIME" => plain(Placeholder::ResponseTime),
        "IP" => plain(Placeholder::Ip),
        "CONNECTED" => plain(Placeholder::Connected),
        "CERTIFICATE_EXPIRATION" => plain(Placeholder::CertificateExpiration),
        "DNS_RCODE" => plain(Placeholder::DnsRcode),
        "EXIT_CODE" => plain(Placeholder::ExitCode),
        "OUTPUT" => plain(Placeholder::Output),
        "PHASE_DNS" => plain(Placeholder::Phase(Phase::Dns)),
        "PHASE_CONNECT" => plain(Placeholder::Phase(Phase::Connect)),
        "PHASE_TLS" => plain(Placeholder::Phase(Phase::Tls)),
        "PHASE_FIRST_BYTE" => plain(Placeholder::Phase(Phase::FirstByte)),
        "PHASE_TRANSFER" => plain(Placeholder::Phase(Phase::Transfer)),
        "BODY" if suffix.is_empty() => Ok(Some(Placeholder::Body(None))),
        "BODY" => {
            let path = json_path(suffix).map_err(|why| {
                error(
                    suffix_at,
                    format!("bad JSONPath `{suffix}` after [BODY]: {why}"),
                )
            })?;
            Ok(Some(Placeholder::Body(Some(Box::new(path)))))
        }
        "HEADERS" => match suffix.strip_prefix('.') {
            Some(h) if !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()) => {
                Ok(Some(Placeholder::Header(h.to_ascii_lowercase().into())))
            }
            _ => Err(error(
                suffix_at,
                "[HEADERS] needs a header name, e.g. `[HEADERS].content-type`",
            )),
        },
        "DOMAIN_EXPIRATION" => Err(error(
            offset,
            "[DOMAIN_EXPIRATION] is not supported (it needs WHOIS); use \
             [CERTIFICATE_EXPIRATION] for certificates",
        )),
        other => Err(error(
            offset,
            format!("unknown placeholder [{other}] (expected one of {PLACEHOLDERS})"),
        )),
    }
}

/// Gatus's `[BODY]` suffix as an RFC 9535 JSONPath: `.data[0].status` -> `$['data'][0]['status']`,
/// so member names with `-` or other characters Gatus allows still parse.
fn json_path(suffix: &str) -> Result<JsonPath, String> {
    let mut out = String::from("$");
    let mut rest = suffix;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let name = &r[..end];
            if name.is_empty() {
                return Err("empty member name".into());
            }
            if name == "*" {
                out.push_str("[*]");
            } else {
                out.push_str("['");
                for c in name.chars() {
                    match c {
                        '\'' => out.push_str("\\'"),
                        '\\' => out.push_str("\\\\"),
                        c => out.push(c),
                    }
                }
                out.push_str("']");
            }
            rest = &r[end..];
        } else if rest.starts_with('[') {
            let end = rest.find(']').ok_or("`[` is not closed")?;
            out.push_str(&rest[..=end]);
            rest = &rest[end + 1..];
        } else {
            return Err("expected `.name` or `[index]`".into());
        }
    }
    JsonPath::parse(&out).map_err(|e| e.to_string())
}

/// A value read for a comparison.
#[derive(Debug, Clone, PartialEq)]
enum Resolved {
    Missing,
    Bool(bool),
    Num(Number),
    Text(String),
}

impl Resolved {
    fn from(l: &Literal) -> Self {
        match l.number {
            Some(n) => Resolved::Num(n),
            None => Resolved::Text(l.text.to_string()),
        }
    }

    fn text(&self) -> Option<String> {
        match self {
            Resolved::Missing => None,
            Resolved::Bool(b) => Some(b.to_string()),
            Resolved::Num(Number::Int(i)) => Some(i.to_string()),
            Resolved::Num(Number::Dec(f)) => Some(f.to_string()),
            Resolved::Text(t) => Some(t.clone()),
        }
    }

    fn number(&self) -> Option<Number> {
        match self {
            Resolved::Num(n) => Some(*n),
            Resolved::Text(t) => Number::parse(t),
            _ => None,
        }
    }

    fn shown(&self) -> String {
        self.text().unwrap_or_else(|| "(missing)".into())
    }
}

/// Gatus's equality: as integers when both are integers, as decimals when both are numbers,
/// else as text; a missing value equals nothing.
fn equal(a: &Resolved, b: &Resolved) -> bool {
    if matches!(a, Resolved::Missing) || matches!(b, Resolved::Missing) {
        return false;
    }
    if let (Some(x), Some(y)) = (a.number(), b.number()) {
        return x.cmp(y) == Some(std::cmp::Ordering::Equal);
    }
    a.text() == b.text()
}

fn compare(a: &Resolved, op: Op, b: &Resolved) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => equal(a, b),
        Op::Ne => !equal(a, b),
        _ => {
            let (Some(x), Some(y)) = (a.number(), b.number()) else {
                return false;
            };
            match (x.cmp(y), op) {
                (None, _) => false,
                (Some(o), Op::Lt) => o == Less,
                (Some(o), Op::Le) => o != Greater,
                (Some(o), Op::Gt) => o == Greater,
                (Some(o), _) => o != Less,
            }
        }
    }
}

/// Whether `text` matches `glob` (`*` any run, `?` one character), in linear passes.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let p: Vec<char> = glob.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The value seen as it is shown: control characters escaped (`\n`, `\u{1b}`), since it comes
/// from the target and is printed on operators' terminals, then cut to [`MAX_SEEN_CHARS`].
fn cut(s: String) -> String {
    let mut s = match crate::protocol::escape_controls(&s) {
        std::borrow::Cow::Borrowed(_) => s,
        std::borrow::Cow::Owned(escaped) => escaped,
    };
    if let Some((i, _)) = s.char_indices().nth(MAX_SEEN_CHARS) {
        s.truncate(i);
        s.push('…');
    }
    s
}

/// The outcome of one condition on one result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// The condition holds.
    pub passed: bool,
    /// The value read (cut to [`MAX_SEEN_CHARS`]), for incidents and `check`.
    pub seen: String,
}

/// A result as conditions read it: the body is parsed as JSON at most once.
pub struct Observation<'a> {
    result: &'a CheckResult,
    json: OnceCell<Option<Json>>,
    /// How many times the body was parsed (0 or 1), for tests.
    parses: std::cell::Cell<u32>,
}

impl<'a> Observation<'a> {
    /// A view of `result` for judging conditions.
    pub fn new(result: &'a CheckResult) -> Self {
        Observation {
            result,
            json: OnceCell::new(),
            parses: std::cell::Cell::new(0),
        }
    }

    /// How many times the body was parsed as JSON so far (at most 1).
    pub fn body_parses(&self) -> u32 {
        self.parses.get()
    }

    fn json(&self) -> Option<&Json> {
        self.json
            .get_or_init(|| {
                self.parses.set(self.parses.get() + 1);
                serde_json::from_str(&self.result.body).ok()
            })
            .as_ref()
    }

    fn resolve(&self, operand: &Operand) -> Resolved {
        match operand {
            Operand::Read(p) => self.read(p),
            Operand::Len(p) => match p {
                Placeholder::Body(Some(path)) => match self.json().map(|j| path.query(j)) {
                    Some(nodes) => match nodes.exactly_one() {
                        Ok(Json::Array(a)) => Resolved::Num(Number::Int(a.len() as i64)),
                        Ok(Json::Object(o)) => Resolved::Num(Number::Int(o.len() as i64)),
                        Ok(Json::String(s)) => Resolved::Num(Number::Int(s.chars().count() as i64)),
                        Ok(other) => {
                            Resolved::Num(Number::Int(other.to_string().chars().count() as i64))
                        }
                        Err(_) => Resolved::Missing,
                    },
                    None => Resolved::Missing,
                },
                other => match self.read(other).text() {
                    Some(t) => Resolved::Num(Number::Int(t.chars().count() as i64)),
                    None => Resolved::Missing,
                },
            },
            Operand::Has(p) => Resolved::Bool(!matches!(self.read(p), Resolved::Missing)),
            Operand::Literal(l) => Resolved::from(l),
            Operand::Pattern(g) => Resolved::Text(g.to_string()),
            Operand::Any(_) => Resolved::Missing,
        }
    }

    fn read(&self, p: &Placeholder) -> Resolved {
        let r = self.result;
        let ms = |d: std::time::Duration| {
            Resolved::Num(Number::Int(
                i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            ))
        };
        let opt_ms = |d: Option<std::time::Duration>| d.map_or(Resolved::Missing, ms);
        match p {
            Placeholder::Status => r
                .status
                .map_or(Resolved::Missing, |s| Resolved::Num(Number::Int(s.into()))),
            Placeholder::ResponseTime => ms(r.response_time),
            Placeholder::Body(None) => Resolved::Text(r.body.clone()),
            Placeholder::Body(Some(path)) => match self.json().map(|j| path.query(j)) {
                Some(nodes) => match nodes.exactly_one() {
                    Ok(Json::String(s)) => Resolved::Text(s.clone()),
                    Ok(Json::Bool(b)) => Resolved::Bool(*b),
                    Ok(Json::Number(n)) => match n.as_i64() {
                        Some(i) => Resolved::Num(Number::Int(i)),
                        None => n
                            .as_f64()
                            .map_or(Resolved::Missing, |f| Resolved::Num(Number::Dec(f))),
                    },
                    Ok(Json::Null) => Resolved::Text("null".into()),
                    Ok(other) => Resolved::Text(other.to_string()),
                    Err(_) => Resolved::Missing,
                },
                None => Resolved::Missing,
            },
            Placeholder::Header(name) => r
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map_or(Resolved::Missing, |(_, v)| Resolved::Text(v.clone())),
            Placeholder::Ip => {
                r.ip.map_or(Resolved::Missing, |ip| Resolved::Text(ip.to_string()))
            }
            Placeholder::Connected => Resolved::Bool(r.connected),
            Placeholder::CertificateExpiration => r
                .certificate_expiration_ms
                .map_or(Resolved::Missing, |m| Resolved::Num(Number::Int(m))),
            Placeholder::DnsRcode => r
                .dns_rcode
                .map_or(Resolved::Missing, |c| Resolved::Text(c.to_string())),
            Placeholder::ExitCode => r
                .exit_code
                .map_or(Resolved::Missing, |c| Resolved::Num(Number::Int(c.into()))),
            Placeholder::Output => Resolved::Text(r.output.clone()),
            Placeholder::Phase(phase) => opt_ms(match phase {
                Phase::Dns => r.phases.dns,
                Phase::Connect => r.phases.connect,
                Phase::Tls => r.phases.tls,
                Phase::FirstByte => r.phases.first_byte,
                Phase::Transfer => r.phases.transfer,
            }),
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Judges every condition of `conditions` against one result (the body parsed at most once).
pub fn judge_all(conditions: &[Condition], result: &CheckResult) -> Vec<Judged> {
    let obs = Observation::new(result);
    conditions.iter().map(|c| c.judge(&obs)).collect()
}

#[cfg(test)]
mod tests;
