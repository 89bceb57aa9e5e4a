use napi_derive::napi;

use crate::error::ErrorCode;

/// Every `err.code` bulkhead can produce, as the Rust core spells them.
/// `lib/errors.js` keeps the same list for errors made in JS; a test checks
/// that both agree.
#[napi(catch_unwind)]
pub fn error_codes() -> Vec<&'static str> {
  ErrorCode::ALL.iter().map(|code| code.as_str()).collect()
}
