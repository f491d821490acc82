//! Reading the server's own `INFO` fields (load time and configuration
//! events only: never on a command's path).

use std::ffi::CStr;

use redis_module::raw;

use crate::server_api::Ctx;

/// One `INFO` section, read once and freed when dropped.
pub struct ServerInfo {
    ctx: Ctx,
    data: *mut raw::RedisModuleServerInfoData,
}

impl ServerInfo {
    /// `None` when the server lacks the API or refuses the section.
    pub fn read(ctx: Ctx, section: &CStr) -> Option<ServerInfo> {
        // SAFETY: ctx is a live context of this module; the section name is
        // NUL-terminated. The data is freed in Drop.
        let data = unsafe { raw::RedisModule_GetServerInfo?(ctx, section.as_ptr()) };
        (!data.is_null()).then_some(ServerInfo { ctx, data })
    }

    /// A field as text (`None`: absent).
    pub fn text(&self, field: &CStr) -> Option<String> {
        // SAFETY: self.data is live; the returned C string belongs to it and
        // is copied before it can be freed.
        unsafe {
            let value = raw::RedisModule_ServerInfoGetFieldC?(self.data, field.as_ptr());
            (!value.is_null()).then(|| CStr::from_ptr(value).to_string_lossy().into_owned())
        }
    }

    /// A field as an unsigned integer (`None`: absent or not a number).
    pub fn unsigned(&self, field: &CStr) -> Option<u64> {
        let mut err = 0;
        // SAFETY: self.data is live; err is a valid out-pointer.
        let value = unsafe {
            raw::RedisModule_ServerInfoGetFieldUnsigned?(self.data, field.as_ptr(), &mut err)
        };
        (err == 0).then_some(value)
    }
}

impl Drop for ServerInfo {
    fn drop(&mut self) {
        // SAFETY: data came from GetServerInfo and is freed once.
        unsafe {
            if let Some(free) = raw::RedisModule_FreeServerInfo {
                free(self.ctx, self.data);
            }
        }
    }
}

/// True on Valkey (which names itself in `INFO server`; Redis does not).
pub fn is_valkey(ctx: Ctx) -> bool {
    ServerInfo::read(ctx, c"server")
        .and_then(|info| info.text(c"server_name"))
        .is_some_and(|name| name.eq_ignore_ascii_case("valkey"))
}

/// Writes a line to the server's log at `level` (`warning`, `notice`...).
pub fn log(ctx: Ctx, level: &CStr, message: &str) {
    let Ok(text) = std::ffi::CString::new(message.replace('\0', " ")) else {
        return;
    };
    // SAFETY: every pointer is a NUL-terminated string; "%s" takes one.
    unsafe {
        if let Some(log) = raw::RedisModule_Log {
            log(ctx, level.as_ptr(), c"%s".as_ptr(), text.as_ptr());
        }
    }
}
