//! The SHIELD commands: each reads its arguments, reads its key(s), asks the
//! engine, writes and replicates what the engine decided.

pub mod absorb;
pub mod absorb_all;
pub mod cl_throttle;
pub mod gcra;
pub mod inspect;
