//! redis-shield: the SHIELD commands, an exact token-bucket rate limiter
//! living in the server's own keyspace.
//!
//! This crate is the server layer only; every decision is made by the pure
//! engine (`shield-engine`, in `engine/`). The rooms, and who may use whom
//! (always downwards):
//!
//! - `lib.rs`: the module itself (OnLoad, OnUnload).
//! - [`registration`]: what is declared at load: commands, ACL categories,
//!   options, INFO; [`command_info`]: command docs and key specs;
//!   [`eviction`]: the eviction-policy watch.
//! - [`commands`]: one file per command: arguments, key, engine, write.
//! - [`handler`]: the handler boundary: panic guard, counters ([`stats`]),
//!   reply ([`reply`]).
//! - [`keyspace`]: reading, writing and replicating one bucket key.
//! - [`ffi`]: the only room with raw pointers: the server's module API
//!   behind lifetime-bound wrappers.

pub mod command_info;
pub mod commands;
pub mod eviction;
pub mod ffi;
pub mod handler;
pub mod keyspace;
pub mod registration;
pub mod reply;
pub mod stats;

/// The module definition. Not built into unit tests: it installs the
/// server's allocator, which does not exist outside a server.
#[cfg(not(test))]
mod module {
    use redis_module::{redis_module, Context, RedisString, Status};

    use crate::ffi::module::ModuleCtx;

    fn init(ctx: &Context, args: &[RedisString]) -> Status {
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy()).collect();
        let loaded = ModuleCtx::of(ctx)
            .ok_or_else(|| "no module context".to_owned())
            .and_then(|module| crate::registration::load(module, &args));
        match loaded {
            Ok(()) => Status::Ok,
            Err(e) => {
                ctx.log_warning(&format!("redis-shield: {e}"));
                Status::Err
            }
        }
    }

    /// `MODULE UNLOAD` is refused: a server frees an unloaded module's
    /// commands while a client may still hold one (queued in `MULTI`, or
    /// held by `CLIENT PAUSE`), and running it then crashes the server. To
    /// change the module's version, restart the server with the new `.so`
    /// (or fail over to a replica that loads it).
    fn refuse_unload(ctx: &Context) -> Status {
        ctx.log_warning(
            "redis-shield: MODULE UNLOAD refused: a SHIELD command queued in MULTI or held by \
             CLIENT PAUSE would crash the server once the module is gone. To upgrade, restart \
             the server with the new module (or fail over to a replica that loads it).",
        );
        Status::Err
    }

    redis_module! {
        name: "shield",
        version: 20000,
        allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
        data_types: [],
        init: init,
        deinit: refuse_unload,
        commands: [],
    }
}
