//! redis-shield: `SHIELD.absorb`, an exact token-bucket rate limiter living
//! in the server's own keyspace.
//!
//! The algorithm ([`bucket`]) and the stored format ([`stored_state`]) are
//! pure and unit-tested with a simulated clock; the rest is a thin layer over
//! the server's module API.

pub mod args;
pub mod bucket;
pub mod error;
pub mod panic_guard;
pub mod stored_state;
#[cfg(test)]
mod testing;

#[cfg(not(test))]
mod absorb_all_command;
#[cfg(not(test))]
mod absorb_command;
#[cfg(not(test))]
mod command_info;
#[cfg(not(test))]
mod eviction;
#[cfg(not(test))]
mod inspect_command;
#[cfg(not(test))]
mod keyspace;
#[cfg(not(test))]
mod registration;
#[cfg(not(test))]
mod reply;
#[cfg(not(test))]
mod server_api;
#[cfg(not(test))]
mod server_info;
#[cfg(not(test))]
mod stats;

#[cfg(not(test))]
mod module {
    use redis_module::{raw, redis_module, Context, RedisString, Status};

    extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: i32) {
        crate::registration::add_info(ctx);
    }

    fn init(ctx: &Context, _args: &[RedisString]) -> Status {
        if let Err(e) = crate::registration::register_commands(ctx.ctx) {
            ctx.log_warning(&format!("redis-shield: {e}"));
            return Status::Err;
        }
        crate::eviction::watch(ctx.ctx);
        // Replaces the info callback the macro installed (it runs before
        // init), so INFO shows our own section without an extra crate.
        // SAFETY: OnLoad context.
        unsafe {
            if let Some(register) = raw::RedisModule_RegisterInfoFunc {
                register(ctx.ctx, Some(info));
            }
        }
        Status::Ok
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
