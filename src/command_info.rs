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

/// A key spec: keys from argument 1, every `step` arguments, up to the last
/// key (`last_key` relative to the end when negative, as in the legacy
/// first/last/step triple).
fn key_spec(last_key: c_int, step: c_int, flags: u32) -> raw::RedisModuleCommandKeySpec {
    // SAFETY: an all-zero key spec is valid (null notes, zero flags); the
    // fields that matter are set below.
    let mut spec: raw::RedisModuleCommandKeySpec = unsafe { zeroed() };
    spec.flags = u64::from(flags);
    spec.begin_search_type = raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX;
    spec.bs.index = raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 { pos: 1 };
    spec.find_keys_type = raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE;
    spec.fk.range = raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 {
        lastkey: last_key,
        keystep: step,
        limit: 0,
    };
    spec
}

fn arg(
    name: &'static CStr,
    type_: raw::RedisModuleCommandArgType,
    summary: &'static CStr,
    flags: u32,
) -> raw::RedisModuleCommandArg {
    // SAFETY: all-zero is a valid "no token, no subargs" argument.
    let mut a: raw::RedisModuleCommandArg = unsafe { zeroed() };
    a.name = name.as_ptr();
    a.type_ = type_;
    a.key_spec_index = if type_ == KEY { 0 } else { -1 };
    a.summary = summary.as_ptr();
    a.flags = flags as c_int;
    if type_ == PURE_TOKEN {
        a.token = name.as_ptr();
    }
    a
}

fn end_of_args() -> raw::RedisModuleCommandArg {
    // SAFETY: the zeroed argument terminates an argument array.
    unsafe { zeroed() }
}

fn end_of_key_specs() -> raw::RedisModuleCommandKeySpec {
    // SAFETY: the zeroed key spec terminates a key spec array.
    unsafe { zeroed() }
}

use raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_BLOCK as BLOCK;
use raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER as INTEGER;
use raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY as KEY;
use raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN as PURE_TOKEN;
const OPTIONAL: u32 = raw::REDISMODULE_CMD_ARG_OPTIONAL;
const MULTIPLE: u32 = raw::REDISMODULE_CMD_ARG_MULTIPLE;
const RW_UPDATE: u32 =
    raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_ACCESS | raw::REDISMODULE_CMD_KEY_UPDATE;
const RO_ACCESS: u32 = raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS;

struct Doc {
    name: &'static CStr,
    summary: &'static CStr,
    complexity: &'static CStr,
    arity: c_int,
}

fn describe(
    ctx: Ctx,
    doc: &Doc,
    key_specs: &mut [raw::RedisModuleCommandKeySpec],
    args: &mut [raw::RedisModuleCommandArg],
) -> bool {
    let version = version();
    let info = raw::RedisModuleCommandInfo {
        version: &version,
        summary: doc.summary.as_ptr(),
        complexity: doc.complexity.as_ptr(),
        since: c"2.0.0".as_ptr(),
        history: null_mut(),
        tips: null(),
        arity: doc.arity,
        key_specs: key_specs.as_mut_ptr(),
        args: args.as_mut_ptr(),
    };
    // SAFETY: OnLoad context; `info` and everything it points to outlive
    // the call, and the server copies what it keeps.
    unsafe {
        let (Some(get), Some(set)) = (raw::RedisModule_GetCommand, raw::RedisModule_SetCommandInfo)
        else {
            return false;
        };
        let cmd = get(ctx, doc.name.as_ptr());
        !cmd.is_null() && set(cmd, &info) == raw::REDISMODULE_OK as c_int
    }
}

/// Docs and key specs of every command. Returns false when the server has no
/// command-info API (the legacy first/last/step key positions still route
/// the commands).
pub fn describe_all(ctx: Ctx) -> bool {
    let absorb = describe(
        ctx,
        &Doc {
            name: c"SHIELD.absorb",
            summary: c"Takes tokens from a token bucket if it holds enough: replies with the whole tokens left, or -1 when denied.",
            complexity: c"O(1)",
            arity: -4,
        },
        &mut [key_spec(0, 1, RW_UPDATE), end_of_key_specs()],
        &mut [
            arg(c"key", KEY, c"the bucket's key", 0),
            arg(c"capacity", INTEGER, c"tokens the bucket holds", 0),
            arg(c"period", INTEGER, c"seconds to refill from empty to full", 0),
            arg(c"tokens", INTEGER, c"tokens this call takes (default 1)", OPTIONAL),
            arg(
                c"WITHDETAILS",
                PURE_TOKEN,
                c"reply [admitted, tokens left, retry-after ms, reset-after ms]",
                OPTIONAL,
            ),
            end_of_args(),
        ],
    );
    let inspect = describe(
        ctx,
        &Doc {
            name: c"SHIELD.inspect",
            summary: c"Reports a token bucket without changing it: [tokens available, capacity, ms until the next token, ms until full].",
            complexity: c"O(1)",
            arity: 4,
        },
        &mut [key_spec(0, 1, RO_ACCESS), end_of_key_specs()],
        &mut [
            arg(c"key", KEY, c"the bucket's key", 0),
            arg(c"capacity", INTEGER, c"tokens the bucket holds", 0),
            arg(c"period", INTEGER, c"seconds to refill from empty to full", 0),
            end_of_args(),
        ],
    );
    let mut bucket_args = [
        arg(c"key", KEY, c"the bucket's key", 0),
        arg(c"capacity", INTEGER, c"tokens the bucket holds", 0),
        arg(
            c"period",
            INTEGER,
            c"seconds to refill from empty to full",
            0,
        ),
        arg(
            c"tokens",
            INTEGER,
            c"tokens this call takes from this bucket",
            0,
        ),
        end_of_args(),
    ];
    let mut bucket = arg(c"bucket", BLOCK, c"one rate limit", MULTIPLE);
    bucket.subargs = bucket_args.as_mut_ptr();
    let absorb_all = describe(
        ctx,
        &Doc {
            name: c"SHIELD.absorball",
            summary: c"Takes tokens from every bucket if each holds enough, else from none: [admitted, retry-after ms, [tokens left], [short keys]].",
            complexity: c"O(N) where N is the number of buckets (at most 32)",
            arity: -5,
        },
        &mut [key_spec(-1, 4, RW_UPDATE), end_of_key_specs()],
        &mut [bucket, end_of_args()],
    );
    absorb && inspect && absorb_all
}
