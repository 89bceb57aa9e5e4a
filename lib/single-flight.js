'use strict'
// SingleFlight: per-key deduplication of concurrent async calls.
//
// Where things live (ARCHITECTURE.md, "SingleFlight", has the measurements):
// - The flights of a local group are JS objects in a JS Map, because joining
//   a flight must not cross into Rust (a crossing costs more than the whole
//   Map.get). The state machine they follow is the one src/single_flight.rs
//   (FlightTable) defines and unit-tests.
// - Deadlines of a local group live in Rust (FlightDeadlines, an ordered
//   map). A flight with a timeout writes (deadline, slot, id) into a
//   Float64Array batch; the batch crosses only when it is full or when the
//   group's single timer fires, in the same call that returns what expired.
//   A flight that settles while still in the batch is taken out in JS and
//   never reaches Rust; one that settles later queues a removal. No timer
//   per flight; the timer is unref'd whenever no live flight has a deadline.
// - A named group (options.name) keeps its table in Rust, shared by every
//   thread (NamedFlightGroup); see "Named groups" below.

const { AsyncLocalStorage, AsyncResource } = require('node:async_hooks')
const { performance } = require('node:perf_hooks')
const v8 = require('node:v8')
const native = require('./native.js')
const { BulkheadError, codes, checkOptions, typeError } = require('./errors.js')
const { TaskSignal } = require('./task-signal.js')
const { track } = require('./instances.js')
const { singleFlightChannel, checkLabel } = require('./tracing.js')

const INTERNALS = Symbol.for('bulkhead.singleFlight.internals')
const BATCH = 1024 // deadline triples per crossing
const OUT = 1024 // expired (slot, id) pairs per crossing

// The flight whose fn is running synchronously right now; its `parent` is the
// flight whose fn started it, and so on (a chain through other keys). Enough
// to catch a flight that calls do() for its own key before its first await,
// at no cost.
let running = null
// Created on first use by a group with detectRecursion: 'async' (which also
// catches a call for the flight's own key after an await). Where
// AsyncLocalStorage runs on promise hooks (Node 22 unless started with
// --experimental-async-context-frame), an enabled one slows every await in
// the process (measured: ~90 -> ~220-290 ns per await); where it runs on
// AsyncContextFrame (Node 24 and later by default) it costs nothing
// measurable (~30-80 ns per await either way). So 'async' is the default
// only there; groups that do not use it never create one.
let asyncContext = null
// The last Flight that ended, and one flight signal: kept only so that their
// hidden classes stay alive. Optimized code embeds the hidden
// classes it saw as weak references; when a full GC finds no Flight alive
// (any idle moment between bursts), the class dies and V8 throws away every
// optimized function that embedded it ("embedded weak objects cleared",
// --trace-deopt: ~10 deopts per full GC), then relearns a new class. That
// was the cause of the benchmark's "full GC before every run" row (1.46-1.62x
// a Map dedupe, whose promises and timers have classes that never die).
// An ended flight holds nothing of a caller's (it has dropped its promise,
// resolvers, records and controller), only its key. The signal is one that
// is never used (a used one could hold fn's abort listeners), made next to
// the first flight's: one made at module load did not keep the class the
// flights' signals get (measured: 48 deopts left over 40 GCs, 0 this way).
// A fresh Flight would not do either: its `deadline` goes from a small
// integer to a double, which gives it a new class; the last ended one has it.
const keepClasses = { flight: null, signal: null, scope: null }

// detectRecursion: 'async' on AsyncContextFrame (see #start).
const RESOURCE_TYPE = 'bulkhead.SingleFlight'
function enterFlight(flight, fn, signal) {
  asyncContext.enterWith(flight)
  return fn(signal)
}

/** Whether AsyncLocalStorage runs on AsyncContextFrame in this process (no promise hooks). */
function contextFrameEnabled() {
  const major = Number(process.versions.node.split('.')[0])
  const flags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)]
  if (major >= 24) return !flags.includes('--no-async-context-frame')
  return flags.includes('--experimental-async-context-frame')
}

/** Default `detectRecursion`: 'async' where an enabled AsyncLocalStorage is free, else 'sync'. */
const CONTEXT_FRAME = contextFrameEnabled()
const DEFAULT_DETECT_RECURSION = CONTEXT_FRAME ? 'async' : 'sync'
/** Default flight `timeout` (ms): a flight that has not settled by then rejects its callers with ERR_TIMEOUT. */
const DEFAULT_TIMEOUT = 30_000
/** Default `maxKeys`: flights in progress at once; one more new key rejects with ERR_QUEUE_FULL. */
const DEFAULT_MAX_KEYS = 10_000

const GROUP_OPTIONS = new Set(['timeout', 'maxKeys', 'name', 'detectRecursion', 'label'])
const CALL_OPTIONS = new Set(['signal', 'timeout'])

function invalid(message) {
  return new BulkheadError(codes.INVALID_ARG, message)
}

function checkTimeout(value, name) {
  if (value === Infinity) return Infinity
  if (typeof value !== 'number' || !(value > 0)) {
    throw invalid(`${name} must be a positive number of milliseconds or Infinity`)
  }
  return value
}

// setTimeout turns a delay beyond 2^31-1 ms into 1 ms (TimeoutOverflowWarning):
// a far deadline (a huge `timeout`) is waited for in steps of at most that.
const MAX_DELAY = 2 ** 31 - 1
function timerDelay(at) {
  return Math.min(MAX_DELAY, Math.max(1, Math.ceil(at - performance.now())))
}

function checkKey(key) {
  const type = typeof key
  if (type !== 'string' && type !== 'number') {
    throw typeError(`key must be a string or a number, got ${key === null ? 'null' : type}`)
  }
}

class Flight {
  constructor(key, id) {
    this.key = key
    this.id = id
    this.slot = -1
    this.timeout = 0
    this.deadline = 0
    // Where the deadline is: -2 nowhere, -1 in Rust, >= 0 its index in the batch.
    this.queued = -2
    this.mapped = true
    this.done = false
    this.calls = 1
    // Callers that cannot leave (no signal) share `promise`; callers with a
    // signal each have a record in `records`.
    this.steady = 0
    this.promise = null
    this.resolve = null
    this.reject = null
    this.records = null
    this.controller = null
    // The flight whose fn started this one (recursion detection), or null.
    this.parent = null
    // Named groups only: whether this thread leads the flight, and whether
    // the leader already reported the outcome to the other threads.
    this.leader = true
    this.reported = false
  }

  shared() {
    if (this.promise === null) {
      this.promise = new Promise((resolve, reject) => {
        this.resolve = resolve
        this.reject = reject
      })
    }
    return this.promise
  }
}

class SingleFlight {
  #flights = new Map()
  #timeout
  #maxKeys
  #async
  #live = 0
  #nextId = 1
  #stats = { flights: 0, calls: 0, shared: 0, timeouts: 0, aborts: 0, errors: 0 }
  // Deadlines (only allocated once a flight has a timeout).
  #deadlines = null
  #batch = null
  #batchCount = 0
  #out = null
  #slots = null
  #freeSlots = null
  #timer = null
  #timerAt = Infinity
  #pending = 0 // live flights that have a deadline
  #handedOver = false // whether a batch reached Rust since the queue was last cleared
  #onTimer = () => this.#tick()
  // Named groups only (see #callNamed).
  #named = null
  #byId = null
  #localJoins = 0
  #namedTimer = null
  #namedTimerAt = Infinity
  #keepAlive = null
  #name
  #label

  /**
   * @param {{ timeout?: number, maxKeys?: number, name?: string, label?: string,
   *   detectRecursion?: 'sync' | 'async' }} [options]
   */
  constructor(options = {}) {
    if (options === null || typeof options !== 'object') throw invalid('options must be an object')
    // Distributed mode (lib/redis-single-flight.js); Redis code loads only then.
    // RedisSingleFlight extends SingleFlight: `new SingleFlight({ redis })` is
    // handed off to it, and its own construction passes here and keeps no
    // local state (it overrides every member but wrap, which calls do()).
    if (options.redis !== undefined) {
      const { RedisSingleFlight } = require('./redis-single-flight.js')
      if (!(this instanceof RedisSingleFlight)) return new RedisSingleFlight(options)
      track(this, 'single_flight') // a RedisSingleFlight, weakly
      return
    }
    checkOptions(options, GROUP_OPTIONS, 'new SingleFlight() options')
    const {
      timeout = DEFAULT_TIMEOUT,
      maxKeys = DEFAULT_MAX_KEYS,
      name,
      detectRecursion = DEFAULT_DETECT_RECURSION,
      label,
    } = options
    this.#timeout = checkTimeout(timeout, 'options.timeout')
    if (maxKeys === Infinity) {
      this.#maxKeys = Infinity
    } else if (!Number.isSafeInteger(maxKeys) || maxKeys < 1) {
      throw invalid('options.maxKeys must be a positive integer or Infinity')
    } else {
      this.#maxKeys = maxKeys
    }
    if (detectRecursion !== 'sync' && detectRecursion !== 'async') {
      throw invalid("options.detectRecursion must be 'sync' or 'async'")
    }
    this.#async = detectRecursion === 'async'
    if (this.#async && asyncContext === null) asyncContext = new AsyncLocalStorage()
    if (name !== undefined) {
      if (typeof name !== 'string' || name.length === 0) throw invalid('options.name must be a non-empty string')
    }
    this.#name = name
    this.#label = checkLabel(label, name)
    if (name !== undefined) {
      // The wake-up holds the group weakly, so an unreferenced group can be
      // collected (its finalizer then leaves the shared group).
      const self = new WeakRef(this)
      this.#named = new native.NamedFlightGroup(
        name,
        this.#timeout === Infinity ? undefined : this.#timeout,
        this.#maxKeys === Infinity ? undefined : this.#maxKeys,
        () => self.deref()?.#onWake(),
      )
      this.#byId = new Map()
    }
    track(this, 'single_flight') // the metrics registry (lib/instances.js), weakly
  }

  /** Runs `fn` once for every caller of `key` that arrives while it is in progress. */
  do(key, fn, options) {
    if (singleFlightChannel.hasSubscribers) return this.#traced(key, fn, options, false)
    return this.#call(key, fn, options, false, undefined)
  }

  /** Like `do`, resolving to `{ value, shared }`: whether the result went to more than one call. */
  doShared(key, fn, options) {
    if (singleFlightChannel.hasSubscribers) return this.#traced(key, fn, options, true)
    return this.#call(key, fn, options, true, undefined)
  }

  /** The group's name (undefined when it is not process-wide). */
  get name() {
    return this.#name
  }

  /** The label naming this group in metrics and traces: `options.label`, else `options.name`, else undefined. */
  get label() {
    return this.#label
  }

  // A `bulkhead:single-flight` trace around one call (docs/observability.md).
  // #call fills in `joined` and `leader`.
  #traced(key, fn, options, withShared) {
    const context = { label: this.#label, name: this.#name, key, joined: false, leader: false }
    return singleFlightChannel.tracePromise(this.#call, context, this, key, fn, options, withShared, context)
  }

  /** The next call for `key` starts a new flight; callers of the old one still get its result. */
  forget(key) {
    if (this.#named !== null) {
      checkKey(key)
      const local = this.#flights.get(key)
      if (local !== undefined) {
        local.mapped = false
        this.#flights.delete(key)
      }
      return this.#named.forget(key)
    }
    const flight = this.#flights.get(key)
    if (flight === undefined) return false
    flight.mapped = false
    this.#flights.delete(key)
    return true
  }

  /** Whether a flight for `key` is in progress. */
  inFlight(key) {
    if (this.#named !== null) {
      checkKey(key)
      return this.#named.inFlight(key)
    }
    return this.#flights.has(key)
  }

  /** How many keys have a flight in progress. */
  get size() {
    if (this.#named !== null) return this.#named.size
    return this.#flights.size
  }

  /** Counters since the group was made. */
  stats() {
    if (this.#named !== null) {
      // The group's counters across threads; calls that joined a flight
      // inside this thread (without crossing) are added by this handle.
      const s = this.#named.stats()
      return { ...s, calls: s.calls + this.#localJoins, shared: s.shared + this.#localJoins }
    }
    return { ...this.#stats }
  }

  /** A function that deduplicates concurrent calls of `fn` by `keyFn(...args)` (default: the first argument). */
  wrap(fn, keyFn) {
    // The returned function uses `this` later: a wrong receiver fails now, not at the first call.
    if (typeof this !== 'object' || this === null || !(#flights in this)) {
      throw typeError('wrap() must be called on a SingleFlight')
    }
    if (typeof fn !== 'function') throw typeError('fn must be a function')
    if (keyFn !== undefined && typeof keyFn !== 'function') throw typeError('keyFn must be a function')
    const group = this
    return function deduplicated(...args) {
      const key = keyFn === undefined ? args[0] : keyFn.apply(this, args)
      return group.do(key, () => fn.apply(this, args))
    }
  }

  #call(key, fn, options, withShared, trace) {
    checkKey(key)
    if (typeof fn !== 'function') throw typeError('fn must be a function')
    let signal
    let timeout = this.#timeout
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') throw invalid('options must be an object')
      checkOptions(options, CALL_OPTIONS, 'group.do() options')
      signal = options.signal
      if (signal != null && !(signal instanceof AbortSignal)) {
        throw invalid('options.signal must be an AbortSignal')
      }
      if (options.timeout !== undefined) timeout = checkTimeout(options.timeout, 'options.timeout')
    }
    if (signal != null && signal.aborted) {
      this.#stats.aborts++
      return Promise.reject(aborted(signal))
    }

    let flight = this.#flights.get(key)
    if (flight === undefined && this.#named !== null) return this.#callNamed(key, fn, signal, timeout, withShared, trace)
    if (flight !== undefined) {
      if (this.#inside(flight)) {
        return Promise.reject(
          new BulkheadError(
            codes.RECURSIVE_FLIGHT,
            `the flight for key ${String(key)} called do() for its own key; it would wait on itself`,
          ),
        )
      }
      flight.calls++
      this.#stats.calls++
      this.#stats.shared++
      if (this.#named !== null) this.#localJoins++
      if (trace !== undefined) trace.joined = true
      return this.#wait(flight, signal, withShared)
    }

    if (this.#live >= this.#maxKeys) {
      return Promise.reject(
        new BulkheadError(
          codes.QUEUE_FULL,
          `${this.#live} flights are in progress (maxKeys: ${this.#maxKeys})`,
        ),
      )
    }
    flight = new Flight(key, this.#nextId++)
    this.#flights.set(key, flight)
    this.#live++
    this.#stats.flights++
    this.#stats.calls++
    // The caller waits before the deadline is queued: queueing may drain a
    // full batch, and under load that drain can already find this flight due.
    const promise = this.#wait(flight, signal, withShared)
    if (trace !== undefined) trace.leader = true
    if (timeout !== Infinity) this.#schedule(flight, performance.now() + timeout, timeout)
    if (!flight.done) this.#start(flight, fn)
    return promise
  }

  // For leak tests (see INTERNALS below): how many deadlines the group holds.
  #deadlineCounts() {
    return {
      // Live flights of this handle, and those with a deadline.
      live: this.#live,
      pending: this.#pending,
      // Local group: entries in the Rust queue, triples waiting in the JS
      // batch (adds and removals), and the slot array's length.
      queued: this.#deadlines === null ? 0 : this.#deadlines.length,
      batched: this.#batchCount,
      slots: this.#slots === null ? 0 : this.#slots.length,
      // Named group: the shared Rust table's deadlines (every thread's).
      shared: this.#named === null ? 0 : this.#named.queuedDeadlines,
    }
  }

  static {
    // Not a public API: tests read a group's deadline bookkeeping through it.
    Object.defineProperty(SingleFlight, INTERNALS, {
      value: Object.freeze({ deadlineCounts: (group) => group.#deadlineCounts() }),
    })
  }

  #inside(flight) {
    let f = running
    if (f === null && this.#async) f = asyncContext.getStore() ?? null
    for (; f !== null; f = f.parent) if (f === flight) return true
    return false
  }

  #wait(flight, signal, withShared) {
    if (signal == null) {
      flight.steady++
      const promise = flight.shared()
      return withShared ? promise.then((value) => ({ value, shared: flight.calls > 1 })) : promise
    }
    const record = { group: this, flight, signal, waiting: null, index: 0, withShared, resolve: null, reject: null }
    const promise = new Promise((resolve, reject) => {
      record.resolve = resolve
      record.reject = reject
    })
    // One listener per signal, however many calls wait with it: Node's
    // EventTarget scans its listeners on every add, so a listener per call
    // on one long-lived signal costs O(calls) each (measured in the bench).
    let waiting = watched.get(signal)
    if (waiting === undefined) {
      waiting = new Set()
      watched.set(signal, waiting)
      signal.addEventListener('abort', SingleFlight.#onAbort, { once: true })
    }
    waiting.add(record)
    record.waiting = waiting
    if (flight.records === null) flight.records = []
    record.index = flight.records.length
    flight.records.push(record)
    return promise
  }

  #start(flight, fn) {
    const outer = running
    flight.parent = outer === null && this.#async ? (asyncContext.getStore() ?? null) : outer
    // Every fn gets its signal; the AbortController behind it is made only
    // if fn listens (TaskSignal).
    const signal = new TaskSignal()
    if (keepClasses.signal === null) keepClasses.signal = new TaskSignal()
    flight.controller = signal
    let result
    running = flight
    try {
      if (!this.#async) {
        result = fn(signal)
      } else if (CONTEXT_FRAME) {
        // fn runs in the caller's context plus the flight, as with
        // asyncContext.run(flight, fn, signal), but with one context frame
        // made per flight instead of two: run() makes a second frame to
        // restore the caller's store, while an AsyncResource captures the
        // caller's frame as it is and puts that same frame back after fn.
        // Measured on Node 24 (a loaded 2-core VM): run() 225 ns, this
        // 151 ns per flight in isolation; in the 10-callers-per-key bench,
        // 1.16x -> 1.03x a Map dedupe, and less garbage for the GC.
        const scope = new AsyncResource(RESOURCE_TYPE)
        if (keepClasses.scope === null) keepClasses.scope = new AsyncResource(RESOURCE_TYPE)
        result = scope.runInAsyncScope(enterFlight, null, flight, fn, signal)
      } else {
        result = asyncContext.run(flight, fn, signal)
      }
    } catch (err) {
      running = outer
      this.#settle(flight, false, err)
      return
    }
    running = outer
    if (result !== null && (typeof result === 'object' || typeof result === 'function') && typeof result.then === 'function') {
      result.then(
        (value) => this.#settle(flight, true, value),
        (err) => this.#settle(flight, false, err),
      )
    } else {
      this.#settle(flight, true, result)
    }
  }

  // Removes the flight from the group; it keeps only what its callers need.
  #end(flight) {
    keepClasses.flight = flight
    flight.done = true
    this.#live--
    if (this.#byId !== null && this.#byId.delete(flight.id) && this.#byId.size === 0) this.#hold(false)
    if (flight.mapped && this.#flights.get(flight.key) === flight) this.#flights.delete(flight.key)
    if (flight.slot >= 0) {
      this.#slots[flight.slot] = null
      this.#freeSlots.push(flight.slot)
      flight.slot = -1
      this.#unqueue(flight)
      if (--this.#pending === 0) {
        // No live flight has a deadline: the timer must not hold the process
        // open, and the slot arrays shrink back. Every entry still in the
        // batch or in Rust belongs to an ended flight (removal triples not
        // handed over yet, or adds they cancel): drop them all, so a group
        // that goes idle holds no deadline anywhere (one crossing, and only
        // if a batch reached Rust since the last time).
        if (this.#timer !== null) this.#timer.unref()
        this.#slots = []
        this.#freeSlots = []
        this.#batchCount = 0
        if (this.#handedOver) {
          this.#handedOver = false
          this.#deadlines.clear()
        }
      }
    }
  }

  #settle(flight, ok, value) {
    if (!flight.reported && this.#named !== null && flight.leader) this.#report(flight, ok, value)
    if (flight.done) return
    this.#end(flight)
    if (!ok) this.#stats.errors++
    this.#deliver(flight, ok, value)
  }

  #deliver(flight, ok, value) {
    if (flight.promise !== null) {
      if (ok) flight.resolve(value)
      else flight.reject(value)
      // An ended flight may stay reachable (an async context started inside
      // fn, with detectRecursion: 'async'); it must not hold the result.
      flight.promise = flight.resolve = flight.reject = null
    }
    const records = flight.records
    if (records !== null) {
      flight.records = null
      for (let i = 0; i < records.length; i++) {
        const record = records[i]
        SingleFlight.#unwatch(record)
        if (!ok) record.reject(value)
        else if (record.withShared) record.resolve({ value, shared: flight.calls > 1 })
        else record.resolve(value)
        record.signal = record.resolve = record.reject = null
        record.flight = null
      }
    }
    flight.controller = null
  }

  static #unwatch(record) {
    const waiting = record.waiting
    record.waiting = null
    if (!waiting.delete(record) || waiting.size > 0) return
    const signal = record.signal
    if (watched.get(signal) === waiting) watched.delete(signal)
    signal.removeEventListener('abort', SingleFlight.#onAbort)
  }

  // The signals' one listener: every call waiting with `signal` leaves.
  static #onAbort(event) {
    const signal = event.target
    const waiting = watched.get(signal)
    if (waiting === undefined) return
    watched.delete(signal)
    for (const record of waiting) record.group.#leave(record)
  }

  #leave(record) {
    const flight = record.flight
    if (flight === null || flight.done || record.signal === null) return
    record.flight = null
    record.waiting = null
    const records = flight.records
    const last = records.pop()
    if (last !== record) {
      records[record.index] = last
      last.index = record.index
    }
    this.#stats.aborts++
    const reason = aborted(record.signal)
    record.signal = record.resolve = null
    const reject = record.reject
    record.reject = null
    reject(reason)
    if (records.length === 0 && flight.steady === 0 && this.#named !== null) {
      this.#leaveNamed(flight)
    } else if (records.length === 0 && flight.steady === 0) {
      // The last caller left: nobody wants the result, so the flight ends
      // and fn is told through its signal.
      this.#end(flight)
      flight.records = null
      const controller = flight.controller
      flight.controller = null
      if (controller !== null) {
        controller.abort(new BulkheadError(codes.ABORTED, 'every caller of this flight left'))
      }
    }
  }

  // ---- Named groups --------------------------------------------------------
  // The flight table is in Rust, shared by every thread that opened the
  // name. Within a thread, callers of a key join the thread's local Flight
  // in JS (no crossing); only the thread's first caller of a key crosses
  // (#callNamed). The leader thread runs fn and reports the outcome as
  // v8.serialize bytes; other threads are woken through their weak
  // thread-safe function and take their events in one call (#onWake).

  #callNamed(key, fn, signal, timeout, withShared, trace) {
    let begun
    try {
      begun = this.#named.begin(key, timeout === Infinity ? undefined : timeout)
    } catch (err) {
      return Promise.reject(err)
    }
    const id = begun < 0 ? -begun : begun
    let flight = this.#byId.get(id)
    if (flight !== undefined) {
      // This thread leads a flight all its callers had left; it joins again.
      flight.mapped = true
      this.#flights.set(key, flight)
      flight.calls++
      if (trace !== undefined) trace.joined = true
      return this.#wait(flight, signal, withShared)
    }
    flight = new Flight(key, id)
    flight.leader = begun > 0
    if (trace !== undefined) {
      trace.leader = flight.leader
      trace.joined = !flight.leader
    }
    this.#flights.set(key, flight)
    this.#byId.set(id, flight)
    if (this.#byId.size === 1) this.#hold(true)
    this.#live++
    // The leader's thread knows its flight's deadline and its timer expires
    // it for every thread. A joining thread arms one too, at the group's
    // timeout (the flight's deadline, unless the leader passed its own), so
    // a busy leader thread does not delay the others: expire() decides from
    // the real deadlines, and an early tick just re-arms.
    const wait = flight.leader ? timeout : this.#timeout
    if (wait !== Infinity) this.#armNamed(performance.now() + wait)
    const promise = this.#wait(flight, signal, withShared)
    if (flight.leader) this.#start(flight, fn)
    return promise
  }

  // Every caller in this thread left: this thread stops waiting. A leader
  // keeps running fn for the other threads until Rust says nobody waits.
  #leaveNamed(flight) {
    if (flight.mapped && this.#flights.get(flight.key) === flight) this.#flights.delete(flight.key)
    flight.mapped = false
    if (!flight.leader) this.#end(flight)
    this.#named.leave(flight.id)
    this.#onWake() // an Abort for this thread's own flight is queued for it
  }

  // While this thread waits on flights, keep its event loop alive: wake-ups
  // come through a weak thread-safe function, which does not (so an idle
  // group never holds a thread open).
  #hold(on) {
    if (this.#keepAlive === null) {
      if (!on) return
      this.#keepAlive = setInterval(noop, 2 ** 30)
    }
    if (on) this.#keepAlive.ref()
    else this.#keepAlive.unref()
  }

  #report(flight, ok, value) {
    flight.reported = true
    let bytes
    try {
      bytes = v8.serialize(ok ? value : errorPayload(value))
    } catch (err) {
      // The value cannot be cloned to another thread: the other threads get
      // the DataCloneError, this thread still gets the value.
      ok = false
      bytes = v8.serialize(errorPayload(err))
    }
    this.#named.settle(flight.id, ok, bytes)
  }

  #onWake() {
    const events = this.#named.takeEvents()
    for (const event of events) {
      const flight = this.#byId.get(event.id)
      if (flight === undefined || flight.done) continue
      const controller = flight.controller
      if (event.kind === 0) {
        this.#end(flight)
        let ok = event.ok
        let value
        try {
          value = v8.deserialize(event.bytes)
          if (!ok) value = errorFromPayload(value)
        } catch (err) {
          ok = false
          value = err
        }
        if (!ok) this.#stats.errors++
        this.#deliver(flight, ok, value)
      } else if (event.kind === 1) {
        this.#end(flight)
        this.#stats.timeouts++
        const err = new BulkheadError(codes.TIMEOUT, `the flight for key ${String(flight.key)} did not settle in time`)
        this.#deliver(flight, false, err)
        if (controller !== null) controller.abort(err)
      } else if (event.kind === 2) {
        this.#end(flight)
        this.#deliver(
          flight,
          false,
          new BulkheadError(
            codes.WORKER_EXITED,
            `the thread leading the flight for key ${String(flight.key)} exited before it settled`,
          ),
        )
      } else if (event.kind === 4) {
        // Forgotten in another thread: new callers here start or join the
        // key's next flight; the callers of this one keep waiting on it.
        if (flight.mapped && this.#flights.get(flight.key) === flight) this.#flights.delete(flight.key)
        flight.mapped = false
      } else if (event.kind === 3) {
        // Every caller in every thread left: stop fn.
        this.#end(flight)
        this.#deliver(flight, false, new BulkheadError(codes.ABORTED, 'every caller of this flight left'))
        if (controller !== null) controller.abort(new BulkheadError(codes.ABORTED, 'every caller of this flight left'))
      }
    }
  }

  #armNamed(at) {
    if (at >= this.#namedTimerAt - 1) return
    if (this.#namedTimer !== null) clearTimeout(this.#namedTimer)
    this.#namedTimerAt = at
    this.#namedTimer = setTimeout(() => {
      this.#namedTimer = null
      this.#namedTimerAt = Infinity
      // Expired flights come back as events, to every thread taking part.
      const next = this.#named.expire()
      this.#onWake() // this thread's own expired flights
      if (next >= 0 && this.#byId.size > 0) this.#armNamed(performance.now() + next)
    }, timerDelay(at))
    this.#namedTimer.unref()
  }

  #schedule(flight, deadline, timeout) {
    if (this.#deadlines === null) {
      this.#deadlines = new native.FlightDeadlines()
      this.#batch = new Float64Array(BATCH * 3)
      this.#out = new Float64Array(1 + OUT * 2)
      this.#slots = []
      this.#freeSlots = []
    }
    const slot = this.#freeSlots.length > 0 ? this.#freeSlots.pop() : this.#slots.length
    this.#slots[slot] = flight
    flight.slot = slot
    flight.timeout = timeout
    if (this.#pending++ === 0 && this.#timer !== null) this.#timer.ref()
    flight.deadline = deadline
    flight.queued = this.#batchCount
    this.#push(deadline, slot, flight.id)
    if (deadline < this.#timerAt) this.#arm(deadline)
  }

  #push(deadline, slot, id) {
    const i = this.#batchCount * 3
    this.#batch[i] = deadline
    this.#batch[i + 1] = slot
    this.#batch[i + 2] = id
    if (++this.#batchCount === BATCH) this.#drain()
  }

  // Takes an ended flight's deadline out: out of the batch if it is still
  // there (it then never reaches Rust), else a removal triple for Rust.
  #unqueue(flight) {
    const at = flight.queued
    flight.queued = -2
    if (at >= 0) {
      const batch = this.#batch
      const last = --this.#batchCount
      if (at !== last) {
        const from = last * 3
        const to = at * 3
        batch[to] = batch[from]
        batch[to + 1] = batch[from + 1]
        batch[to + 2] = batch[from + 2]
        if (batch[to + 1] >= 0) this.#slots[batch[to + 1]].queued = at
      }
    } else if (at === -1) {
      this.#push(flight.deadline, -1, flight.id)
    }
  }

  #arm(at) {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timerAt = at
    this.#timer = setTimeout(this.#onTimer, timerDelay(at))
    // A caller waiting on a deadline keeps the process alive until it
    // passes, as its own setTimeout would; stale deadlines never do.
    if (this.#pending === 0) this.#timer.unref()
  }

  #tick() {
    this.#timer = null
    this.#timerAt = Infinity
    const next = this.#drain()
    if (next >= 0) this.#arm(next)
  }

  // Hands the batch to Rust and expires what is due. Returns the next deadline or -1.
  #drain() {
    const out = this.#out
    const batch = this.#batch
    for (;;) {
      // Every add in the batch is about to be in Rust.
      for (let i = 0; i < this.#batchCount; i++) {
        const slot = batch[i * 3 + 1]
        if (slot >= 0) this.#slots[slot].queued = -1
      }
      const now = performance.now()
      if (this.#batchCount > 0) this.#handedOver = true
      const count = this.#deadlines.drain(batch, this.#batchCount, now, out)
      this.#batchCount = 0
      const next = out[0]
      // Collected first: expiring runs user code (abort listeners), which
      // may start flights and so reuse `out`.
      const due = []
      for (let i = 0; i < count; i++) {
        const flight = this.#slots[out[1 + 2 * i]]
        if (flight != null && flight.id === out[2 + 2 * i]) {
          flight.queued = -2 // Rust let go of it
          due.push(flight)
        }
      }
      for (const flight of due) if (!flight.done) this.#expire(flight)
      if (count < OUT || next > now) return next
    }
  }

  #expire(flight) {
    this.#end(flight)
    this.#stats.timeouts++
    const err = new BulkheadError(
      codes.TIMEOUT,
      `the flight for key ${String(flight.key)} did not settle within ${flight.timeout} ms`,
    )
    const controller = flight.controller
    this.#deliver(flight, false, err)
    if (controller !== null) controller.abort(err)
  }
}

// AbortSignal -> the records of the calls waiting with it (all groups).
const watched = new WeakMap()

const ERROR_TAG = '__bulkheadSingleFlightError'

function noop() {}

// An error as plain data for v8.serialize, keeping what structured clone
// would drop (`code`).
function errorPayload(err) {
  if (err instanceof Error) {
    return { [ERROR_TAG]: true, name: err.name, message: err.message, code: err.code, stack: err.stack }
  }
  return { [ERROR_TAG]: false, value: err }
}

function errorFromPayload(payload) {
  if (payload === null || typeof payload !== 'object' || !(ERROR_TAG in payload)) return payload
  if (!payload[ERROR_TAG]) return payload.value
  const err = new Error(payload.message)
  err.name = payload.name
  if (payload.code !== undefined) err.code = payload.code
  err.stack = payload.stack
  return err
}

function aborted(signal) {
  return new BulkheadError(codes.ABORTED, 'the call was aborted', { cause: signal.reason })
}

module.exports = { SingleFlight }
