//! Named failure points for fault tests of the real binary: `OPSCONSOLE_FAILPOINT=a,b` makes
//! [`hit`] true for `a` and `b`. Unset (always, outside tests), every point is a no-op.

use std::sync::OnceLock;

/// True when the failure point `name` is switched on for this process.
pub fn hit(name: &str) -> bool {
    static ON: OnceLock<Vec<String>> = OnceLock::new();
    ON.get_or_init(|| {
        std::env::var("OPSCONSOLE_FAILPOINT")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default()
    })
    .iter()
    .any(|p| p == name)
}
