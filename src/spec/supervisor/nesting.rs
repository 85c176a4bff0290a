//! Where supervisors are nested too deep, in a document the YAML layer refused as too deep.
//!
//! Each level of inline supervisors takes two levels of YAML (a mapping and its `children`
//! sequence), so a document nested far past [`MAX_NESTING`] breaks the parser's own depth limit
//! (64) before the checks can apply the rule. This probe reads only the `children` of each
//! supervisor and stops at the first one nested too deep, about 33 levels down, well within the
//! parser's limit: the problem is then reported as the rule, where it is broken.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use crate::spec::limits::MAX_NESTING;

thread_local! {
    /// Where the probe found the first supervisor nested too deep (its `children:` key).
    static FOUND: Cell<Option<Location>> = const { Cell::new(None) };
}

/// The message of the nesting rule, as the checks word it.
pub(crate) fn message() -> String {
    format!("supervisors are nested more than {MAX_NESTING} deep here")
}

/// Where in `text` (a supervisor document) a supervisor is nested more than [`MAX_NESTING`]
/// deep, if the probe finds one.
pub(crate) fn too_deep(text: &str, options: serde_saphyr::Options) -> Option<Location> {
    FOUND.with(|f| f.set(None));
    // The probe aborts with an error as soon as it has found the place.
    let _ = serde_saphyr::from_str_with_options::<Probe>(text, options);
    FOUND.with(Cell::take)
}

/// The document: a supervisor at depth 1.
struct Probe;

impl<'de> de::Deserialize<'de> for Probe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(Supervisor(1))?;
        Ok(Probe)
    }
}

/// A supervisor's mapping at this depth (the document is 1).
#[derive(Clone, Copy)]
struct Supervisor(usize);

impl<'de> DeserializeSeed<'de> for Supervisor {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Supervisor {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            if key.value != "children" {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if self.0 > MAX_NESTING {
                FOUND.with(|f| f.set(Some(key.referenced)));
                return Err(de::Error::custom("found"));
            }
            map.next_value_seed(Children(self.0))?;
        }
        Ok(())
    }
}

/// The `children` sequence of a supervisor at this depth.
struct Children(usize);

impl<'de> DeserializeSeed<'de> for Children {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Children {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        // Each child with `children` of its own is a supervisor one level down.
        while seq.next_element_seed(Supervisor(self.0 + 1))?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `levels` supervisors nested inline, the innermost with one service.
    fn nested(levels: usize) -> String {
        let mut text = String::from("kind: supervisor\nname: s\nchildren:\n");
        for depth in 1..levels {
            let indent = "  ".repeat(2 * depth - 1);
            text.push_str(&format!("{indent}- name: n{depth}\n{indent}  children:\n"));
        }
        let indent = "  ".repeat(2 * levels - 1);
        text.push_str(&format!("{indent}- {{ name: svc, run: x }}\n"));
        text
    }

    #[test]
    fn finds_the_first_supervisor_nested_too_deep() {
        let options =
            crate::spec::yaml_error::options(serde_saphyr::DuplicateKeyPolicy::PassThrough);
        assert_eq!(too_deep(&nested(MAX_NESTING), options.clone()), None);
        let at = too_deep(&nested(60), options).expect("found");
        // Supervisor 17 is `n16`, on lines 2 * 16 + 2 and 2 * 16 + 3 (its `children:`).
        assert_eq!((at.line(), at.column()), (35, 2 * (2 * 16 - 1) + 3));
    }
}
