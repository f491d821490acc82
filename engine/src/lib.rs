//! shield-engine: the exact token bucket of redis-shield, free of any server.
//!
//! Everything a SHIELD command decides is decided here, from bytes and a
//! millisecond clock, so it can be tested on a simulated clock against an
//! exact rational reference model; the module around it only reads the key,
//! calls the engine, writes and replicates.
//!
//! - [`Limit`]: a bucket's capacity and period, validated.
//! - [`Bucket`]: a bucket at one instant; [`Bucket::absorb`] decides,
//!   [`Bucket::inspect`] reports, [`absorb_all`] charges several buckets
//!   all or nothing.
//! - [`decode`] / [`Bucket::encode`]: the stored form (a string value and
//!   the key's absolute expiry).
//! - [`parse_bucket`]: the command arguments; [`ShieldError`]: every error
//!   reply, with its exact text.
//!
//! ```
//! use shield_engine::{decode, parse_bucket, Bucket, Decision};
//! // SHIELD.absorb user123 30 60 13, on a key that does not exist, at t = 1 s.
//! let args = parse_bucket(b"30", b"60", Some(b"13"))?;
//! let bucket = Bucket::full(args.limit, 1_000);
//! let Decision::Admitted { after, tokens_left } = bucket.absorb(args.tokens) else {
//!     panic!("a full bucket of 30 admits 13");
//! };
//! assert_eq!(tokens_left, 17);
//! // What the server stores (and replicates as SET user123 ~0 PXAT 27000).
//! let stored = after.encode()?;
//! assert_eq!((stored.value()?, stored.expire_at_ms()), (&b"~0"[..], 27_000));
//! // The next call reads it back.
//! let read = decode(args.limit, stored.value()?, Some(27_000), 1_000)?;
//! assert_eq!(read.bucket.tokens_left(), 17);
//! assert!(matches!(read.bucket.absorb(13), Decision::Admitted { tokens_left: 4, .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Representation
//!
//! Time is counted in *ticks* of `1 / capacity` millisecond, so one token
//! takes exactly `period * 1000` ticks to refill and no refill is ever
//! rounded away; all arithmetic is integer (`u128` on bounded inputs, no
//! overflow). Ticks stay inside the crate: its API speaks milliseconds.

mod absorb_all;
mod args;
mod bucket;
mod cell;
mod decimal;
mod error;
mod gcra;
mod limit;
mod stored;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod reference;

pub use absorb_all::{absorb_all, AbsorbAllOutcome, Charge};
pub use args::{parse_bucket, parse_positive, BucketArgs, MAX_TOKENS};
pub use bucket::{Bucket, Decision, Details, Inspection};
pub use cell::{decode_cell, parse_throttle, throttle, CellState, ThrottleArgs};
pub use decimal::Decimal;
pub use error::ShieldError;
pub use gcra::{gcra, parse_gcra, GcraArgs, GcraReply};
pub use limit::{Limit, Rate, Seconds, MAX_CAPACITY, MAX_PERIOD_DECIMALS, MAX_PERIOD_SECS};
pub use stored::{decode, Decoded, Encoded, MAX_VALUE_LEN};
