'use strict'
// bulkhead/p-limit: `pLimit` and `limitFunction`, a drop-in for p-limit 7.3,
// and `Limiter`, the bounded, cancellable limiter (lib/limiter.js).
//
// The local `pLimit` keeps its counting in JS. Its state machine is the FIFO,
// weight-1, one-priority case of the Rust core in src/limiter.rs (permits,
// pending queue, start-on-release); a crossing per task would cost more than
// the whole task does here, so the drop-in does not make one (numbers in
// README.md, reasons in ARCHITECTURE.md). Per task it keeps:
//   - a "gate" promise whose reaction runs the task. The reaction is created
//     by `limit()` itself, so `fn` runs in the caller's async context
//     (AsyncLocalStorage) however late it starts; the caller's promise *is*
//     that reaction's derived promise, so no second promise is made;
//   - three or four slots in a ring buffer: fn, args, the gate's resolve
//     (and its reject, only with `rejectOnClear`).
// The ring holds started-but-not-yet-run tasks in [head, started) and
// pending ones in [started, tail). Reactions run in the order the gates are
// resolved, which is the order tasks start, so the shared `runNext`
// reaction always runs the task at `head`.

const CONCURRENCY_MESSAGE = 'Expected `concurrency` to be a number from 1 and up'
const RESOLVED = Promise.resolve()
const MIN_CAPACITY = 16

function validateConcurrency(concurrency) {
  if (!((Number.isInteger(concurrency) || concurrency === Number.POSITIVE_INFINITY) && concurrency > 0)) {
    throw new TypeError(CONCURRENCY_MESSAGE)
  }
}

// One executor for every gate: no closure per task.
let gateResolve
let gateReject
function gateExecutor(resolve, reject) {
  gateResolve = resolve
  gateReject = reject
}

function isThenable(value) {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof value.then === 'function'
}

/**
 * Run promise-returning and async functions with limited concurrency
 * (p-limit 7 semantics). Returns the `limit` function.
 */
function pLimit(concurrency) {
  let rejectOnClear = false
  if (typeof concurrency === 'object') {
    ;({ concurrency, rejectOnClear = false } = concurrency)
  }
  validateConcurrency(concurrency)
  if (typeof rejectOnClear !== 'boolean') {
    throw new TypeError('Expected `rejectOnClear` to be a boolean')
  }

  // Slots per task: fn, args, resolve[, reject].
  const stride = rejectOnClear ? 4 : 3
  let capacity = MIN_CAPACITY // in tasks, a power of two
  let mask = capacity - 1
  let ring = new Array(capacity * stride)
  let head = 0
  let started = 0
  let tail = 0
  let active = 0

  function resize(newCapacity) {
    const next = new Array(newCapacity * stride)
    const count = tail - head
    for (let k = 0; k < count; k++) {
      const from = ((head + k) & mask) * stride
      const to = k * stride
      for (let s = 0; s < stride; s++) next[to + s] = ring[from + s]
    }
    started -= head
    tail -= head
    head = 0
    ring = next
    capacity = newCapacity
    mask = capacity - 1
  }

  const release = () => {
    active--
    startQueued()
  }
  const settled = () => {
    release()
  }

  // The reaction of every gate: runs the task at `head`.
  const runNext = () => {
    const i = (head & mask) * stride
    const fn = ring[i]
    const args = ring[i + 1]
    ring[i] = undefined
    ring[i + 1] = undefined
    head++
    if (head === tail && capacity > MIN_CAPACITY) {
      // Drained: give the memory of a burst back.
      ring = new Array(MIN_CAPACITY * stride)
      capacity = MIN_CAPACITY
      mask = capacity - 1
      head = started = tail = 0
    }
    let result
    try {
      result = args === undefined ? fn() : fn(...args)
      if (result instanceof Promise) {
        result.then(settled, settled)
        return result
      }
      if (isThenable(result)) {
        result = Promise.resolve(result)
        result.then(settled, settled)
        return result
      }
    } catch (error) {
      release()
      throw error
    }
    release()
    return result
  }

  function startQueued() {
    while (active < concurrency && started < tail) {
      active++
      const i = (started & mask) * stride
      const resolve = ring[i + 2]
      ring[i + 2] = undefined
      if (stride === 4) ring[i + 3] = undefined
      started++
      resolve()
    }
  }

  function limit(fn) {
    let args
    const n = arguments.length
    if (n > 1) {
      args = new Array(n - 1)
      for (let k = 1; k < n; k++) args[k - 1] = arguments[k]
    }
    if (tail - head === capacity) resize(capacity * 2)
    const i = (tail & mask) * stride
    ring[i] = fn
    ring[i + 1] = args
    tail++
    if (active < concurrency && started === tail - 1) {
      // Nothing waits: start now; `fn` runs one microtask later.
      active++
      started++
      return RESOLVED.then(runNext)
    }
    const gate = new Promise(gateExecutor)
    ring[i + 2] = gateResolve
    if (stride === 4) ring[i + 3] = gateReject
    gateResolve = gateReject = undefined
    const promise = gate.then(runNext)
    if (active < concurrency) startQueued()
    return promise
  }

  function clearQueue() {
    if (started === tail) return
    let reason
    if (rejectOnClear) reason = AbortSignal.abort().reason
    for (let p = started; p < tail; p++) {
      const i = (p & mask) * stride
      const reject = rejectOnClear ? ring[i + 3] : undefined
      for (let s = 0; s < stride; s++) ring[i + s] = undefined
      if (reject !== undefined) reject(reason)
    }
    tail = started
    if (head === tail && capacity > MIN_CAPACITY) resize(MIN_CAPACITY)
  }

  Object.defineProperties(limit, {
    activeCount: { get: () => active },
    pendingCount: { get: () => tail - started },
    clearQueue: { value: clearQueue },
    concurrency: {
      get: () => concurrency,
      set(newConcurrency) {
        validateConcurrency(newConcurrency)
        concurrency = newConcurrency
        queueMicrotask(startQueued)
      },
    },
    map: {
      async value(iterable, mapper) {
        const promises = []
        try {
          for (const item of iterable) promises.push(limit(mapper, item, promises.length))
        } catch (error) {
          // The iterable threw: the tasks already queued still run; observe
          // their promises so none is reported as unhandled.
          for (const promise of promises) promise.catch(() => {})
          throw error
        }
        return Promise.all(promises)
      },
    },
  })
  return limit
}

/**
 * `fn` wrapped so that at most `options.concurrency` calls run at once
 * (p-limit 7's `limitFunction`).
 */
function limitFunction(fn, options) {
  const limit = pLimit(options)
  const limited = (...args) => limit(fn, ...args)
  Object.defineProperty(limited, 'clearQueue', { value: limit.clearQueue })
  return limited
}

module.exports = { pLimit, limitFunction }
// `require('bulkhead/p-limit').default` is `pLimit`, for code compiled from
// `import pLimit from 'bulkhead/p-limit'` to CommonJS. Not enumerable, so the
// `bulkhead` entry point, which spreads this object, does not export it.
Object.defineProperty(module.exports, 'default', { value: pLimit, enumerable: false })
Object.defineProperty(module.exports, '__esModule', { value: true, enumerable: false })
