'use strict'
// bulkhead's error model on the JS side. Errors made in Rust arrive as
// `Error`s whose `code` is one of these strings (src/error.rs); errors made in
// JS are `BulkheadError`s with the same codes. Users match on `err.code`.

/** The stable `err.code` values, keyed by short name. */
const codes = Object.freeze({
  QUEUE_FULL: 'ERR_QUEUE_FULL',
  TIMEOUT: 'ERR_TIMEOUT',
  ABORTED: 'ERR_ABORTED',
  CLOSED: 'ERR_CLOSED',
  INVALID_ARG: 'ERR_INVALID_ARG',
  WORKER_EXITED: 'ERR_WORKER_EXITED',
  RECURSIVE_FLIGHT: 'ERR_RECURSIVE_FLIGHT',
  INTERNAL: 'ERR_INTERNAL',
  UNAVAILABLE: 'ERR_UNAVAILABLE',
  LEASE_LOST: 'ERR_LEASE_LOST',
})

const known = new Set(Object.values(codes))

/** An error raised by a bulkhead primitive; `code` is one of `codes`. */
class BulkheadError extends Error {
  constructor(code, message, options) {
    if (!known.has(code)) throw new TypeError(`unknown bulkhead error code: ${code}`)
    super(message, options)
    this.name = 'BulkheadError'
    this.code = code
  }
}

/** Whether `err` carries one of bulkhead's codes (made in JS or in Rust). */
function isBulkheadError(err) {
  return err != null && typeof err === 'object' && known.has(err.code)
}

module.exports = { codes, BulkheadError, isBulkheadError }
