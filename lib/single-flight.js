'use strict'
// SingleFlight: per-key deduplication of concurrent async calls.
//
// Where things live (ARCHITECTURE.md, "SingleFlight", has the measurements):
// - The flights of a local group are JS objects in a JS Map, because joining
//   a flight must not cross into Rust (a crossing costs more than the whole
//   Map.get). The state machine they follow is the one src/single_flight.rs
//   (FlightTable) defines and unit-tests.
// - Deadlines live in Rust (FlightDeadlines, a min-heap). A flight with a
//   timeout writes (deadline, slot, id) into a Float64Array batch; the batch
//   crosses only when it is full or when the group's single, unref'd timer
//   fires, in the same call that returns what expired. A flight that settles
//   while still in the batch is taken out in JS and never reaches Rust; one
//   that settles later queues a removal. No timer per flight; the timer is
//   unref'd whenever no live flight has a deadline.

const { AsyncLocalStorage } = require('node:async_hooks')
const { performance } = require('node:perf_hooks')
const native = require('./native.js')
const { BulkheadError, codes } = require('./errors.js')

const BATCH = 1024 // deadline triples per crossing
const OUT = 1024 // expired (slot, id) pairs per crossing

// The flight whose fn is running synchronously right now; its `parent` is the
// flight whose fn started it, and so on (a chain through other keys). Enough
// to catch a flight that calls do() for its own key before its first await,
// at no cost.
let running = null
// Created on first use by a group with detectRecursion: 'async'. Enabling an
// AsyncLocalStorage on Node 20 installs promise hooks that slow every await
// in the process, so groups that did not ask for it never create one.
let asyncContext = null

function invalid(message) {
  return new BulkheadError(codes.INVALID_ARG, message)
}

function checkTimeout(value, name) {
  if (value === undefined || value === Infinity) return Infinity
  if (typeof value !== 'number' || !(value > 0)) {
    throw invalid(`${name} must be a positive number of milliseconds or Infinity`)
  }
  return value
}

function checkKey(key) {
  const type = typeof key
  if (type !== 'string' && type !== 'number') {
    throw new TypeError(`key must be a string or a number, got ${key === null ? 'null' : type}`)
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
  #onTimer = () => this.#tick()

  /**
   * @param {{ timeout?: number, maxKeys?: number, name?: string, detectRecursion?: 'sync' | 'async' }} [options]
   */
  constructor(options = {}) {
    if (options === null || typeof options !== 'object') throw invalid('options must be an object')
    const { timeout, maxKeys, name, detectRecursion = 'sync' } = options
    this.#timeout = checkTimeout(timeout, 'options.timeout')
    if (maxKeys === undefined || maxKeys === Infinity) {
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
      throw invalid('options.name is not supported yet: SingleFlight groups are local to their thread')
    }
  }

  /** Runs `fn` once for every caller of `key` that arrives while it is in progress. */
  do(key, fn, options) {
    return this.#call(key, fn, options, false)
  }

  /** Like `do`, resolving to `{ value, shared }`: whether the result went to more than one call. */
  doShared(key, fn, options) {
    return this.#call(key, fn, options, true)
  }

  /** The next call for `key` starts a new flight; callers of the old one still get its result. */
  forget(key) {
    const flight = this.#flights.get(key)
    if (flight === undefined) return false
    flight.mapped = false
    this.#flights.delete(key)
    return true
  }

  /** Whether a flight for `key` is in progress. */
  inFlight(key) {
    return this.#flights.has(key)
  }

  /** How many keys have a flight in progress. */
  get size() {
    return this.#flights.size
  }

  /** Counters since the group was made. */
  stats() {
    return { ...this.#stats }
  }

  /** A function that deduplicates concurrent calls of `fn` by `keyFn(...args)` (default: the first argument). */
  wrap(fn, keyFn) {
    if (typeof fn !== 'function') throw new TypeError('fn must be a function')
    if (keyFn !== undefined && typeof keyFn !== 'function') throw new TypeError('keyFn must be a function')
    const group = this
    return function deduplicated(...args) {
      const key = keyFn === undefined ? args[0] : keyFn.apply(this, args)
      return group.do(key, () => fn.apply(this, args))
    }
  }

  #call(key, fn, options, withShared) {
    checkKey(key)
    if (typeof fn !== 'function') throw new TypeError('fn must be a function')
    let signal
    let timeout = this.#timeout
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') throw invalid('options must be an object')
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
    if (timeout !== Infinity) this.#schedule(flight, performance.now() + timeout, timeout)
    if (!flight.done) this.#start(flight, fn)
    return promise
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
    let signal
    if (fn.length > 0) {
      flight.controller = new AbortController()
      signal = flight.controller.signal
    }
    let result
    running = flight
    try {
      result = this.#async ? asyncContext.run(flight, fn, signal) : fn(signal)
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
    flight.done = true
    this.#live--
    if (flight.mapped && this.#flights.get(flight.key) === flight) this.#flights.delete(flight.key)
    if (flight.slot >= 0) {
      this.#slots[flight.slot] = null
      this.#freeSlots.push(flight.slot)
      flight.slot = -1
      this.#unqueue(flight)
      if (--this.#pending === 0) {
        // No live flight has a deadline: the timer must not hold the process
        // open, and the slot arrays shrink back.
        if (this.#timer !== null) this.#timer.unref()
        this.#slots = []
        this.#freeSlots = []
      }
    }
  }

  #settle(flight, ok, value) {
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
    if (records.length === 0 && flight.steady === 0) {
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
    this.#timer = setTimeout(this.#onTimer, Math.max(1, Math.ceil(at - performance.now())))
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

function aborted(signal) {
  return new BulkheadError(codes.ABORTED, 'the call was aborted', { cause: signal.reason })
}

module.exports = { SingleFlight }
