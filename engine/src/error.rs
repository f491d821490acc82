//! Every error a SHIELD command can answer, with the exact reply text.
//!
//! Wrong arity is not here: it is answered with the server's own
//! wrong-number-of-arguments error (`RedisModule_WrongArity`).
//!
//! ```
//! use shield_engine::ShieldError;
//! assert_eq!(
//!     ShieldError::NotPositiveInteger("tokens").to_string(),
//!     "ERR tokens is not a positive integer"
//! );
//! ```

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ShieldError {
    /// Not a canonical decimal integer >= 1 (floats, signs, zero, spaces,
    /// empty strings, garbage all land here).
    #[error("ERR {0} is not a positive integer")]
    NotPositiveInteger(&'static str),

    /// Not `0` nor a canonical positive decimal integer.
    #[error("ERR {0} is not a non-negative integer")]
    NotNaturalInteger(&'static str),

    /// A well-formed integer above the documented maximum.
    #[error("ERR {name} is out of range (1 to {max})")]
    OutOfRange { name: &'static str, max: u64 },

    /// An error worded as the native `GCRA` command words it.
    #[error("ERR {0}")]
    Native(&'static str),

    /// Wrong number of arguments (answered with the server's own error).
    #[error("ERR wrong number of arguments")]
    WrongArity,

    /// A rate outside what the engine computes exactly.
    #[error("ERR {0}")]
    BadRate(&'static str),

    /// An unexpected word where an option was allowed.
    #[error("ERR syntax error: {0}")]
    Syntax(&'static str),

    /// Too many buckets in one SHIELD.absorball.
    #[error("ERR too many buckets: at most {0} per call")]
    TooManyBuckets(usize),

    /// The same key twice in one SHIELD.absorball.
    #[error("ERR the same key appears more than once in one call")]
    DuplicateKey,

    /// The key holds a list, hash, set, ... instead of a string.
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,

    /// The key holds a string that is neither a 2.x nor a 1.x bucket.
    #[error("ERR the key holds a string that is not a redis-shield bucket")]
    NotABucket,

    /// `CL.THROTTLE` on a key that does not hold a redis-cell TAT.
    #[error("ERR the key holds a string that is not a CL.THROTTLE (redis-cell) bucket")]
    NotACellBucket,

    /// A 2.x bucket value whose expiry was removed (PERSIST) or set to a
    /// time no bucket can have: its state cannot be trusted.
    #[error(
        "ERR the bucket key's expiry was changed outside redis-shield; refusing to guess its state"
    )]
    BadExpiry,

    /// The server refused a write to the key (should not happen on a
    /// writable master; answered instead of an admission).
    #[error("ERR could not {0} the bucket key")]
    Storage(&'static str),

    /// The server lacks an API function or its clock is unusable, or an
    /// invariant broke (a value that cannot be encoded): never an admission.
    #[error("ERR internal error in redis-shield: {0}")]
    Internal(String),

    /// A bug: a panic caught at the command boundary.
    #[error("ERR internal error in redis-shield (please report it): {0}")]
    Panic(String),
}
