//! Command docs and key specs (`COMMAND INFO`, `COMMAND DOCS`,
//! `COMMAND GETKEYS`), through `RedisModule_SetCommandInfo`, which Redis 7.0
//! and later and Valkey provide. The server copies everything it is given.

use std::ffi::CStr;
use std::mem::{size_of, zeroed};
use std::os::raw::c_int;
use std::ptr::{null, null_mut};

use redis_module::raw;

use crate::server_api::Ctx;

fn version() -> raw::RedisModuleCommandInfoVersion {
    raw::RedisModuleCommandInfoVersion {
        version: 1,
        sizeof_historyentry: size_of::<raw::RedisModuleCommandHistoryEntry>(),
        sizeof_keyspec: size_of::<raw::RedisModuleCommandKeySpec>(),
        sizeof_arg: size_of::<raw::RedisModuleCommandArg>(),
    }
}

/// A key spec for the single key at argument `pos`.
fn single_key_spec(pos: c_int, flags: u32) -> raw::RedisModuleCommandKeySpec {
    // SAFETY: an all-zero key spec is valid (null notes, zero flags); the
    // fields that matter are set below.
    let mut spec: raw::RedisModuleCommandKeySpec = unsafe { zeroed() };
    spec.flags = u64::from(flags);
    spec.begin_search_type = raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX;
    spec.bs.index = raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 { pos };
    spec.find_keys_type = raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE;
    spec.fk.range = raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 {
        lastkey: 0,
        keystep: 1,
        limit: 0,
    };
    spec
}

fn arg(
    name: &'static CStr,
    type_: raw::RedisModuleCommandArgType,
    summary: &'static CStr,
    optional: bool,
) -> raw::RedisModuleCommandArg {
    // SAFETY: all-zero is a valid "no token, no subargs" argument.
    let mut a: raw::RedisModuleCommandArg = unsafe { zeroed() };
    a.name = name.as_ptr();
    a.type_ = type_;
    a.key_spec_index = if type_ == raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY {
        0
    } else {
        -1
    };
    a.summary = summary.as_ptr();
    if optional {
        a.flags = raw::REDISMODULE_CMD_ARG_OPTIONAL as c_int;
    }
    a
}

fn set_info(ctx: Ctx, name: &'static CStr, info: &mut raw::RedisModuleCommandInfo) -> bool {
    // SAFETY: OnLoad context; `info` and everything it points to outlive
    // the call, and the server copies what it keeps.
    unsafe {
        let (Some(get), Some(set)) = (raw::RedisModule_GetCommand, raw::RedisModule_SetCommandInfo)
        else {
            return false;
        };
        let cmd = get(ctx, name.as_ptr());
        !cmd.is_null() && set(cmd, info) == raw::REDISMODULE_OK as c_int
    }
}

/// Docs and key spec of `SHIELD.absorb`. Returns false when the server has no
/// command-info API (the legacy first/last/step key positions still route it).
pub fn describe_absorb(ctx: Ctx) -> bool {
    use raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER as INTEGER;
    use raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY as KEY;
    let version = version();
    let mut key_specs = [
        single_key_spec(
            1,
            raw::REDISMODULE_CMD_KEY_RW
                | raw::REDISMODULE_CMD_KEY_ACCESS
                | raw::REDISMODULE_CMD_KEY_UPDATE,
        ),
        // SAFETY: the zeroed spec terminates the array.
        unsafe { zeroed() },
    ];
    let mut args = [
        arg(c"key", KEY, c"the bucket's key", false),
        arg(c"capacity", INTEGER, c"tokens the bucket holds", false),
        arg(
            c"period",
            INTEGER,
            c"seconds to refill from empty to full",
            false,
        ),
        arg(
            c"tokens",
            INTEGER,
            c"tokens this call takes (default 1)",
            true,
        ),
        // SAFETY: the zeroed argument terminates the array.
        unsafe { zeroed() },
    ];
    let mut info = raw::RedisModuleCommandInfo {
        version: &version,
        summary: c"Takes tokens from a token bucket if it holds enough: replies with the whole tokens left, or -1 when denied.".as_ptr(),
        complexity: c"O(1)".as_ptr(),
        since: c"2.0.0".as_ptr(),
        history: null_mut(),
        tips: null(),
        arity: -4,
        key_specs: key_specs.as_mut_ptr(),
        args: args.as_mut_ptr(),
    };
    set_info(ctx, c"SHIELD.absorb", &mut info)
}
