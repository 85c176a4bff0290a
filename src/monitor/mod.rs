//! Monitors: a pure machine like `supervisor/` (time in, steps out, no IO). So far the
//! condition language ([`condition`]) that judges what a check saw.

pub mod condition;
