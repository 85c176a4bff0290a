//! "Did you mean ...?" suggestions.

/// Above this many candidates no suggestion is computed (keeps huge files fast).
const MAX_CANDIDATES: usize = 5_000;

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for (i, cand) in candidates.into_iter().enumerate() {
        if i >= MAX_CANDIDATES {
            return None;
        }
        if cand == word {
            continue;
        }
        let cand_lower = cand.to_lowercase();
        let score = strsim::jaro_winkler(&lower, &cand_lower);
        let distance = strsim::damerau_levenshtein(&lower, &cand_lower);
        let near = distance <= 2 && distance < lower.chars().count();
        if (score >= 0.85 || near) && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, cand));
        }
    }
    best.map(|(_, c)| c)
}

/// `": did you mean `X`?"` or the empty string.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates)
        .map(|c| format!(": did you mean `{c}`?"))
        .unwrap_or_default()
}

/// `a, b or c` with each item in backticks.
pub fn one_of(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        let keys = ["name", "schedule", "tasks", "timezone"];
        assert_eq!(closest("nmae", keys), Some("name"));
        assert_eq!(closest("shedule", keys), Some("schedule"));
        assert_eq!(closest("Tasks", keys), Some("tasks"));
        assert_eq!(closest("banana", keys), None);
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
    }
}
