//! Reading and writing one bucket key, and replicating the effect (never
//! the command).
//!
//! The hot path is kept to what a native `SET key value PXAT ms` does: one
//! key lookup, one expiry lookup, the value rewritten in place only when its
//! bytes change (with the usual parameters they never do: `~0`), one expiry
//! write, then the signals and the replication of the effect. Nothing is
//! allocated here except by the server itself (a new key, the replicated
//! arguments).

use shield_engine::{decode, Bucket, Decimal, Encoded, Limit, ShieldError};

use crate::ffi::key::{Key, KeyType};
use crate::ffi::{Arg, CommandCtx, EventClass};

const TILDE_ZERO: &[u8] = b"~0";

/// How a key is opened.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Inspection: works on replicas; nothing is written.
    Read,
    /// Absorbing: reads, then writes when admitted.
    Write,
}

/// An open bucket key; closed when dropped.
pub struct BucketKey<'a> {
    ctx: CommandCtx<'a>,
    name: Arg<'a>,
    /// `None`: opened for reading and the key does not exist.
    key: Option<Key<'a>>,
    /// The value read is `~0`, the value of nearly every call with the usual
    /// parameters: writing `~0` again only moves the expiry.
    holds_tilde_zero: bool,
    /// The bucket read is a 1.x value that this call must store in the 2.x
    /// form, whatever it decides (see `shield_engine::Decoded`).
    legacy: Option<Bucket>,
}

impl<'a> BucketKey<'a> {
    pub fn open(
        ctx: CommandCtx<'a>,
        name: Arg<'a>,
        access: Access,
    ) -> Result<BucketKey<'a>, ShieldError> {
        let key = ctx.open_key(name, access == Access::Write)?;
        // Opened for reading, a missing key has no handle: a full bucket.
        if key.is_none() && access == Access::Write {
            return Err(ShieldError::Storage("open"));
        }
        Ok(BucketKey {
            ctx,
            name,
            key,
            holds_tilde_zero: false,
            legacy: None,
        })
    }

    pub fn name(&self) -> Arg<'a> {
        self.name
    }

    /// The bucket as it is at `now_ms`, read with `limit` (a missing key is
    /// a full bucket).
    pub fn read(&mut self, limit: Limit, now_ms: u64) -> Result<Bucket, ShieldError> {
        let Some(key) = self.key.as_mut() else {
            return Ok(Bucket::full(limit, now_ms));
        };
        match key.key_type()? {
            KeyType::Empty => return Ok(Bucket::full(limit, now_ms)),
            KeyType::String => {}
            KeyType::Other => return Err(ShieldError::WrongType),
        }
        let expire_at_ms = key.expire_at_ms()?;
        let value = key.string()?;
        self.holds_tilde_zero = value == TILDE_ZERO;
        let decoded = decode(limit, value, expire_at_ms, now_ms)?;
        self.legacy = decoded.must_store.then_some(decoded.bucket);
        Ok(decoded.bucket)
    }

    /// For a call that takes nothing from a 1.x bucket (denied): stores the
    /// bucket it was read as, so that refill runs from this moment and the
    /// retry-after it answered holds. A no-op for any other bucket (the
    /// usual case: a denied call writes nothing).
    pub fn store_if_legacy(&mut self) -> Result<(), ShieldError> {
        match self.legacy {
            Some(bucket) => self.store(&bucket.encode()?),
            None => Ok(()),
        }
    }

    /// Stores the new state and its expiry (on a key opened with
    /// [`Access::Write`]), signals the write like a native `SET` would
    /// (WATCH, client-side caching, keyspace events), and queues the same
    /// effect for replicas and the AOF as `SET key value PXAT ms`.
    pub fn store(&mut self, state: &Encoded) -> Result<(), ShieldError> {
        let key = self.key.as_mut().ok_or(ShieldError::Storage("write"))?;
        let value = state.value()?;
        if !(self.holds_tilde_zero && value == TILDE_ZERO) {
            key.write_string(value)?;
        }
        key.set_expire_at_ms(state.expire_at_ms())?;
        self.ctx.signal_modified(self.name)?;
        self.ctx.notify(EventClass::String, c"set", self.name)?;
        self.ctx.notify(EventClass::Generic, c"expire", self.name)?;
        let mut digits = Decimal::default();
        self.ctx
            .replicate_set(self.name, value, digits.format(state.expire_at_ms())?)?;
        self.holds_tilde_zero = value == TILDE_ZERO;
        self.legacy = None;
        Ok(())
    }
}
