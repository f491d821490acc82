//! What the module declares at load: its commands (with their ACL
//! categories and docs), its options, and its INFO sections.

use std::ffi::CStr;
use std::os::raw::c_int;

use redis_module::raw;

use crate::commands::{absorb, absorb_all, cl_throttle, gcra, inspect};
use crate::ffi::module::{InfoCtx, InfoProvider, ModuleCtx};
use crate::ffi::{Arg, Command, CommandCtx, Status};
use crate::handler::guarded;
use crate::{command_info, eviction, stats};

/// Valkey 9's option for modules that can have their keys moved by atomic
/// slot migration (`CLUSTER MIGRATESLOTS`); not in redismodule.h. Redis's own
/// atomic slot migration asks nothing of modules.
const VALKEY_OPTION_HANDLE_ATOMIC_SLOT_MIGRATION: c_int = 1 << 5;

/// The ACL category of every SHIELD command, where the server lets modules
/// add categories (Redis 7.4+, Valkey 8+): `ACL SETUSER u +@ratelimit`.
pub const ACL_CATEGORY: &CStr = c"ratelimit";

/// A command of the module whose body runs under the handler's guard.
macro_rules! guarded_command {
    ($name:ident, $body:path) => {
        struct $name;
        impl Command for $name {
            fn run(ctx: CommandCtx<'_>, args: &[Arg<'_>]) -> Status {
                guarded(ctx, args, $body)
            }
        }
    };
}

guarded_command!(Absorb, absorb::run);
guarded_command!(Inspect, inspect::run);
guarded_command!(AbsorbAll, absorb_all::run);
guarded_command!(ClThrottle, cl_throttle::run);
guarded_command!(Gcra, gcra::run);

/// A command's registration: its flags, first/last key and step, and the ACL
/// categories of the native commands of the same nature (`INCRBY`, `GET`,
/// `MSET`), to which [`ACL_CATEGORY`] is added where the server allows it.
struct Registration {
    name: &'static CStr,
    flags: &'static CStr,
    keys: [c_int; 3],
    categories: &'static str,
}

const ABSORB: Registration = Registration {
    name: c"SHIELD.absorb",
    flags: c"write deny-oom fast",
    keys: [1, 1, 1],
    categories: "write string fast",
};
const INSPECT: Registration = Registration {
    name: c"SHIELD.inspect",
    flags: c"readonly fast",
    keys: [1, 1, 1],
    categories: "read string fast",
};
const ABSORB_ALL: Registration = Registration {
    name: c"SHIELD.absorball",
    flags: c"write deny-oom",
    keys: [1, -1, 4],
    categories: "write string slow",
};
const CL_THROTTLE: Registration = Registration {
    name: c"CL.THROTTLE",
    flags: c"write deny-oom fast",
    keys: [1, 1, 1],
    categories: "write string fast",
};
const GCRA: Registration = Registration {
    name: c"GCRA",
    flags: c"write deny-oom fast",
    keys: [1, 1, 1],
    categories: "write string fast",
};

/// The module's load-time arguments (`--loadmodule <path> [NO-CL.THROTTLE]
/// [NO-GCRA]`): the compatibility commands are on unless turned off.
struct Options {
    cl_throttle: bool,
    gcra: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options {
            cl_throttle: true,
            gcra: true,
        };
        for arg in args {
            match arg.to_ascii_uppercase().as_str() {
                "NO-CL.THROTTLE" => options.cl_throttle = false,
                "NO-GCRA" => options.gcra = false,
                _ => {
                    return Err(format!(
                        "unknown module argument '{arg}' (known: NO-CL.THROTTLE, NO-GCRA)"
                    ))
                }
            }
        }
        Ok(options)
    }
}

/// Everything OnLoad does; `args` are the module's load-time arguments.
pub fn load(ctx: ModuleCtx<'_>, args: &[String]) -> Result<(), String> {
    let commands_on = Options::parse(args)?;
    crate::ffi::init_constants();
    // - Only admitted writes signal the key (WATCH, client-side caching):
    //   opening a key for writing must not count as modifying it.
    // - All state is in the keyspace, so a replica may load a new dataset
    //   while serving the old one (`repl-diskless-load swapdb`), and a slot's
    //   keys may move by atomic slot migration: their values and absolute
    //   expiries are the whole state.
    let mut options = (raw::REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED
        | raw::REDISMODULE_OPTIONS_HANDLE_REPL_ASYNC_LOAD) as c_int;
    if is_valkey(ctx) {
        options |= VALKEY_OPTION_HANDLE_ATOMIC_SLOT_MIGRATION;
    }
    ctx.set_module_options(options);
    let own_category = ctx.add_acl_category(ACL_CATEGORY);
    if !own_category {
        ctx.log(
            c"notice",
            "redis-shield: this server cannot add ACL categories: no @ratelimit category",
        );
    }
    ctx.create_command::<Absorb>(ABSORB.name, ABSORB.flags, ABSORB.keys)?;
    ctx.create_command::<Inspect>(INSPECT.name, INSPECT.flags, INSPECT.keys)?;
    ctx.create_command::<AbsorbAll>(ABSORB_ALL.name, ABSORB_ALL.flags, ABSORB_ALL.keys)?;
    let mut commands = vec![ABSORB, INSPECT, ABSORB_ALL];
    // The compatibility commands step aside when the name is taken (by
    // redis-cell, or a server with its own GCRA) or turned off.
    if commands_on.cl_throttle {
        match ctx.create_command::<ClThrottle>(
            CL_THROTTLE.name,
            CL_THROTTLE.flags,
            CL_THROTTLE.keys,
        ) {
            Ok(()) => commands.push(CL_THROTTLE),
            Err(_) => ctx.log(
                c"warning",
                "redis-shield: CL.THROTTLE already exists on this server (is redis-cell loaded?): \
                 not registered",
            ),
        }
    }
    if commands_on.gcra {
        match ctx.create_command::<Gcra>(GCRA.name, GCRA.flags, GCRA.keys) {
            Ok(()) => commands.push(GCRA),
            Err(_) => ctx.log(
                c"notice",
                "redis-shield: this server has its own GCRA command: redis-shield's is not registered",
            ),
        }
    }
    for command in commands {
        let categories = if own_category {
            format!("{} {}", command.categories, ACL_CATEGORY.to_string_lossy())
        } else {
            command.categories.to_owned()
        };
        if !ctx.set_acl_categories(command.name, &categories)? {
            ctx.log(
                c"warning",
                &format!(
                    "redis-shield: this server cannot put module commands in ACL categories: \
                     rules like -@write do not cover {}; name it in ACL rules",
                    command.name.to_string_lossy()
                ),
            );
        }
    }
    command_info::describe_all(ctx);
    ctx.register_info::<Info>();
    eviction::watch(ctx);
    Ok(())
}

/// True on Valkey (which names itself in `INFO server`; Redis does not).
fn is_valkey(ctx: ModuleCtx<'_>) -> bool {
    ctx.server_info(c"server")
        .and_then(|info| info.text(c"server_name"))
        .is_some_and(|name| name.eq_ignore_ascii_case("valkey"))
}

/// The module's INFO sections: `shield_stats`, `shield_eviction`.
struct Info;

impl InfoProvider for Info {
    fn add_info(info: InfoCtx<'_>) {
        if info.section(c"stats") {
            for (name, value) in stats::snapshot() {
                info.number(name, value);
            }
        }
        eviction::add_info(info);
    }
}
