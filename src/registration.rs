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

/// Valkey 9's option for modules that can have their keys moved by atomic
/// slot migration (`CLUSTER MIGRATESLOTS`); not in redismodule.h. Redis's own
/// atomic slot migration asks nothing of modules.
const VALKEY_OPTION_HANDLE_ATOMIC_SLOT_MIGRATION: c_int = 1 << 5;

/// The ACL category of every SHIELD command, where the server lets modules
/// add categories (Redis 7.4+): `ACL SETUSER u +@ratelimit`.
pub const ACL_CATEGORY: &CStr = c"ratelimit";

/// The commands: name, handler, flags, first/last key and step, and the ACL
/// categories of the native commands of the same nature (`INCRBY`, `GET`,
/// `MSET`), to which [`ACL_CATEGORY`] is added where the server allows it.
type Handler = extern "C" fn(Ctx, *mut RStr, c_int) -> c_int;
const COMMANDS: [(&CStr, Handler, &CStr, [c_int; 3], &str); 3] = [
    (
        c"SHIELD.absorb",
        absorb_handler,
        c"write deny-oom fast",
        [1, 1, 1],
        "write string fast",
    ),
    (
        c"SHIELD.inspect",
        inspect_handler,
        c"readonly fast",
        [1, 1, 1],
        "read string fast",
    ),
    (
        c"SHIELD.absorball",
        absorb_all_handler,
        c"write deny-oom",
        [1, -1, 4],
        "write string slow",
    ),
];

/// Registers every command; called from the module's OnLoad.
pub fn register_commands(ctx: Ctx) -> Result<(), String> {
    crate::keyspace::init_constants();
    // - Only admitted writes signal the key (WATCH, client-side caching):
    //   opening a key for writing must not count as modifying it.
    // - All state is in the keyspace, so a replica may load a new dataset
    //   while serving the old one (`repl-diskless-load swapdb`), and a slot's
    //   keys may move by atomic slot migration: their values and absolute
    //   expiries are the whole state.
    let mut options = (raw::REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED
        | raw::REDISMODULE_OPTIONS_HANDLE_REPL_ASYNC_LOAD) as c_int;
    if crate::server_info::is_valkey(ctx) {
        options |= VALKEY_OPTION_HANDLE_ATOMIC_SLOT_MIGRATION;
    }
    // SAFETY: OnLoad context.
    unsafe {
        if let Some(set_options) = raw::RedisModule_SetModuleOptions {
            set_options(ctx, options);
        }
    }
    let own_category = add_acl_category(ctx);
    for (name, handler, flags, [first, last, step], categories) in COMMANDS {
        create_command(ctx, name, handler, flags, first, last, step)?;
        let categories = if own_category {
            format!("{categories} {}", ACL_CATEGORY.to_string_lossy())
        } else {
            categories.to_owned()
        };
        set_acl_categories(ctx, name, &categories)?;
    }
    command_info::describe_all(ctx);
    Ok(())
}

/// Adds [`ACL_CATEGORY`]; false where the server cannot (before Redis 7.4).
fn add_acl_category(ctx: Ctx) -> bool {
    // SAFETY: OnLoad context, NUL-terminated name.
    let added = unsafe {
        raw::RedisModule_AddACLCategory
            .is_some_and(|add| add(ctx, ACL_CATEGORY.as_ptr()) == raw::REDISMODULE_OK as c_int)
    };
    if !added {
        crate::server_info::log(
            ctx,
            c"notice",
            "redis-shield: this server cannot add ACL categories: no @ratelimit category",
        );
    }
    added
}

/// Puts a command in ACL categories, so that rules like `-@write` cover it.
/// Where the server cannot (Redis 7.0), the command is in no category: the
/// README says to name the commands in ACL rules there.
fn set_acl_categories(ctx: Ctx, name: &CStr, categories: &str) -> Result<(), String> {
    // SAFETY: OnLoad context; the command was just created.
    unsafe {
        let (Some(get), Some(set)) = (
            raw::RedisModule_GetCommand,
            raw::RedisModule_SetCommandACLCategories,
        ) else {
            crate::server_info::log(
                ctx,
                c"warning",
                &format!(
                    "redis-shield: this server cannot put module commands in ACL categories: \
                     rules like -@write do not cover {}; name it in ACL rules",
                    name.to_string_lossy()
                ),
            );
            return Ok(());
        };
        let command = get(ctx, name.as_ptr());
        let list = std::ffi::CString::new(categories).map_err(|e| e.to_string())?;
        if command.is_null() || set(command, list.as_ptr()) != raw::REDISMODULE_OK as c_int {
            return Err(format!(
                "could not set the ACL categories of {} to '{categories}'",
                name.to_string_lossy()
            ));
        }
    }
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
    crate::eviction::add_info(ctx);
}
