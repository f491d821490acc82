//! Command registration, the panic guard at the handler boundary, command
//! docs and key specs, and the INFO section.

use std::ffi::CStr;
use std::os::raw::c_int;

use redis_module::raw;

use crate::error::ShieldError;
use crate::panic_guard;
use crate::reply::{self, Reply};
use crate::server_api::{reply_error, Ctx, RStr};
use crate::{absorb_all_command, absorb_command, command_info, inspect_command, stats};

/// Runs a command body under the panic guard and sends its reply. A panic
/// becomes an error reply: the server keeps running.
fn guarded(
    ctx: Ctx,
    argv: *mut RStr,
    argc: c_int,
    body: fn(Ctx, &[RStr]) -> Result<Reply, ShieldError>,
) -> c_int {
    stats::count(&stats::CALLS, 1);
    let args: &[RStr] = match usize::try_from(argc) {
        // SAFETY: the server passes argc valid argument pointers.
        Ok(n) if !argv.is_null() => unsafe { std::slice::from_raw_parts(argv, n) },
        _ => &[],
    };
    let result = panic_guard::run(|| body(ctx, args));
    if matches!(result, Err(ShieldError::Panic(_))) {
        stats::count(&stats::PANICS, 1);
    }
    match result {
        Ok(reply) => {
            if matches!(reply, Reply::WrongArity) {
                stats::count(&stats::ERRORS, 1);
            }
            reply::send(ctx, &reply)
        }
        Err(e) => {
            stats::count(&stats::ERRORS, 1);
            reply_error(ctx, &e.to_string())
        }
    }
}

extern "C" fn absorb_handler(ctx: Ctx, argv: *mut RStr, argc: c_int) -> c_int {
    guarded(ctx, argv, argc, absorb_command::run)
}

extern "C" fn inspect_handler(ctx: Ctx, argv: *mut RStr, argc: c_int) -> c_int {
    guarded(ctx, argv, argc, inspect_command::run)
}

extern "C" fn absorb_all_handler(ctx: Ctx, argv: *mut RStr, argc: c_int) -> c_int {
    guarded(ctx, argv, argc, absorb_all_command::run)
}

/// Registers every command; called from the module's OnLoad.
pub fn register_commands(ctx: Ctx) -> Result<(), String> {
    crate::keyspace::init_constants();
    // Only admitted writes signal the key (WATCH, client-side caching):
    // opening a key for writing must not count as modifying it.
    // SAFETY: OnLoad context.
    unsafe {
        if let Some(set_options) = raw::RedisModule_SetModuleOptions {
            set_options(
                ctx,
                raw::REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED as c_int,
            );
        }
    }
    create_command(
        ctx,
        c"SHIELD.absorb",
        absorb_handler,
        c"write deny-oom fast",
        1,
        1,
        1,
    )?;
    create_command(
        ctx,
        c"SHIELD.inspect",
        inspect_handler,
        c"readonly fast",
        1,
        1,
        1,
    )?;
    create_command(
        ctx,
        c"SHIELD.absorball",
        absorb_all_handler,
        c"write deny-oom",
        1,
        -1,
        4,
    )?;
    command_info::describe_all(ctx);
    Ok(())
}

fn create_command(
    ctx: Ctx,
    name: &'static CStr,
    handler: extern "C" fn(Ctx, *mut RStr, c_int) -> c_int,
    flags: &'static CStr,
    first_key: c_int,
    last_key: c_int,
    key_step: c_int,
) -> Result<(), String> {
    // SAFETY: called from OnLoad with the module's context.
    let created = unsafe {
        let Some(create) = raw::RedisModule_CreateCommand else {
            return Err("RedisModule_CreateCommand is missing".into());
        };
        create(
            ctx,
            name.as_ptr(),
            Some(handler),
            flags.as_ptr(),
            first_key,
            last_key,
            key_step,
        )
    };
    if created == raw::REDISMODULE_OK as c_int {
        Ok(())
    } else {
        Err(format!(
            "could not create command {}",
            name.to_string_lossy()
        ))
    }
}

/// Fills the `shield_stats` section of `INFO` (`INFO shield` shows it).
pub fn add_info(ctx: *mut raw::RedisModuleInfoCtx) {
    // SAFETY: ctx is the INFO callback's context.
    unsafe {
        let (Some(section), Some(field)) = (
            raw::RedisModule_InfoAddSection,
            raw::RedisModule_InfoAddFieldULongLong,
        ) else {
            return;
        };
        if section(ctx, c"stats".as_ptr()) != raw::REDISMODULE_OK as c_int {
            return;
        }
        for (name, value) in stats::snapshot() {
            field(ctx, name.as_ptr(), value);
        }
    }
}
