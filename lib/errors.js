'use strict'
// bulkhead's error model on the JS side. Errors made in Rust arrive as
// `Error`s whose `code` is one of these strings (src/error.rs); errors made in
// JS are `BulkheadError`s with the same codes, or (where a peer throws a
// TypeError/RangeError for bad input) that built-in class with the code
// `ERR_INVALID_ARG`. All of them are `instanceof BulkheadError` (see
// `Symbol.hasInstance` below). Users match on `err.code`.

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
  DATA_CLONE: 'ERR_DATA_CLONE',
  UNAVAILABLE: 'ERR_UNAVAILABLE',
  LEASE_LOST: 'ERR_LEASE_LOST',
})

const known = new Set(Object.values(codes))
const ownInstanceOf = Function.prototype[Symbol.hasInstance]

/** An error raised by a bulkhead primitive; `code` is one of `codes`. */
class BulkheadError extends Error {
  constructor(code, message, options) {
    if (!known.has(code)) throw new TypeError(`unknown bulkhead error code: ${code}`)
    super(message, options)
    this.name = 'BulkheadError'
    this.code = code
  }

  // `err instanceof BulkheadError` holds for every error a primitive
  // throws: the ones made here, the TypeErrors/RangeErrors that keep a
  // peer's class (they carry `code: 'ERR_INVALID_ARG'`), and the `Error`s
  // the Rust glue makes (napi-rs builds them; they carry a code from the
  // same list). Subclasses keep the ordinary prototype check.
  static [Symbol.hasInstance](value) {
    if (this !== BulkheadError) return ownInstanceOf.call(this, value)
    return value instanceof Error && known.has(value.code)
  }
}

/** Whether `err` carries one of bulkhead's codes (made in JS or in Rust). */
function isBulkheadError(err) {
  return err != null && typeof err === 'object' && known.has(err.code)
}

/** A TypeError (the class a peer throws for the same input) with `code: 'ERR_INVALID_ARG'`. */
function typeError(message, options) {
  const err = new TypeError(message, options)
  err.code = codes.INVALID_ARG
  return err
}

/** A RangeError with `code: 'ERR_INVALID_ARG'`. */
function rangeError(message, options) {
  const err = new RangeError(message, options)
  err.code = codes.INVALID_ARG
  return err
}

// ---- Unknown options --------------------------------------------------------
// A misspelt option (`timeot`) must not pass silently: bulkhead's own classes
// reject keys they do not know, naming the key and, when one is close, the
// option meant.

/** Levenshtein distance between `a` and `b`, giving up (returning `max + 1`) past `max`. */
function editDistance(a, b, max) {
  if (Math.abs(a.length - b.length) > max) return max + 1
  let previous = new Array(b.length + 1)
  let current = new Array(b.length + 1)
  for (let j = 0; j <= b.length; j++) previous[j] = j
  for (let i = 1; i <= a.length; i++) {
    current[0] = i
    let best = current[0]
    for (let j = 1; j <= b.length; j++) {
      const cost = a.charCodeAt(i - 1) === b.charCodeAt(j - 1) ? 0 : 1
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
      if (current[j] < best) best = current[j]
    }
    if (best > max) return max + 1
    ;[previous, current] = [current, previous]
  }
  return previous[b.length]
}

/** The known option closest to `key` (case ignored), if it is close enough to be a slip. */
function closest(key, names) {
  const lower = key.toLowerCase()
  const max = Math.max(1, Math.floor(key.length / 3))
  let best
  let bestDistance = max + 1
  for (const name of names) {
    const d = editDistance(lower, name.toLowerCase(), max)
    if (d < bestDistance) {
      best = name
      bestDistance = d
    }
  }
  return best
}

/**
 * Throws ERR_INVALID_ARG for the first own key of `options` that is not in
 * `names` (a Set). `where` names the call (`new Limiter()`).
 */
function checkOptions(options, names, where) {
  for (const key in options) {
    if (!names.has(key) && Object.hasOwn(options, key)) throw unknownOption(key, names, where)
  }
}

function unknownOption(key, names, where) {
  const meant = closest(key, names)
  const hint = meant !== undefined ? `: did you mean \`${meant}\`?` : ` (known options: ${[...names].join(', ')})`
  const err = new BulkheadError(codes.INVALID_ARG, `unknown option \`${key}\` in ${where}${hint}`)
  err.option = key
  if (meant !== undefined) err.suggestion = meant
  return err
}

module.exports = { codes, BulkheadError, isBulkheadError, typeError, rangeError, checkOptions, editDistance, closest }
