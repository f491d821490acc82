//! Command docs and key specs (`COMMAND INFO`, `COMMAND DOCS`,
//! `COMMAND GETKEYS`), built with redis-module's key spec and argument
//! types and set through `RedisModule_SetCommandInfo` (Redis 7.0 and later,
//! Valkey). Load time only.

use redis_module::commands::{
    BeginSearch, CommandArgFlags, FindKeys, KeySpec, KeySpecFlags, RedisModuleCommandArg,
};
use redis_module::raw;

use crate::ffi::module::{CommandDoc, ModuleCtx};

const SINCE: &std::ffi::CStr = c"2.0.0";

/// Keys from argument 1, every `step` arguments, up to `last_key` (relative
/// to the end when negative, as in the legacy first/last/step triple).
fn key_spec(last_key: i32, step: i32, flags: KeySpecFlags) -> Vec<KeySpec> {
    vec![KeySpec::new(
        None,
        flags,
        BeginSearch::new_index(1),
        FindKeys::new_range(last_key, step, 0),
    )]
}

fn arg(name: &str, type_: u32, summary: &str, flags: CommandArgFlags) -> RedisModuleCommandArg {
    let key = type_ == raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY;
    let token = type_ == raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN;
    RedisModuleCommandArg::new(
        name.into(),
        type_,
        key.then_some(0),
        token.then(|| name.into()),
        Some(summary.into()),
        None,
        flags,
        None,
        None,
        None,
    )
}

fn block(
    name: &str,
    summary: &str,
    flags: CommandArgFlags,
    subargs: Vec<RedisModuleCommandArg>,
) -> RedisModuleCommandArg {
    RedisModuleCommandArg::new(
        name.into(),
        raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_BLOCK,
        None,
        None,
        Some(summary.into()),
        None,
        flags,
        None,
        Some(subargs),
        None,
    )
}

use raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER as INTEGER;
use raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY as KEY;
use raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN as PURE_TOKEN;
const NONE: CommandArgFlags = CommandArgFlags::NONE;
const OPTIONAL: CommandArgFlags = CommandArgFlags::OPTIONAL;

fn bucket_args() -> [RedisModuleCommandArg; 3] {
    [
        arg("key", KEY, "the bucket's key", NONE),
        arg("capacity", INTEGER, "tokens the bucket holds", NONE),
        arg(
            "period",
            INTEGER,
            "seconds to refill from empty to full",
            NONE,
        ),
    ]
}

/// Docs and key specs of every command. False when the server has no
/// command-info API (the legacy first/last/step key positions still route
/// the commands).
pub fn describe_all(ctx: ModuleCtx<'_>) -> bool {
    let update = || KeySpecFlags::READ_WRITE | KeySpecFlags::ACCESS | KeySpecFlags::UPDATE;
    let read = KeySpecFlags::READ_ONLY | KeySpecFlags::ACCESS;
    let absorb = ctx.set_command_info(
        c"SHIELD.absorb",
        &CommandDoc {
            summary: c"Takes tokens from a token bucket if it holds enough: replies with the whole tokens left, or -1 when denied.",
            complexity: c"O(1)",
            since: SINCE,
            arity: -4,
        },
        key_spec(0, 1, update()),
        bucket_args()
            .into_iter()
            .chain([
                arg("tokens", INTEGER, "tokens this call takes (default 1)", OPTIONAL),
                arg(
                    "WITHDETAILS",
                    PURE_TOKEN,
                    "reply [admitted, tokens left, retry-after ms, reset-after ms]",
                    OPTIONAL,
                ),
            ])
            .collect(),
    );
    let inspect = ctx.set_command_info(
        c"SHIELD.inspect",
        &CommandDoc {
            summary: c"Reports a token bucket without changing it: [tokens available, capacity, ms until the next token, ms until full].",
            complexity: c"O(1)",
            since: SINCE,
            arity: 4,
        },
        key_spec(0, 1, read),
        bucket_args().into(),
    );
    let absorb_all = ctx.set_command_info(
        c"SHIELD.absorball",
        &CommandDoc {
            summary: c"Takes tokens from every bucket if each holds enough, else from none: [admitted, retry-after ms, [tokens left], [short keys]].",
            complexity: c"O(N) where N is the number of buckets (at most 32)",
            since: SINCE,
            arity: -5,
        },
        key_spec(-1, 4, update()),
        vec![block(
            "bucket",
            "one rate limit",
            CommandArgFlags::MULTIPLE,
            bucket_args()
                .into_iter()
                .chain([arg("tokens", INTEGER, "tokens this call takes from this bucket", NONE)])
                .collect(),
        )],
    );
    // Absent when the server had its own command of that name (then the
    // call fails, harmlessly) or it was turned off.
    let cl_throttle = ctx.set_command_info(
        c"CL.THROTTLE",
        &CommandDoc {
            summary: c"redis-cell's GCRA rate limit, exact: [limited, max_burst+1, remaining, retry_after s, reset_after s].",
            complexity: c"O(1)",
            since: SINCE,
            arity: -5,
        },
        key_spec(0, 1, update()),
        vec![
            arg("key", KEY, "the bucket's key (a redis-cell key)", NONE),
            arg("max_burst", INTEGER, "tokens beyond the first a burst may take: the bucket holds max_burst+1", NONE),
            arg("count", INTEGER, "tokens refilled per period", NONE),
            arg("period", INTEGER, "seconds", NONE),
            arg("quantity", INTEGER, "tokens this call takes (default 1; 0 peeks)", OPTIONAL),
        ],
    );
    let gcra = ctx.set_command_info(
        c"GCRA",
        &CommandDoc {
            summary: c"Redis's GCRA rate limit, exact: [limited, max_burst+1, available, retry_after s, full_burst_after s].",
            complexity: c"O(1)",
            since: SINCE,
            arity: -5,
        },
        key_spec(0, 1, update()),
        vec![
            arg("key", KEY, "the bucket's key", NONE),
            arg("max_burst", INTEGER, "tokens beyond the first a burst may take: the bucket holds max_burst+1", NONE),
            arg("tokens_per_period", INTEGER, "tokens refilled per period", NONE),
            arg("period", raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_DOUBLE, "seconds, an exact decimal (at most 6 decimal places)", NONE),
            block(
                "tokens",
                "tokens this call takes (default 1)",
                OPTIONAL,
                vec![
                    arg("TOKENS", PURE_TOKEN, "the keyword", NONE),
                    arg("count", INTEGER, "tokens", NONE),
                ],
            ),
        ],
    );
    absorb && inspect && absorb_all && cl_throttle && gcra
}
