//! No panic crosses into Node (see ARCHITECTURE.md "Panics").
//!
//! A Rust panic unwinding out of an `extern "C"` function aborts the process,
//! so every way into this addon stops unwinding at the boundary and reports
//! the panic to JS as an `Error` whose `code` is `ERR_INTERNAL`:
//!
//! - `#[napi(catch_unwind)]` entry points: napi-derive catches the unwind and
//!   throws whatever exception is pending. The panic hook installed here has
//!   already thrown the `ERR_INTERNAL` error on the JS thread by then, so that
//!   is the error JS sees (napi-derive's own fallback would only say
//!   `GenericFailure`).
//! - hand-registered raw Node-API callbacks: [`raw`] wraps their bodies.
//! - background threads: [`supervise`] restarts a loop that panicked.

use std::cell::Cell;
use std::ffi::c_void;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::Once;
use std::time::Duration;

use napi::sys;

thread_local! {
  /// The Node-API environment whose JS runs on this thread, if any.
  static JS_ENV: Cell<sys::napi_env> = const { Cell::new(ptr::null_mut()) };
}

static HOOK: Once = Once::new();

/// Records `env` as this thread's JS environment (until Node tears it down)
/// and installs, once per process, the panic hook that throws the
/// `ERR_INTERNAL` error. Called from module init, once per environment.
pub(crate) fn install(env: sys::napi_env) {
  JS_ENV.with(|cell| cell.set(env));
  // SAFETY: `env` is the live environment Node passed to module init; the
  // hook only clears this thread's record of it.
  unsafe {
    sys::napi_add_env_cleanup_hook(env, Some(forget_env), env as *mut c_void);
  }
  HOOK.call_once(|| {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
      // The default hook prints the message and location to stderr: the log.
      previous(info);
      let env = JS_ENV
        .try_with(|cell| cell.get())
        .unwrap_or(ptr::null_mut());
      if !env.is_null() {
        let message = payload_message(info.payload());
        // SAFETY: a non-null record is this thread's live environment (it is
        // cleared by the cleanup hook before the environment goes away).
        unsafe { throw_internal(env, &message) };
      }
    }));
  });
}

unsafe extern "C" fn forget_env(arg: *mut c_void) {
  let _ = JS_ENV.try_with(|cell| {
    if cell.get() as *mut c_void == arg {
      cell.set(ptr::null_mut());
    }
  });
}

fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
  if let Some(s) = payload.downcast_ref::<&str>() {
    (*s).to_owned()
  } else if let Some(s) = payload.downcast_ref::<String>() {
    s.clone()
  } else {
    "panic with a non-string payload".to_owned()
  }
}

/// Throws `Error('internal error in bulkhead: …')` with `code: 'ERR_INTERNAL'`
/// unless an exception is already pending (the first one wins).
///
/// # Safety
/// `env` must be the live environment of the calling thread.
unsafe fn throw_internal(env: sys::napi_env, message: &str) {
  let mut pending = false;
  if sys::napi_is_exception_pending(env, &mut pending) != sys::Status::napi_ok || pending {
    return;
  }
  let text = format!("internal error in bulkhead (a bug, please report it): {message}");
  let code = "ERR_INTERNAL";
  let (mut js_code, mut js_text, mut error) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
  if sys::napi_create_string_utf8(env, code.as_ptr().cast(), code.len() as isize, &mut js_code)
    == sys::Status::napi_ok
    && sys::napi_create_string_utf8(env, text.as_ptr().cast(), text.len() as isize, &mut js_text)
      == sys::Status::napi_ok
    && sys::napi_create_error(env, js_code, js_text, &mut error) == sys::Status::napi_ok
  {
    sys::napi_throw(env, error);
  }
}

/// Runs the body of a raw Node-API callback; a panic becomes a thrown
/// `ERR_INTERNAL` error and a null (`undefined`) return.
///
/// # Safety
/// `env` must be the environment Node passed to the callback.
#[inline(always)]
pub(crate) unsafe fn raw(
  env: sys::napi_env,
  body: impl FnOnce() -> sys::napi_value,
) -> sys::napi_value {
  match panic::catch_unwind(AssertUnwindSafe(body)) {
    Ok(value) => value,
    Err(payload) => {
      // Usually the panic hook has thrown already; this covers a thread whose
      // environment was not recorded.
      throw_internal(env, &payload_message(payload.as_ref()));
      ptr::null_mut()
    }
  }
}

/// Runs the loop of a background thread, restarting it after a panic (the
/// panic hook has logged it) so that, for example, deadlines keep firing.
/// A loop that returns normally ends the thread.
pub(crate) fn supervise(mut body: impl FnMut()) {
  while panic::catch_unwind(AssertUnwindSafe(&mut body)).is_err() {
    // Back off so a loop that panics at once cannot spin a core.
    std::thread::sleep(Duration::from_millis(10));
  }
}

/// Runs the body of a Node-API callback that returns nothing (a finalizer or
/// a thread-safe function's `call_js`); a panic is dropped here after the hook
/// has logged it (and, on a JS thread, thrown it as an uncaught
/// `ERR_INTERNAL` error).
#[inline(always)]
pub(crate) fn quiet(body: impl FnOnce()) {
  let _ = panic::catch_unwind(AssertUnwindSafe(body));
}
