//! The one error model of bulkhead.
//!
//! Every failure a primitive reports has an [`ErrorCode`] with a stable
//! string (`ERR_QUEUE_FULL`, …). Cores return [`Error`]; the glue converts it
//! once, at the boundary, into a JS `Error` whose `code` property is that
//! string. The JS layer builds the same codes in `lib/errors.js`, and a test
//! checks the two lists agree.

use std::fmt;

/// A stable, machine-readable reason for a failure.
///
/// The string form (see [`ErrorCode::as_str`]) is part of the public API:
/// users match on `err.code`, so a code is never renamed or reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
  /// A bounded queue or table is full; the call was rejected at once.
  QueueFull,
  /// A deadline passed before the work finished.
  Timeout,
  /// The caller's `AbortSignal` fired.
  Aborted,
  /// The primitive was closed or destroyed.
  Closed,
  /// An argument or option broke its rule; the message names it.
  InvalidArg,
  /// The worker thread running the task exited.
  WorkerExited,
  /// A single-flight call waited on its own key.
  RecursiveFlight,
  /// A bug in bulkhead (for example a caught panic).
  Internal,
  /// A value could not be structured-cloned to another thread (a worker's
  /// task result that holds a function, for example).
  DataClone,
  /// Redis (distributed mode) did not answer within its deadline, or could
  /// not be reached.
  Unavailable,
  /// A distributed permit's lease in Redis expired or was taken away while
  /// its task ran.
  LeaseLost,
}

impl ErrorCode {
  /// Every code, in declaration order.
  pub const ALL: [ErrorCode; 11] = [
    ErrorCode::QueueFull,
    ErrorCode::Timeout,
    ErrorCode::Aborted,
    ErrorCode::Closed,
    ErrorCode::InvalidArg,
    ErrorCode::WorkerExited,
    ErrorCode::RecursiveFlight,
    ErrorCode::Internal,
    ErrorCode::DataClone,
    ErrorCode::Unavailable,
    ErrorCode::LeaseLost,
  ];

  /// The stable string JS sees as `err.code`.
  pub const fn as_str(self) -> &'static str {
    match self {
      ErrorCode::QueueFull => "ERR_QUEUE_FULL",
      ErrorCode::Timeout => "ERR_TIMEOUT",
      ErrorCode::Aborted => "ERR_ABORTED",
      ErrorCode::Closed => "ERR_CLOSED",
      ErrorCode::InvalidArg => "ERR_INVALID_ARG",
      ErrorCode::WorkerExited => "ERR_WORKER_EXITED",
      ErrorCode::RecursiveFlight => "ERR_RECURSIVE_FLIGHT",
      ErrorCode::Internal => "ERR_INTERNAL",
      ErrorCode::DataClone => "ERR_DATA_CLONE",
      ErrorCode::Unavailable => "ERR_UNAVAILABLE",
      ErrorCode::LeaseLost => "ERR_LEASE_LOST",
    }
  }
}

impl AsRef<str> for ErrorCode {
  fn as_ref(&self) -> &str {
    self.as_str()
  }
}

impl fmt::Display for ErrorCode {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(self.as_str())
  }
}

/// A failure of a bulkhead core: a code and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
  /// What kind of failure this is.
  pub code: ErrorCode,
  /// What happened, naming the option or argument at fault.
  pub message: String,
}

impl Error {
  /// Builds an error with `code` and `message`.
  ///
  /// # Examples
  ///
  /// ```
  /// use bulkhead::error::{Error, ErrorCode};
  /// let err = Error::new(ErrorCode::QueueFull, "queue is full (maxPending: 10)");
  /// assert_eq!(err.to_string(), "ERR_QUEUE_FULL: queue is full (maxPending: 10)");
  /// ```
  pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
    Self {
      code,
      message: message.into(),
    }
  }

  /// An [`ErrorCode::InvalidArg`] error.
  pub fn invalid_arg(message: impl Into<String>) -> Self {
    Self::new(ErrorCode::InvalidArg, message)
  }

  /// An [`ErrorCode::Closed`] error.
  pub fn closed(message: impl Into<String>) -> Self {
    Self::new(ErrorCode::Closed, message)
  }
}

impl fmt::Display for Error {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{}: {}", self.code, self.message)
  }
}

impl std::error::Error for Error {}

/// Results of bulkhead's cores.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(feature = "napi")]
impl From<Error> for napi::Error<ErrorCode> {
  fn from(err: Error) -> Self {
    napi::Error::new(err.code, err.message)
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::collections::HashSet;

  #[test]
  fn codes_are_unique_and_prefixed() {
    let strings: HashSet<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(strings.len(), ErrorCode::ALL.len());
    assert!(strings.iter().all(|s| s.starts_with("ERR_")));
  }

  #[test]
  fn display_shows_code_then_message() {
    let err = Error::invalid_arg("options.max must be a positive integer");
    assert_eq!(
      err.to_string(),
      "ERR_INVALID_ARG: options.max must be a positive integer"
    );
    assert_eq!(Error::closed("closed").code, ErrorCode::Closed);
  }
}
