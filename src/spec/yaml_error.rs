//! Parser options and one-line messages for errors raised by serde-saphyr itself.

use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::{Budget, DuplicateKeyPolicy, Error, MessageFormatter, Options};

use super::MAX_FILE_BYTES;
use super::suggest::{did_you_mean, one_of};

/// Most aliases (`*name`) a workflow file may use.
const MAX_ALIASES: usize = 1_000;
/// Most events replayed from aliases in one file (bounds alias-bomb expansion).
const MAX_REPLAYED_EVENTS: usize = 100_000;

/// Parser options: limits scaled to [`MAX_FILE_BYTES`], tight alias limits, no snippets.
pub fn options(duplicate_keys: DuplicateKeyPolicy) -> Options {
    let mut budget = Budget::default();
    // Node and event counts are linear in the input size, which is already capped.
    budget.max_events = 2 * MAX_FILE_BYTES;
    budget.max_nodes = MAX_FILE_BYTES;
    budget.max_aliases = MAX_ALIASES;
    budget.max_anchors = MAX_ALIASES;
    budget.max_recorded_anchor_events = MAX_REPLAYED_EVENTS;
    budget.max_reader_input_bytes = Some(MAX_FILE_BYTES);
    let mut options = Options::default();
    options.budget = Some(budget);
    options.duplicate_keys = duplicate_keys;
    options.alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    options.alias_limits.max_replay_stack_depth = 16;
    options.with_snippet = false;
    options
}

/// The error the parser actually raised, without snippet or alias wrappers.
pub fn original(mut err: &Error) -> &Error {
    loop {
        match err {
            Error::WithSnippet { error, .. } | Error::AliasError { error, .. } => err = error,
            other => return other,
        }
    }
}

/// A clean one-line message for `err` (no location, no snippet).
pub fn message(err: &Error) -> String {
    let err = original(err);
    let text = match err {
        Error::SerdeUnknownField {
            field, expected, ..
        } => unknown_key(field, expected),
        Error::SerdeMissingField { field, .. } => format!("missing required key `{field}`"),
        Error::DuplicateMappingKey { key, .. } => match key {
            Some(key) => format!("duplicate key `{key}`: a key may appear only once here"),
            None => "duplicate key: a key may appear only once here".to_string(),
        },
        Error::SerdeUnknownVariant {
            variant, expected, ..
        } => format!(
            "unknown value `{variant}`{} (expected {})",
            did_you_mean(variant, expected.iter().copied()),
            one_of(expected)
        ),
        Error::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => format!(
            "wrong type: expected {}, found {unexpected}",
            friendly(expected)
        ),
        Error::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => format!(
            "invalid value {unexpected}: expected {}",
            friendly(expected)
        ),
        Error::Unexpected { expected, .. } => {
            format!("wrong type: expected {}", friendly(expected))
        }
        Error::InvalidScalar { ty, .. } => format!("wrong type: expected {}", scalar_type(ty)),
        Error::NullIntoString { .. } => "missing value: expected a string".to_string(),
        Error::Eof { .. } => "unexpected end of file".to_string(),
        Error::MultipleDocuments { .. } => {
            "more than one YAML document (`---`): put each workflow in its own file".to_string()
        }
        Error::Budget { breach, .. } => budget(breach),
        Error::AliasReplayLimitExceeded { .. }
        | Error::AliasExpansionLimitExceeded { .. }
        | Error::AliasReplayStackDepthExceeded { .. }
        | Error::AliasReplayCounterOverflow { .. } => alias_bomb(),
        other => serde_saphyr::DefaultMessageFormatter
            .format_message(other)
            .into_owned(),
    };
    one_line(&text)
}

pub fn unknown_key(field: &str, expected: &[&str]) -> String {
    let hint = did_you_mean(field, expected.iter().copied());
    if hint.is_empty() && !expected.is_empty() {
        format!(
            "unknown key `{field}` (allowed here: {})",
            expected.join(", ")
        )
    } else {
        format!("unknown key `{field}`{hint}")
    }
}

/// Serde's `expected` text, reworded for YAML authors.
fn friendly(expected: &str) -> String {
    match expected {
        e if e.starts_with("struct ") || e == "mapping start" || e == "a map" => {
            "a mapping (`key: value` lines)".to_string()
        }
        "string scalar" | "a string" => "a string".to_string(),
        "sequence start" | "a sequence" => "a list".to_string(),
        other => other.to_string(),
    }
}

fn scalar_type(ty: &str) -> &'static str {
    match ty {
        "bool" | "boolean" => "true or false",
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" | "floating point" => "a number",
        _ => "a different value",
    }
}

fn alias_bomb() -> String {
    "too many alias expansions (`*name`): the document is rejected as a possible alias bomb"
        .to_string()
}

fn budget(breach: &BudgetBreach) -> String {
    match breach {
        BudgetBreach::Aliases { .. }
        | BudgetBreach::Anchors { .. }
        | BudgetBreach::AliasAnchorRatio { .. }
        | BudgetBreach::RecordedAnchorEvents { .. }
        | BudgetBreach::RecordedAnchorBytes { .. } => alias_bomb(),
        BudgetBreach::Depth { depth } => format!("nesting too deep ({depth} levels)"),
        BudgetBreach::Documents { .. } => {
            "more than one YAML document (`---`): put each workflow in its own file".to_string()
        }
        BudgetBreach::InputBytes { .. } => format!(
            "file is larger than the {} MiB limit for a workflow file",
            MAX_FILE_BYTES / (1024 * 1024)
        ),
        other => format!("document too large or complex ({other:?})"),
    }
}

/// Collapses line breaks and control characters so the message stays on one line.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split(|c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}') {
        let word = word.trim();
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}
