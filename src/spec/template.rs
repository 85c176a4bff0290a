//! `{{ params.NAME }}`, `{{ run.id }}` and `{{ task.name }}` substitution.

use std::collections::BTreeMap;
use std::fmt;

/// A string with `{{ ... }}` placeholders, parsed once at validation time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Param(String),
    RunId,
    TaskName,
}

/// Values a template is rendered with.
#[derive(Debug, Clone, Copy)]
pub struct RenderContext<'a> {
    /// Effective parameters of the run (defaults merged with overrides).
    pub params: &'a BTreeMap<String, String>,
    /// The run's id, as shown to users.
    pub run_id: u64,
    /// The task being rendered.
    pub task_name: &'a str,
}

/// A template that does not parse or references something unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Byte offset of the offending `{{` in the template source.
    pub offset: usize,
    /// What is wrong, for a user.
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Template {
    /// A template without placeholders.
    pub fn literal(s: impl Into<String>) -> Self {
        Self {
            parts: vec![Part::Text(s.into())],
        }
    }

    /// Parses `src`, accepting only references to `known_params`, `run.id` and `task.name`.
    pub fn parse<'k>(
        src: &str,
        known_params: impl Fn(&str) -> bool + 'k,
    ) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = src;
        let mut base = 0usize;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(TemplateError {
                    offset: base + open,
                    message: "unclosed `{{`: add the matching `}}`".to_string(),
                });
            };
            let reference = after[..close].trim();
            let part = match reference {
                "run.id" => Part::RunId,
                "task.name" => Part::TaskName,
                r => match r.strip_prefix("params.") {
                    Some(name) if known_params(name) => Part::Param(name.to_string()),
                    Some(name) => {
                        return Err(TemplateError {
                            offset: base + open,
                            message: format!(
                                "unknown parameter `{name}` in `{{{{ {r} }}}}`: declare it under `params:`"
                            ),
                        });
                    }
                    None => {
                        return Err(TemplateError {
                            offset: base + open,
                            message: format!(
                                "unknown reference `{{{{ {r} }}}}`: use `params.NAME`, `run.id` or `task.name`"
                            ),
                        });
                    }
                },
            };
            parts.push(part);
            let consumed = open + 2 + close + 2;
            base += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Self { parts })
    }

    /// Substitutes every placeholder.
    pub fn render(&self, ctx: &RenderContext<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Param(name) => {
                    if let Some(v) = ctx.params.get(name) {
                        out.push_str(v);
                    }
                }
                Part::RunId => out.push_str(&ctx.run_id.to_string()),
                Part::TaskName => out.push_str(ctx.task_name),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(params: &BTreeMap<String, String>) -> RenderContext<'_> {
        RenderContext {
            params,
            run_id: 42,
            task_name: "extract",
        }
    }

    #[test]
    fn renders_every_kind_of_reference() {
        let params = BTreeMap::from([("region".to_string(), "eu".to_string())]);
        let t = Template::parse(
            "r={{ params.region }} id={{run.id}} t={{ task.name }}!",
            |n| n == "region",
        )
        .unwrap();
        assert_eq!(t.render(&ctx(&params)), "r=eu id=42 t=extract!");
    }

    #[test]
    fn rejects_unknown_param_with_offset() {
        let err = Template::parse("ab {{ params.nope }}", |_| false).unwrap_err();
        assert_eq!(err.offset, 3);
        assert!(
            err.message.contains("unknown parameter `nope`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn rejects_unknown_reference_and_unclosed() {
        assert!(Template::parse("{{ env.HOME }}", |_| true).is_err());
        assert!(Template::parse("x {{ run.id", |_| true).is_err());
    }
}
