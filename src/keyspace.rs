//! Reading and writing one bucket key, and replicating the effect (never
//! the command).
//!
//! The hot path is kept to what a native `SET key value PXAT ms` does: one
//! key lookup, one expiry lookup, the value rewritten in place only when its
//! bytes change (with the usual parameters they never do: `~0`), one expiry
//! write, then the signals and the replication of the effect. Nothing is
//! allocated here except by the server itself (a new key, the replicated
//! arguments).

use shield_engine::{decode, decode_cell, Bucket, CellState, Decimal, Encoded, Limit, ShieldError};

use crate::ffi::key::{Key, KeyType};
use crate::ffi::{Arg, CommandCtx, EventClass};

const TILDE_ZERO: &[u8] = b"~0";

/// A string key's value and absolute expiry (`None`: no expiry).
type StoredString<'k> = (&'k [u8], Option<i64>);

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

    /// The key's string value and absolute expiry; `None` when there is no
    /// key (a full bucket); WRONGTYPE for another type.
    #[inline]
    fn string(&mut self) -> Result<Option<StoredString<'_>>, ShieldError> {
        let Some(key) = self.key.as_mut() else {
            return Ok(None);
        };
        match key.key_type()? {
            KeyType::Empty => return Ok(None),
            KeyType::String => {}
            KeyType::Other => return Err(ShieldError::WrongType),
        }
        let expire_at_ms = key.expire_at_ms()?;
        Ok(Some((key.string()?, expire_at_ms)))
    }

    /// The bucket as it is at `now_ms`, read with `limit` (a missing key is
    /// a full bucket).
    #[inline]
    pub fn read(&mut self, limit: Limit, now_ms: u64) -> Result<Bucket, ShieldError> {
        let Some((value, expire_at_ms)) = self.string()? else {
            return Ok(Bucket::full(limit, now_ms));
        };
        let holds_tilde_zero = value == TILDE_ZERO;
        let decoded = decode(limit, value, expire_at_ms, now_ms)?;
        self.holds_tilde_zero = holds_tilde_zero;
        self.legacy = decoded.must_store.then_some(decoded.bucket);
        Ok(decoded.bucket)
    }

    /// The bucket of a `CL.THROTTLE` key (redis-cell's format: the TAT in
    /// nanoseconds) at `now_ms`.
    pub fn read_cell(&mut self, limit: Limit, now_ms: u64) -> Result<Bucket, ShieldError> {
        match self.string()? {
            None => Ok(Bucket::full(limit, now_ms)),
            Some((value, _)) => decode_cell(limit, value, now_ms),
        }
    }

    /// Stores a `CL.THROTTLE` state (redis-cell's format) like [`Self::store`].
    pub fn store_cell(&mut self, state: &mut CellState) -> Result<(), ShieldError> {
        let expire_at_ms = state.expire_at_ms();
        self.write(state.value()?, expire_at_ms)
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
    #[inline]
    pub fn store(&mut self, state: &Encoded) -> Result<(), ShieldError> {
        self.write(state.value()?, state.expire_at_ms())
    }

    #[inline]
    fn write(&mut self, value: &[u8], expire_at_ms: u64) -> Result<(), ShieldError> {
        let key = self.key.as_mut().ok_or(ShieldError::Storage("write"))?;
        if !(self.holds_tilde_zero && value == TILDE_ZERO) {
            key.write_string(value)?;
        }
        key.set_expire_at_ms(expire_at_ms)?;
        self.ctx.signal_modified(self.name)?;
        self.ctx.notify(EventClass::String, c"set", self.name)?;
        self.ctx.notify(EventClass::Generic, c"expire", self.name)?;
        let mut digits = Decimal::default();
        self.ctx
            .replicate_set(self.name, value, digits.format(expire_at_ms)?)?;
        self.holds_tilde_zero = value == TILDE_ZERO;
        self.legacy = None;
        Ok(())
    }
}
