//! The module outside a command: loading (commands, options, ACL, docs),
//! the INFO callback, server events and the log.

use std::ffi::{c_void, CStr, CString};
use std::marker::PhantomData;
use std::os::raw::c_int;
use std::ptr::NonNull;

use redis_module::commands::{
    get_redis_command_args, get_redis_key_spec, KeySpec, RedisModuleCommandArg,
};
use redis_module::raw;
use redis_module::Context;

use super::{entry, Command};

/// A context of the module outside a command: OnLoad, or a server event.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct ModuleCtx<'a> {
    raw: NonNull<raw::RedisModuleCtx>,
    _call: PhantomData<&'a raw::RedisModuleCtx>,
}

impl<'a> ModuleCtx<'a> {
    /// The context redis-module hands OnLoad (`None` if it has none).
    pub fn of(ctx: &'a Context) -> Option<ModuleCtx<'a>> {
        NonNull::new(ctx.ctx).map(|raw| ModuleCtx {
            raw,
            _call: PhantomData,
        })
    }

    fn from_raw(ctx: *mut raw::RedisModuleCtx) -> Option<ModuleCtx<'a>> {
        NonNull::new(ctx).map(|raw| ModuleCtx {
            raw,
            _call: PhantomData,
        })
    }

    fn as_ptr(self) -> *mut raw::RedisModuleCtx {
        self.raw.as_ptr()
    }

    /// Writes a line to the server's log at `level` (`warning`, `notice`...).
    pub fn log(self, level: &CStr, message: &str) {
        let Ok(text) = CString::new(message.replace('\0', " ")) else {
            return;
        };
        // SAFETY: every pointer is a NUL-terminated string; "%s" takes one.
        unsafe {
            if let Some(log) = raw::RedisModule_Log {
                log(self.as_ptr(), level.as_ptr(), c"%s".as_ptr(), text.as_ptr());
            }
        }
    }

    /// Sets the module's options (`REDISMODULE_OPTIONS_*` bits).
    pub fn set_module_options(self, options: c_int) {
        // SAFETY: OnLoad context.
        unsafe {
            if let Some(set) = raw::RedisModule_SetModuleOptions {
                set(self.as_ptr(), options);
            }
        }
    }

    /// Registers command `C` under `name`.
    pub fn create_command<C: Command>(
        self,
        name: &CStr,
        flags: &CStr,
        [first, last, step]: [c_int; 3],
    ) -> Result<(), String> {
        // SAFETY: OnLoad context; the strings are NUL-terminated and the
        // handler is a function of this module.
        let created = unsafe {
            let Some(create) = raw::RedisModule_CreateCommand else {
                return Err("RedisModule_CreateCommand is missing".into());
            };
            create(
                self.as_ptr(),
                name.as_ptr(),
                Some(entry::<C>),
                flags.as_ptr(),
                first,
                last,
                step,
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

    fn command(self, name: &CStr) -> Option<NonNull<raw::RedisModuleCommand>> {
        // SAFETY: OnLoad context, NUL-terminated name.
        unsafe { NonNull::new(raw::RedisModule_GetCommand?(self.as_ptr(), name.as_ptr())) }
    }

    /// Adds an ACL category; false where the server cannot (before Redis
    /// 7.4) or refuses.
    pub fn add_acl_category(self, name: &CStr) -> bool {
        // SAFETY: OnLoad context, NUL-terminated name.
        unsafe {
            raw::RedisModule_AddACLCategory.is_some_and(|add| {
                add(self.as_ptr(), name.as_ptr()) == raw::REDISMODULE_OK as c_int
            })
        }
    }

    /// Puts a command in ACL categories (space-separated). `Ok(false)` where
    /// the server cannot (Redis 7.0).
    pub fn set_acl_categories(self, name: &CStr, categories: &str) -> Result<bool, String> {
        // SAFETY: a pure read of an API pointer.
        let Some(set) = (unsafe { raw::RedisModule_SetCommandACLCategories }) else {
            return Ok(false);
        };
        let list = CString::new(categories).map_err(|e| e.to_string())?;
        let command = self
            .command(name)
            .ok_or_else(|| format!("no command {}", name.to_string_lossy()))?;
        // SAFETY: a command of this module, during OnLoad.
        if unsafe { set(command.as_ptr(), list.as_ptr()) } == raw::REDISMODULE_OK as c_int {
            Ok(true)
        } else {
            Err(format!(
                "could not set the ACL categories of {} to '{categories}'",
                name.to_string_lossy()
            ))
        }
    }

    /// Command docs and key specs (`COMMAND INFO`, `COMMAND DOCS`,
    /// `GETKEYS`), built with redis-module's key spec and argument types. The
    /// server copies what it is given. False where the server has no
    /// command-info API.
    pub fn set_command_info(
        self,
        name: &CStr,
        doc: &CommandDoc,
        key_specs: Vec<KeySpec>,
        args: Vec<RedisModuleCommandArg>,
    ) -> bool {
        let version = raw::RedisModuleCommandInfoVersion {
            version: 1,
            sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
            sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
            sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
        };
        let mut key_specs = get_redis_key_spec(key_specs);
        let mut args = get_redis_command_args(args).unwrap_or_default();
        let info = raw::RedisModuleCommandInfo {
            version: &version,
            summary: doc.summary.as_ptr(),
            complexity: doc.complexity.as_ptr(),
            since: doc.since.as_ptr(),
            history: std::ptr::null_mut(),
            tips: std::ptr::null(),
            arity: doc.arity,
            key_specs: key_specs.as_mut_ptr(),
            args: if args.is_empty() {
                std::ptr::null_mut()
            } else {
                args.as_mut_ptr()
            },
        };
        let set = match (self.command(name), unsafe_api_set_command_info()) {
            // SAFETY: a command of this module during OnLoad; `info` and all it
            // points to outlive the call.
            (Some(command), Some(set)) => unsafe {
                set(command.as_ptr(), &info) == raw::REDISMODULE_OK as c_int
            },
            _ => false,
        };
        // The key specs carry no allocated strings (no notes); the argument
        // strings were allocated by redis-module: give them back.
        free_args(&mut args);
        set
    }

    /// Reads one `INFO` section (`None`: no API, or refused).
    pub fn server_info(self, section: &CStr) -> Option<ServerInfo<'a>> {
        // SAFETY: a live context of this module; freed in Drop.
        let data = unsafe { raw::RedisModule_GetServerInfo?(self.as_ptr(), section.as_ptr()) };
        NonNull::new(data).map(|data| ServerInfo { ctx: self, data })
    }

    /// Registers `I` as the module's INFO callback.
    pub fn register_info<I: InfoProvider>(self) {
        // SAFETY: OnLoad context; the callback is a function of this module.
        unsafe {
            if let Some(register) = raw::RedisModule_RegisterInfoFunc {
                register(self.as_ptr(), Some(info_callback::<I>));
            }
        }
    }

    /// Calls `E::config_changed` after every `CONFIG SET`; false where the
    /// server does not tell modules.
    pub fn subscribe_config_changes<E: ServerEvents>(self) -> bool {
        self.subscribe(CONFIG_EVENT, Some(config_event::<E>))
    }

    /// Starts (or stops) calling `E::key_evicted` for every evicted key.
    pub fn subscribe_evictions<E: ServerEvents>(self, on: bool) -> bool {
        self.subscribe(KEY_EVENT, on.then_some(key_event::<E> as EventCallback))
    }

    fn subscribe(self, event: raw::RedisModuleEvent, callback: Option<EventCallback>) -> bool {
        // SAFETY: a live context of this module; the callbacks live as long
        // as the module (which refuses to unload); None unsubscribes.
        unsafe {
            raw::RedisModule_SubscribeToServerEvent.is_some_and(|subscribe| {
                subscribe(self.as_ptr(), event, callback) == raw::REDISMODULE_OK as c_int
            })
        }
    }
}

fn unsafe_api_set_command_info() -> Option<
    unsafe extern "C" fn(*mut raw::RedisModuleCommand, *const raw::RedisModuleCommandInfo) -> c_int,
> {
    // SAFETY: a pure read of an API pointer written at load.
    unsafe { raw::RedisModule_SetCommandInfo }
}

/// Gives back the strings `get_redis_command_args` allocated (as
/// `CString::into_raw`), recursively; the arrays themselves are Vecs (the
/// top one here, subarguments as boxed slices ending with a zeroed entry).
fn free_args(args: &mut [raw::RedisModuleCommandArg]) {
    for arg in args {
        for s in [
            arg.name,
            arg.token,
            arg.summary,
            arg.since,
            arg.deprecated_since,
            arg.display_text,
        ] {
            if !s.is_null() {
                // SAFETY: allocated by CString::into_raw in redis-module and
                // not freed elsewhere.
                drop(unsafe { CString::from_raw(s.cast_mut()) });
            }
        }
        if !arg.subargs.is_null() {
            // SAFETY: a boxed slice of arguments ending with a zeroed one
            // (null name), as redis-module builds it.
            unsafe {
                let mut n = 0;
                while !(*arg.subargs.add(n)).name.is_null() {
                    n += 1;
                }
                let mut sub = Box::from_raw(std::ptr::slice_from_raw_parts_mut(arg.subargs, n + 1));
                if let Some(named) = sub.get_mut(..n) {
                    free_args(named);
                }
            }
        }
    }
}

/// The text of a command's docs.
pub struct CommandDoc {
    pub summary: &'static CStr,
    pub complexity: &'static CStr,
    pub since: &'static CStr,
    pub arity: c_int,
}

/// One `INFO` section, freed when dropped.
pub struct ServerInfo<'a> {
    ctx: ModuleCtx<'a>,
    data: NonNull<raw::RedisModuleServerInfoData>,
}

impl ServerInfo<'_> {
    /// A field as text (`None`: absent).
    pub fn text(&self, field: &CStr) -> Option<String> {
        // SAFETY: the data is live; the returned C string belongs to it and
        // is copied before it can be freed.
        unsafe {
            let value = raw::RedisModule_ServerInfoGetFieldC?(self.data.as_ptr(), field.as_ptr());
            (!value.is_null()).then(|| CStr::from_ptr(value).to_string_lossy().into_owned())
        }
    }

    /// A field as an unsigned integer (`None`: absent or not a number).
    pub fn unsigned(&self, field: &CStr) -> Option<u64> {
        let mut err = 0;
        // SAFETY: the data is live; err is a valid out-pointer.
        let value = unsafe {
            raw::RedisModule_ServerInfoGetFieldUnsigned?(
                self.data.as_ptr(),
                field.as_ptr(),
                &mut err,
            )
        };
        (err == 0).then_some(value)
    }
}

impl Drop for ServerInfo<'_> {
    fn drop(&mut self) {
        // SAFETY: data came from GetServerInfo and is freed once.
        unsafe {
            if let Some(free) = raw::RedisModule_FreeServerInfo {
                free(self.ctx.as_ptr(), self.data.as_ptr());
            }
        }
    }
}

/// The INFO callback's context.
#[derive(Clone, Copy)]
pub struct InfoCtx<'a> {
    raw: NonNull<raw::RedisModuleInfoCtx>,
    _call: PhantomData<&'a raw::RedisModuleInfoCtx>,
}

impl InfoCtx<'_> {
    /// Starts section `shield_<name>`; false if the server does not want it.
    pub fn section(self, name: &CStr) -> bool {
        // SAFETY: the callback's context; NUL-terminated name.
        unsafe {
            raw::RedisModule_InfoAddSection.is_some_and(|add| {
                add(self.raw.as_ptr(), name.as_ptr()) == raw::REDISMODULE_OK as c_int
            })
        }
    }

    pub fn number(self, name: &CStr, value: u64) {
        // SAFETY: the callback's context; NUL-terminated name.
        unsafe {
            if let Some(add) = raw::RedisModule_InfoAddFieldULongLong {
                add(self.raw.as_ptr(), name.as_ptr(), value);
            }
        }
    }

    pub fn text(self, name: &CStr, value: &str) {
        let Ok(value) = CString::new(value) else {
            return;
        };
        // SAFETY: the callback's context; NUL-terminated strings.
        unsafe {
            if let Some(add) = raw::RedisModule_InfoAddFieldCString {
                add(self.raw.as_ptr(), name.as_ptr(), value.as_ptr());
            }
        }
    }
}

/// What the module adds to `INFO`.
pub trait InfoProvider {
    fn add_info(info: InfoCtx<'_>);
}

extern "C" fn info_callback<I: InfoProvider>(
    ctx: *mut raw::RedisModuleInfoCtx,
    _for_crash_report: c_int,
) {
    if let Some(raw) = NonNull::new(ctx) {
        I::add_info(InfoCtx {
            raw,
            _call: PhantomData,
        });
    }
}

/// A key handed to the module by the server as it evicts it: only its
/// metadata can be read (reading an encoded value would make the server
/// rewrite it in the middle of the deletion).
pub struct EvictedKey<'a> {
    raw: NonNull<raw::RedisModuleKey>,
    _call: PhantomData<&'a raw::RedisModuleKey>,
}

impl EvictedKey<'_> {
    /// A string key with an expiry and a value of at most `max_len` bytes.
    pub fn is_short_string_with_expiry(&self, max_len: usize) -> bool {
        // SAFETY: the key is open for reading for the callback's duration;
        // only metadata is read.
        unsafe {
            let (Some(key_type), Some(expire), Some(length)) = (
                raw::RedisModule_KeyType,
                raw::RedisModule_GetAbsExpire,
                raw::RedisModule_ValueLength,
            ) else {
                return false;
            };
            let key = self.raw.as_ptr();
            key_type(key) as isize == raw::REDISMODULE_KEYTYPE_STRING
                && expire(key) != raw::mstime_t::from(raw::REDISMODULE_NO_EXPIRE)
                && length(key) <= max_len
        }
    }
}

/// What the module does on server events.
pub trait ServerEvents {
    fn config_changed(ctx: ModuleCtx<'_>);
    fn key_evicted(key: EvictedKey<'_>);
}

type EventCallback =
    unsafe extern "C" fn(*mut raw::RedisModuleCtx, raw::RedisModuleEvent, u64, *mut c_void);

const CONFIG_EVENT: raw::RedisModuleEvent = raw::RedisModuleEvent {
    id: raw::REDISMODULE_EVENT_CONFIG,
    dataver: 1,
};
const KEY_EVENT: raw::RedisModuleEvent = raw::RedisModuleEvent {
    id: raw::REDISMODULE_EVENT_KEY,
    dataver: 1,
};

/// Whether the server reports evicted keys to modules (Redis 7.2+, Valkey).
pub fn evictions_reported() -> bool {
    // SAFETY: a pure query of the server's capabilities.
    unsafe {
        raw::RedisModule_IsSubEventSupported.is_some_and(|supported| {
            supported(KEY_EVENT, raw::REDISMODULE_SUBEVENT_KEY_EVICTED) != 0
        })
    }
}

unsafe extern "C" fn config_event<E: ServerEvents>(
    ctx: *mut raw::RedisModuleCtx,
    _e: raw::RedisModuleEvent,
    _sub: u64,
    _data: *mut c_void,
) {
    if let Some(ctx) = ModuleCtx::from_raw(ctx) {
        E::config_changed(ctx);
    }
}

unsafe extern "C" fn key_event<E: ServerEvents>(
    _ctx: *mut raw::RedisModuleCtx,
    _e: raw::RedisModuleEvent,
    subevent: u64,
    data: *mut c_void,
) {
    if subevent != raw::REDISMODULE_SUBEVENT_KEY_EVICTED || data.is_null() {
        return;
    }
    // SAFETY: for the key event, data is a RedisModuleKeyInfo whose key is
    // open for reading for the duration of the callback.
    let key = unsafe { (*data.cast::<raw::RedisModuleKeyInfo>()).key };
    if let Some(raw) = NonNull::new(key) {
        E::key_evicted(EvictedKey {
            raw,
            _call: PhantomData,
        });
    }
}
