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

const { limiterChannel, checkLabel, traceLimiterTask, timeRun } = require('./tracing.js')

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
  let label
  if (typeof concurrency === 'object') {
    ;({ concurrency, rejectOnClear = false, label } = concurrency)
  }
  validateConcurrency(concurrency)
  if (typeof rejectOnClear !== 'boolean') {
    throw new TypeError('Expected `rejectOnClear` to be a boolean')
  }
  label = checkLabel(label, undefined)

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
    // Named as p-limit names it, so a non-function throws p-limit's exact
    // TypeError ("function_ is not a function").
    const function_ = ring[i]
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
      result = args === undefined ? function_() : function_(...args)
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
    if (limiterChannel.hasSubscribers) return traced(fn, args)
    return enqueue(fn, args)
  }

  // A `bulkhead:limiter` trace around one task (docs/observability.md).
  // `waitTime` is filled in when the task starts, `runTime` when it settles.
  function traced(fn, args) {
    const context = { label, name: undefined, priority: 0, weight: 1, waitTime: undefined, runTime: undefined }
    const queued = performance.now()
    // Named as p-limit names it: a non-function still throws p-limit's TypeError.
    const function_ = fn
    const start = function (...a) {
      const started = performance.now()
      context.waitTime = started - queued
      if (typeof function_ !== 'function') return function_(...a)
      return timeRun(context, started, function_, undefined, a)
    }
    return limiterChannel.tracePromise(enqueue, context, undefined, start, args)
  }

  function enqueue(fn, args) {
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
    label: { get: () => label },
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
          // Array.from, as p-limit: array-likes are accepted, and a
          // non-iterable gets the same TypeError.
          Array.from(iterable, (item, index) => {
            const promise = limit(mapper, item, index)
            promises.push(promise)
            return promise
          })
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
  Object.defineProperty(limited, 'label', { get: () => limit.label })
  return limited
}

// ---------------------------------------------------------------------------
// Limiter: the bounded, cancellable limiter. Its state machine is the Rust
// core (src/limiter.rs, through src/js/limiter.rs): permits, weights,
// priorities, the bounded queue, deadlines, rate and stats. JS keeps each
// task's closure and promise in `#tasks[id]`, ids handed out by the core.
// Two crossings per task (submit, finish); starts, timeouts and aborts come
// back as ids.
// ---------------------------------------------------------------------------

const native = require('./native.js')
const { BulkheadError, codes, checkOptions } = require('./errors.js')
const { TaskSignal } = require('./task-signal.js')
const { track } = require('./instances.js')

// The two per-task calls, hand-registered Node-API functions (see
// src/js/limiter.rs); everything else goes through the NativeLimiter class.
const { limiterSubmit, limiterFinish } = native.limiterRawFunctions()

function invalid(message) {
  return new BulkheadError(codes.INVALID_ARG, message)
}

function checkLimit(value, option, { allowZero = false } = {}) {
  const ok = value === Number.POSITIVE_INFINITY || (Number.isInteger(value) && (allowZero ? value >= 0 : value >= 1))
  if (!ok) {
    throw invalid(`options.${option} must be an integer from ${allowZero ? 0 : 1} and up, or Infinity`)
  }
}

function checkTimeout(value, option) {
  if (!(typeof value === 'number' && value >= 0 && value <= 2 ** 31 - 1)) {
    throw invalid(`${option} must be a number of milliseconds from 0 to 2147483647`)
  }
}

function checkSignal(signal, option) {
  if (
    signal === null ||
    typeof signal !== 'object' ||
    typeof signal.aborted !== 'boolean' ||
    typeof signal.addEventListener !== 'function'
  ) {
    throw invalid(`${option} must be an AbortSignal`)
  }
}

function abortedError(signal) {
  return new BulkheadError(codes.ABORTED, 'the task was aborted', { cause: signal.reason })
}

let taskResolve
let taskReject
function taskExecutor(resolve, reject) {
  taskResolve = resolve
  taskReject = reject
}

/**
 * One task's JS side. The caller's promise is the derived promise of the
 * reaction that starts the task (no executor promise per task): while the
 * task waits, `close` (its gate's reject) rejects it; once it runs, a task
 * that can be cancelled (signal or timeout) hands the caller a promise whose
 * `resolve`/`reject` it keeps, so an abort or a timeout can settle it early.
 */
class Task {
  constructor(id, fn, signal, timeout) {
    this.id = id
    this.fn = fn
    this.signal = signal
    this.timeout = timeout
    this.open = undefined
    this.close = undefined
    this.resolve = undefined
    this.reject = undefined
    this.error = undefined
    this.watched = false
    this.controller = undefined
    this.done = false
    this.deadlined = false
    this.queueTimeout = undefined
  }
}

const IDLE = 0
const EMPTY = 1
const SIZE_LESS_THAN = 2

/** Default `maxPending`: tasks that may wait for a permit before `run()` rejects with ERR_QUEUE_FULL. */
const DEFAULT_MAX_PENDING = 1024
/** Default `queueTimeout` (ms): how long a task may wait for a permit before it rejects with ERR_TIMEOUT. */
const DEFAULT_QUEUE_TIMEOUT = 30_000

const LIMITER_OPTIONS = new Set(['concurrency', 'maxPending', 'timeout', 'queueTimeout', 'rate', 'name', 'label'])
const RUN_OPTIONS = new Set(['signal', 'timeout', 'queueTimeout', 'priority', 'weight'])
const MAP_OPTIONS = new Set(['concurrency', 'settle', 'signal'])

// Where an unnamed limiter was made ("file:line:col"), for its errors.
function creationSite(skip) {
  const holder = {}
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 1
  Error.captureStackTrace(holder, skip)
  Error.stackTraceLimit = limit
  const line = String(holder.stack).split('\n')[1]
  return line === undefined ? 'an unknown place' : line.trim().replace(/^at (.* \()?(.*?)\)?$/, '$2')
}

// A deadline reached: the caller's promise is rejected with this marker and
// `expire`, a rejection handler on the promise chain the caller awaits,
// turns it into the ERR_TIMEOUT error. Made inside a promise reaction on that
// chain, the error's stack reaches the caller's run() (V8 follows a native
// promise chain to the async function awaiting it); an error made in the
// timer callback would show only the timer. A handler costs one reaction,
// where an async wrapper costs a promise, a generator and three ticks per
// task (measured: 2.0 us more per queued task in a 100k burst, mostly GC).
class Expired {
  constructor(message) {
    this.message = message
  }
}

function expire(err) {
  if (err instanceof Expired) throw new BulkheadError(codes.TIMEOUT, err.message)
  throw err
}

class Limiter {
  #core
  #handle
  #tasks = []
  #active = 0
  #pending = 0
  #concurrency
  #timeout
  #rate
  #timer = undefined
  #timerAt = Number.POSITIVE_INFINITY
  #waiters = []
  #signals = new Map()
  #closed = false
  #queueTimeout
  // How errors name this limiter: `Limiter "name"`, or where it was made.
  #where
  #name
  #label
  // Live tasks with a deadline (a timeout, or a queue-wait deadline while
  // they wait): while there is one, the timer keeps the process alive, so
  // an awaited run() rejects at its deadline instead of the process exiting.
  #deadlined = 0
  #onTimer = () => this.#expire()
  // The reaction of every gate; the gate is opened with its task.
  #beginTask = (task) => this.#begin(task)

  /**
   * @param {{ concurrency?: number, maxPending?: number, timeout?: number, queueTimeout?: number,
   *   rate?: { limit: number, interval: number }, name?: string, label?: string }} [options]
   */
  constructor(options = {}) {
    if (options === null || typeof options !== 'object') throw invalid('options must be an object')
    // Distributed mode (lib/redis-limiter.js); Redis code loads only then.
    // RedisLimiter extends Limiter: `new Limiter({ redis })` is handed off to
    // it, and its own construction passes here and keeps no local state (it
    // overrides every member but map/mapIterable, which only call run()).
    if (options.redis !== undefined) {
      const { RedisLimiter } = require('./redis-limiter.js')
      if (!(this instanceof RedisLimiter)) return new RedisLimiter(options)
      track(this, 'limiter') // a RedisLimiter, weakly
      return
    }
    checkOptions(options, LIMITER_OPTIONS, 'new Limiter() options')
    const {
      concurrency,
      maxPending = DEFAULT_MAX_PENDING,
      timeout,
      queueTimeout = DEFAULT_QUEUE_TIMEOUT,
      rate,
      name,
      label,
    } = options
    if (name !== undefined && (typeof name !== 'string' || name === '')) {
      throw invalid('options.name must be a non-empty string')
    }
    this.#name = name
    this.#label = checkLabel(label, name)
    this.#where = name === undefined ? `the Limiter created at ${creationSite(new.target)}` : `Limiter "${name}"`
    let limit = 0
    let interval = 0
    if (rate !== undefined) {
      if (rate === null || typeof rate !== 'object') throw invalid('options.rate must be { limit, interval }')
      if (!(Number.isInteger(rate.limit) && rate.limit >= 1 && rate.limit <= 2 ** 31)) {
        throw invalid('options.rate.limit must be an integer from 1 and up')
      }
      if (!(typeof rate.interval === 'number' && rate.interval > 0 && Number.isFinite(rate.interval))) {
        throw invalid('options.rate.interval must be a positive finite number of milliseconds')
      }
      limit = rate.limit
      interval = rate.interval
      this.#rate = { limit, interval }
    }
    const effectiveConcurrency = concurrency ?? (rate !== undefined ? Number.POSITIVE_INFINITY : undefined)
    checkLimit(effectiveConcurrency, 'concurrency')
    checkLimit(maxPending, 'maxPending', { allowZero: true })
    if (timeout !== undefined && timeout !== Number.POSITIVE_INFINITY) checkTimeout(timeout, 'options.timeout')
    if (queueTimeout !== Number.POSITIVE_INFINITY) checkTimeout(queueTimeout, 'options.queueTimeout')
    this.#concurrency = effectiveConcurrency
    this.#timeout = timeout === Number.POSITIVE_INFINITY ? undefined : timeout
    this.#queueTimeout = queueTimeout === Number.POSITIVE_INFINITY ? undefined : queueTimeout
    if (name === undefined) {
      this.#core = new native.NativeLimiter(effectiveConcurrency, maxPending, limit, interval)
      this.#handle = this.#core.handle
    } else {
      // A process-wide limiter: other threads' releases start this one's
      // tasks through `wake`. It holds the limiter weakly, so a limiter
      // dropped without close() is still collected (and its native handle
      // then gives everything back).
      const self = new WeakRef(this)
      const wake = (events) => self.deref()?.#wake(events)
      this.#core = new native.NamedLimiter(name, effectiveConcurrency, maxPending, limit, interval, wake)
      this.#named = true
    }
    track(this, 'limiter') // the metrics registry (lib/instances.js), weakly
  }

  #named = false

  #submitTask(weight, priority, timeout, queueTimeout) {
    return this.#named
      ? this.#core.submit(weight, priority, timeout, queueTimeout)
      : limiterSubmit(this.#handle, weight, priority, timeout, queueTimeout)
  }

  /** The limiter's name (undefined when unnamed). */
  get name() {
    return this.#name
  }

  /** The label naming this limiter in metrics and traces: `options.label`, else `options.name`, else undefined. */
  get label() {
    return this.#label
  }

  #finishTask(id, ok) {
    return this.#named ? this.#core.finish(id, ok) : limiterFinish(this.#handle, id, ok)
  }

  // Named limiters: ids of this handle's tasks that a release in another
  // thread (or another handle) started.
  #wake(ids) {
    for (const id of ids) {
      if (this.#tasks[id] !== undefined) this.#start(id)
    }
  }

  /** Tasks running now. */
  get activeCount() {
    return this.#active
  }

  /** Tasks waiting for a permit. */
  get pendingCount() {
    return this.#pending
  }

  /** Permits; raising it starts waiting tasks at once. */
  get concurrency() {
    return this.#concurrency
  }

  set concurrency(value) {
    checkLimit(value, 'concurrency')
    const started = this.#core.setConcurrency(value)
    this.#concurrency = value
    if (started) this.#startTaken()
  }

  /** Whether `pause()` is in force. */
  get isPaused() {
    return this.#paused
  }

  #paused = false

  /**
   * Runs `fn(signal)` when permits are free; resolves or rejects as `fn` does.
   * `signal` is the task's own, aborted on the caller's abort and on timeout.
   */
  run(fn, options) {
    if (limiterChannel.hasSubscribers) return this.#traced(fn, options)
    return this.#run(fn, options)
  }

  // A `bulkhead:limiter` trace around one task (docs/observability.md).
  // `waitTime` is filled in when the task starts.
  #traced(fn, options) {
    return traceLimiterTask(this.#run, this, this.#label, this.#name, fn, options)
  }

  #run(fn, options) {
    if (typeof fn !== 'function') return Promise.reject(invalid('fn must be a function'))
    if (this.#closed) return Promise.reject(new BulkheadError(codes.CLOSED, 'the limiter is closed'))
    let signal
    let timeout = this.#timeout
    let queueTimeout = this.#queueTimeout
    let priority = 0
    let weight = 1
    if (options !== undefined) {
      try {
        if (options === null || typeof options !== 'object') throw invalid('options must be an object')
        checkOptions(options, RUN_OPTIONS, 'limiter.run() options')
        if (options.signal !== undefined) {
          checkSignal(options.signal, 'options.signal')
          signal = options.signal
        }
        if (options.timeout === Number.POSITIVE_INFINITY) {
          timeout = undefined
        } else if (options.timeout !== undefined) {
          checkTimeout(options.timeout, 'options.timeout')
          timeout = options.timeout
        }
        if (options.queueTimeout === Number.POSITIVE_INFINITY) {
          queueTimeout = undefined
        } else if (options.queueTimeout !== undefined) {
          checkTimeout(options.queueTimeout, 'options.queueTimeout')
          queueTimeout = options.queueTimeout
        }
        if (options.priority !== undefined) {
          priority = options.priority
          if (!(Number.isInteger(priority) && priority >= -(2 ** 31) && priority < 2 ** 31)) {
            throw invalid('options.priority must be a 32-bit integer')
          }
        }
        if (options.weight !== undefined) {
          weight = options.weight
          if (!(Number.isInteger(weight) && weight >= 1 && weight <= this.#concurrency)) {
            throw invalid(`options.weight must be an integer from 1 to the concurrency (${this.#concurrency})`)
          }
        }
      } catch (err) {
        return Promise.reject(err)
      }
    }
    if (signal !== undefined && signal.aborted) return Promise.reject(abortedError(signal))
    let code
    try {
      code = this.#submitTask(
        weight,
        priority,
        timeout === undefined ? -1 : timeout,
        queueTimeout === undefined ? -1 : queueTimeout,
      )
    } catch (err) {
      // Made here, in run(): its stack is the caller's. It names the limiter.
      return Promise.reject(new BulkheadError(err.code ?? codes.INTERNAL, `${this.#where}: ${err.message}`))
    }
    const id = Math.floor(code / 2)
    const task = new Task(id, fn, signal, timeout)
    this.#tasks[id] = task
    let promise
    if (signal !== undefined) this.#watch(task)
    // A promise reaction starts the task, so it runs in the caller's async
    // context (AsyncLocalStorage) however late that is: at once for a task
    // that got its permits, when its gate opens for one that waits.
    let wait
    if (code % 2 === 1) {
      this.#active++
      promise = RESOLVED.then(() => this.#begin(task))
    } else {
      if (++this.#pending === 1 && this.#named) this.#core.keepAlive(true)
      // A queued task ends early only by a rejection (abort, deadline,
      // clear): `expire` handles it on the same reaction.
      promise = new Promise(gateExecutor).then(this.#beginTask, expire)
      task.open = gateResolve
      task.close = gateReject
      gateResolve = gateReject = undefined
      if (queueTimeout !== undefined && (timeout === undefined || queueTimeout < timeout)) {
        wait = queueTimeout
        task.queueTimeout = queueTimeout
      }
    }
    if (timeout !== undefined || wait !== undefined) {
      task.deadlined = true
      if (this.#deadlined++ === 0 && this.#timer !== undefined) this.#timer.ref()
      const at = performance.now() + (wait ?? timeout)
      if (at < this.#timerAt) this.#arm()
      // A run deadline ends the task after it started: the caller gets the
      // error through a reaction on its own chain (see `expire`).
      if (timeout !== undefined) promise = promise.then(undefined, expire)
    } else if (this.#rate !== undefined && this.#pending > 0 && this.#timer === undefined) {
      this.#arm()
    }
    return promise
  }

  // The task no longer has a deadline (it ended, or it started and had only
  // a queue-wait deadline).
  #undeadline(task) {
    task.deadlined = false
    if (--this.#deadlined === 0 && this.#timer !== undefined) this.#timer.unref()
  }

  // Runs the task; what it returns (or throws) settles the caller's promise.
  #begin(task) {
    if (task.done) {
      // Aborted or timed out after it was given its permits, before it ran.
      const error = task.error
      task.error = undefined
      this.#finish(task.id, task, false)
      throw error
    }
    // The task's own signal, always passed. When the caller's signal alone
    // can abort the task (no timeout), fn gets that signal; otherwise a
    // TaskSignal, which makes its AbortController only if fn listens.
    let signal
    if (task.timeout === undefined && task.signal !== undefined) {
      signal = task.signal
    } else {
      task.controller = new TaskSignal()
      signal = task.controller
    }
    let result
    try {
      result = task.fn(signal)
      if (!isThenable(result)) {
        this.#settle(task, true)
        return result
      }
    } catch (error) {
      this.#settle(task, false)
      throw error
    }
    const settled = Promise.resolve(result)
    if (task.signal === undefined && task.timeout === undefined) {
      // Nothing can cancel it: the caller's promise follows fn's.
      settled.then(
        () => this.#settle(task, true),
        () => this.#settle(task, false),
      )
      return settled
    }
    const promise = new Promise(taskExecutor)
    task.resolve = taskResolve
    task.reject = taskReject
    taskResolve = taskReject = undefined
    settled.then(
      (value) => {
        if (!task.done) task.resolve(value)
        this.#settle(task, true)
      },
      (error) => {
        if (!task.done) task.reject(error)
        this.#settle(task, false)
      },
    )
    return promise
  }

  #settle(task, ok) {
    task.done = true
    this.#finish(task.id, task, ok)
  }

  #finish(id, task, ok) {
    this.#forget(task)
    this.#tasks[id] = undefined
    this.#active--
    const code = this.#finishTask(id, ok)
    if (code >= 0) {
      this.#start(Math.floor(code / 2))
      if (code % 2 === 1) this.#startTaken()
    }
    if (this.#rate !== undefined && this.#pending > 0 && this.#timer === undefined) this.#arm()
    if (this.#waiters.length > 0) this.#notify()
  }

  // One abort listener per signal, however many of this limiter's tasks
  // share it (a request's signal on all its tasks): adding and removing a
  // listener per task would cost O(listeners) each on a busy signal.
  #watch(task) {
    const signal = task.signal
    let entry = this.#signals.get(signal)
    if (entry === undefined) {
      entry = { tasks: new Set(), listener: undefined }
      entry.listener = () => this.#signalAborted(signal, entry)
      signal.addEventListener('abort', entry.listener)
      this.#signals.set(signal, entry)
    }
    entry.tasks.add(task)
    task.watched = true
  }

  #unwatch(task) {
    if (!task.watched) return
    task.watched = false
    const signal = task.signal
    const entry = this.#signals.get(signal)
    entry.tasks.delete(task)
    if (entry.tasks.size === 0) {
      signal.removeEventListener('abort', entry.listener)
      this.#signals.delete(signal)
    }
  }

  #signalAborted(signal, entry) {
    signal.removeEventListener('abort', entry.listener)
    this.#signals.delete(signal)
    for (const task of entry.tasks) {
      task.watched = false
      this.#abort(task.id, task)
    }
  }

  // Drops every reference the task holds, and its abort listener.
  #forget(task) {
    if (task.deadlined) this.#undeadline(task)
    this.#unwatch(task)
    task.fn = undefined
    task.signal = undefined
    task.resolve = undefined
    task.reject = undefined
    task.open = undefined
    task.close = undefined
    task.controller = undefined
  }

  #start(id) {
    const task = this.#tasks[id]
    if (--this.#pending === 0 && this.#named) this.#core.keepAlive(false)
    this.#active++
    if (task.deadlined && task.timeout === undefined) this.#undeadline(task)
    const open = task.open
    task.open = undefined
    open(task)
  }

  #startTaken() {
    for (const id of this.#core.takeStarted()) this.#start(id)
  }

  // The caller's signal fired.
  #abort(id, task) {
    if (task.done) return
    const error = abortedError(task.signal)
    const reason = task.signal.reason
    this.#cancel(id, task, false, error, reason)
  }

  #cancel(id, task, timedOut, error, reason) {
    const flags = this.#core.cancel(id, timedOut)
    this.#drop(id, task, (flags & 1) === 1, error, reason)
    if (flags & 2) this.#startTaken()
    if (this.#waiters.length > 0) this.#notify()
  }

  // Rejects the caller of a task the core took out (waiting: gone, its id
  // free) or marked (running: the caller stops waiting now, `fn` is told
  // through its signal, and the permits come back when `fn` settles).
  #drop(id, task, wasWaiting, error, reason) {
    task.done = true
    if (wasWaiting) {
      if (--this.#pending === 0 && this.#named) this.#core.keepAlive(false)
      this.#tasks[id] = undefined
      const close = task.close
      this.#forget(task)
      close(error)
      return
    }
    this.#unwatch(task)
    if (task.deadlined) this.#undeadline(task)
    const reject = task.reject
    task.resolve = task.reject = undefined
    if (reject !== undefined) reject(error)
    else task.error = error // it has not run yet: #begin throws it
    task.controller?.abort(reason)
  }

  #arm() {
    const wait = this.#core.nextWakeIn()
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer)
      this.#timer = undefined
      this.#timerAt = Number.POSITIVE_INFINITY
    }
    if (wait < 0) return
    // Timers fire up to a millisecond early; the extra millisecond makes the
    // deadline due when it fires.
    // Capped: setTimeout turns a delay beyond 2^31-1 ms into 1 ms (a huge
    // rate interval would then spin); a far wake-up is reached in steps.
    const delay = Math.min(2 ** 31 - 1, Math.ceil(wait) + 1)
    this.#timerAt = performance.now() + delay
    this.#timer = setTimeout(this.#onTimer, delay)
    // Held open only while a caller waits on a deadline; a rate wait or an
    // idle limiter holds nothing.
    if (this.#deadlined === 0) this.#timer.unref()
  }

  #expire() {
    this.#timer = undefined
    this.#timerAt = Number.POSITIVE_INFINITY
    const expired = this.#core.expire()
    for (const code of expired) {
      const id = Math.floor(code / 2)
      const task = this.#tasks[id]
      if (task === undefined || task.done) continue
      const waited = code % 2 === 1 && task.queueTimeout !== undefined
      const message = waited
        ? `${this.#where}: the task waited ${task.queueTimeout} ms for a permit (queueTimeout) and was dropped`
        : `${this.#where}: the task timed out after ${task.timeout} ms`
      const reason = task.controller === undefined ? undefined : new BulkheadError(codes.TIMEOUT, message)
      this.#drop(id, task, code % 2 === 1, new Expired(message), reason)
    }
    this.#startTaken()
    this.#arm()
    if (this.#waiters.length > 0) this.#notify()
  }

  /** Stops starting waiting tasks; running ones go on, new ones wait. */
  pause() {
    this.#paused = true
    this.#core.pause()
  }

  /** Starts waiting tasks again. */
  resume() {
    this.#paused = false
    if (this.#core.resume()) this.#startTaken()
    if (this.#rate !== undefined && this.#pending > 0 && this.#timer === undefined) this.#arm()
  }

  /** Rejects every waiting task with ERR_ABORTED. Running tasks go on. */
  clear() {
    const ids = this.#core.clear()
    for (const id of ids) {
      const task = this.#tasks[id]
      this.#tasks[id] = undefined
      if (--this.#pending === 0 && this.#named) this.#core.keepAlive(false)
      task.done = true
      const close = task.close
      this.#forget(task)
      close(new BulkheadError(codes.ABORTED, 'the task was cleared from the queue'))
    }
    if (this.#waiters.length > 0) this.#notify()
  }

  /**
   * Refuses new tasks (ERR_CLOSED) and clears the queue; running tasks
   * finish. Resolves when they have.
   */
  close() {
    this.#closed = true
    this.clear()
    const idle = this.onIdle()
    // A named limiter lets go of the shared one once its own tasks are done.
    return this.#named ? idle.then(() => this.#core.close()) : idle
  }

  /** Resolves when nothing runs and nothing waits. */
  onIdle() {
    return this.#when(IDLE, 0)
  }

  /** Resolves when nothing waits. */
  onEmpty() {
    return this.#when(EMPTY, 0)
  }

  /** Resolves when fewer than `limit` tasks wait. */
  onSizeLessThan(limit) {
    // `pendingCount < limit` never holds for limit <= 0: such a promise would never settle.
    if (typeof limit !== 'number' || !(limit > 0)) {
      return Promise.reject(invalid('limit must be a positive number'))
    }
    return this.#when(SIZE_LESS_THAN, limit)
  }

  #ready(kind, limit) {
    if (kind === IDLE) return this.#active === 0 && this.#pending === 0
    if (kind === EMPTY) return this.#pending === 0
    return this.#pending < limit
  }

  #when(kind, limit) {
    if (this.#ready(kind, limit)) return Promise.resolve()
    return new Promise((resolve) => this.#waiters.push({ kind, limit, resolve }))
  }

  #notify() {
    const waiters = this.#waiters
    let kept = 0
    for (let i = 0; i < waiters.length; i++) {
      const waiter = waiters[i]
      if (this.#ready(waiter.kind, waiter.limit)) waiter.resolve()
      else waiters[kept++] = waiter
    }
    waiters.length = kept
  }

  /** Counters and wait/run percentiles (milliseconds). */
  stats() {
    return this.#core.stats()
  }

  /** Task slots the native core holds (live or free): for leak tests. */
  get nativeSlots() {
    return this.#core.slots
  }

  /**
   * Maps `source` (array, iterable or async iterable) through `fn(item,
   * index, signal)` with at most `concurrency` in flight, pulling the
   * source lazily. Resolves to the results in input order; with `settle`,
   * to `{ status, value | reason }` outcomes.
   */
  async map(source, fn, options = {}) {
    const { iterator, concurrency, settle, signal, controller } = this.#prepareMap(source, fn, options)
    const results = []
    let inflight = 0
    let failure
    let failed = false
    let wake
    const woken = () => {
      const resolve = wake
      wake = undefined
      if (resolve !== undefined) resolve()
    }
    const onAbort = () => {
      if (!failed) {
        failed = true
        failure = abortedError(signal)
      }
      controller.abort(signal.reason)
      woken()
    }
    signal?.addEventListener('abort', onAbort)
    let index = 0
    try {
      if (signal?.aborted) onAbort()
      for (;;) {
        if (failed) break
        if (inflight >= concurrency) {
          await new Promise((resolve) => (wake = resolve))
          continue
        }
        const next = await iterator.next()
        if (next.done || failed) break
        const i = index++
        const item = next.value
        results.push(undefined)
        inflight++
        this.run((taskSignal) => fn(item, i, taskSignal), { signal: controller.signal }).then(
          (value) => {
            results[i] = settle ? { status: 'fulfilled', value } : value
            inflight--
            woken()
          },
          (reason) => {
            inflight--
            if (settle && !(reason?.code === codes.ABORTED && controller.signal.aborted)) {
              results[i] = { status: 'rejected', reason }
            } else if (!failed) {
              failed = true
              failure = reason
              controller.abort(reason)
            }
            woken()
          },
        )
      }
      if (failed) throw failure
      while (inflight > 0) {
        await new Promise((resolve) => (wake = resolve))
        if (failed) throw failure
      }
      return results
    } finally {
      signal?.removeEventListener('abort', onAbort)
      if (failed) await closeIterator(iterator)
    }
  }

  /**
   * Like `map`, as an async iterable of results in input order, with at
   * most `concurrency` items in flight or finished but unread.
   */
  async *mapIterable(source, fn, options = {}) {
    const { iterator, concurrency, settle, signal, controller } = this.#prepareMap(source, fn, options)
    const window = []
    let index = 0
    let exhausted = false
    try {
      for (;;) {
        while (!exhausted && window.length < concurrency) {
          if (signal?.aborted) throw abortedError(signal)
          const next = await iterator.next()
          if (next.done) {
            exhausted = true
            break
          }
          const i = index++
          const item = next.value
          const promise = this.run((taskSignal) => fn(item, i, taskSignal), { signal: controller.signal })
          promise.catch(() => {})
          window.push(promise)
        }
        if (window.length === 0) return
        const promise = window.shift()
        if (settle) {
          try {
            yield { status: 'fulfilled', value: await promise }
          } catch (reason) {
            if (signal?.aborted) throw abortedError(signal)
            yield { status: 'rejected', reason }
          }
        } else {
          yield await promise
        }
      }
    } finally {
      controller.abort(new BulkheadError(codes.ABORTED, 'mapIterable was closed'))
      if (!exhausted) await closeIterator(iterator)
    }
  }

  #prepareMap(source, fn, options) {
    if (typeof fn !== 'function') throw invalid('fn must be a function')
    if (options === null || typeof options !== 'object') throw invalid('options must be an object')
    checkOptions(options, MAP_OPTIONS, 'limiter.map() options')
    const { settle = false, signal } = options
    let { concurrency } = options
    if (concurrency === undefined) {
      concurrency = Number.isFinite(this.#concurrency) ? this.#concurrency : 16
    } else if (!(Number.isInteger(concurrency) && concurrency >= 1)) {
      throw invalid('options.concurrency must be an integer from 1 and up')
    }
    if (typeof settle !== 'boolean') throw invalid('options.settle must be a boolean')
    if (signal !== undefined) checkSignal(signal, 'options.signal')
    let iterator
    if (source != null && typeof source[Symbol.asyncIterator] === 'function') {
      iterator = source[Symbol.asyncIterator]()
    } else if (source != null && typeof source[Symbol.iterator] === 'function') {
      iterator = source[Symbol.iterator]()
    } else {
      throw invalid('source must be an iterable or an async iterable')
    }
    const controller = new AbortController()
    if (signal !== undefined) {
      const follow = () => controller.abort(signal.reason)
      if (signal.aborted) follow()
      else {
        signal.addEventListener('abort', follow, { once: true })
        controller.signal.addEventListener('abort', () => signal.removeEventListener('abort', follow), { once: true })
      }
    }
    return { iterator, concurrency, settle, signal, controller }
  }
}

async function closeIterator(iterator) {
  if (typeof iterator.return === 'function') {
    try {
      await iterator.return()
    } catch {
      // The source's own cleanup failed; the map already has its outcome.
    }
  }
}

module.exports = { pLimit, limitFunction, Limiter }
// `require('bulkhead/p-limit').default` is `pLimit`, for code compiled from
// `import pLimit from 'bulkhead/p-limit'` to CommonJS. Not enumerable, so the
// `bulkhead` entry point, which spreads this object, does not export it.
Object.defineProperty(module.exports, 'default', { value: pLimit, enumerable: false })
Object.defineProperty(module.exports, '__esModule', { value: true, enumerable: false })
