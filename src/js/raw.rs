//! Helpers shared by the hand-registered Node-API functions (boundary.rs,
//! lru_cache.rs, limiter.rs). Each caller's file carries the safety argument
//! for its own callbacks; these helpers only read what Node passed in.

use std::ffi::CStr;
use std::ptr;

use napi::sys;

/// Throws a `TypeError` with `message` and returns null, which Node turns
/// into the pending exception when the callback returns it.
///
/// # Safety
/// `env` must be the environment of the current callback, on its JS thread.
pub(crate) unsafe fn throw_type_error(env: sys::napi_env, message: &CStr) -> sys::napi_value {
  sys::napi_throw_type_error(env, ptr::null(), message.as_ptr());
  ptr::null_mut()
}

/// The first `N` arguments of the current call (Node fills missing ones with
/// `undefined`), or `None` if Node could not read them.
///
/// # Safety
/// `env` and `info` must be those of the current callback, on its JS thread.
pub(crate) unsafe fn args<const N: usize>(
  env: sys::napi_env,
  info: sys::napi_callback_info,
) -> Option<[sys::napi_value; N]> {
  let mut argc = N;
  let mut argv = [ptr::null_mut(); N];
  let status = sys::napi_get_cb_info(
    env,
    info,
    &mut argc,
    argv.as_mut_ptr(),
    ptr::null_mut(),
    ptr::null_mut(),
  );
  (status == sys::Status::napi_ok).then_some(argv)
}
