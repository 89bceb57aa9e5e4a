'use strict'
// The runner inside every WorkerPool worker thread. It attaches to the pool's
// Rust core and pulls tasks itself: `take()` when woken, and `complete()`,
// which hands back a result and returns the next queued task in the same
// call. The main thread is never asked for work, so a busy pool keeps going
// while the main thread is blocked.
const { workerData } = require('node:worker_threads')
const { pathToFileURL } = require('node:url')
const native = require('./native.js')
const { WorkerPool } = require('./pool.js')

const { KEY, encodeValue, decodeValue, encodeError } = WorkerPool[Symbol.for('bulkhead.pool.internals')]
const { poolId, workerId, niceIncrement } = workerData[KEY]
if (niceIncrement > 0) native.poolNiceThread(niceIncrement)

// A synchronous run of tasks yields to the event loop after this long, so
// timers, I/O and abort messages of this worker still get their turn.
const SLICE_MS = 10

const meta = new Float64Array(2)
const modules = new Map() // module handle -> task function, or a Promise of it
const running = new Map() // task id -> { controller, aborted }, for tasks that looked at their signal
const pending = new Set() // ids of async tasks in flight (they can still look at their signal later)
let handle = null

function loadModule(moduleId) {
  let entry = modules.get(moduleId)
  if (entry === undefined) {
    const [filename, name] = native.poolModule(poolId, moduleId)
    entry = import(pathToFileURL(filename).href)
      .then(async (mod) => {
        let fn = await pickExport(mod, name)
        if (fn != null && typeof fn.then === 'function') fn = await fn
        if (typeof fn !== 'function') {
          const err = new TypeError(`${filename} does not export a function named "${name}"`)
          err.code = 'ERR_INVALID_ARG'
          throw err
        }
        modules.set(moduleId, fn)
        return fn
      })
      .catch((err) => {
        // Do not cache a failure: a later task retries the import.
        modules.delete(moduleId)
        throw err
      })
    modules.set(moduleId, entry)
  }
  return entry
}

async function pickExport(mod, name) {
  if (name === 'default') {
    let fn = mod.default
    if (fn != null && typeof fn === 'object' && typeof fn.default === 'function') fn = fn.default
    return fn
  }
  if (typeof mod[name] === 'function') return mod[name]
  return mod.default != null ? mod.default[name] : undefined
}

// The second argument of a task function. `signal` is made on first use, so
// a task that never looks at it costs no AbortController (and a class with a
// prototype getter is cheaper to make than an object literal with one).
class TaskContext {
  #id

  constructor(id) {
    this.#id = id
  }

  get signal() {
    let rec = running.get(this.#id)
    if (rec === undefined) {
      rec = { controller: null, aborted: false }
      running.set(this.#id, rec)
    }
    if (rec.controller === null) {
      rec.controller = new AbortController()
      if (rec.aborted) rec.controller.abort(abortReason())
    }
    return rec.controller.signal
  }
}

function context(id) {
  return new TaskContext(id)
}

function abortReason() {
  const err = new Error('the task was aborted or timed out')
  err.name = 'AbortError'
  return err
}

function onAbort(id) {
  const rec = running.get(id)
  if (rec === undefined) {
    // Not looked at yet: remember, for an async task that may look later.
    if (pending.has(id)) running.set(id, { controller: null, aborted: true })
    return
  }
  rec.aborted = true
  if (rec.controller !== null && !rec.controller.signal.aborted) rec.controller.abort(abortReason())
}

// Runs the task whose payload is `payload` (its id and module in `meta`).
// Returns the next task's payload if the task finished synchronously and
// another was queued (`meta` then describes it); otherwise undefined with
// meta[0] === -1.
function runTask(payload) {
  const id = meta[0]
  const moduleId = meta[1]
  const fn = modules.get(moduleId)
  if (typeof fn !== 'function') {
    loadModule(moduleId).then(
      (loaded) => invokeAsync(id, loaded, payload),
      (err) => finish(id, false, err),
    )
    return handle.take(meta)
  }
  let result
  try {
    result = fn(decodeValue(payload), context(id))
  } catch (err) {
    return complete(id, false, err)
  }
  if (result !== null && typeof result === 'object' && typeof result.then === 'function') {
    pending.add(id)
    result.then(
      (value) => finish(id, true, value),
      (err) => finish(id, false, err),
    )
    return handle.take(meta)
  }
  return complete(id, true, result)
}

function invokeAsync(id, fn, payload) {
  pending.add(id)
  let result
  try {
    result = fn(decodeValue(payload), context(id))
  } catch (err) {
    finish(id, false, err)
    return
  }
  Promise.resolve(result).then(
    (value) => finish(id, true, value),
    (err) => finish(id, false, err),
  )
}

function complete(id, ok, value) {
  running.delete(id)
  pending.delete(id)
  let encoded
  if (ok) {
    try {
      encoded = encodeValue(value)
    } catch (err) {
      // The task ran; its result cannot travel back (it holds a function,
      // a class instance with private state...): say so, with a code.
      ok = false
      const cloneError = new Error(`the task's return value could not be cloned back to the main thread: ${err.message}`, {
        cause: err,
      })
      cloneError.code = 'ERR_DATA_CLONE'
      encoded = encodeError(cloneError)
    }
  } else {
    encoded = encodeError(value)
  }
  return handle.complete(id, ok, encoded, meta)
}

function finish(id, ok, value) {
  pump(complete(id, ok, value))
}

function pump(payload) {
  const until = performance.now() + SLICE_MS
  while (meta[0] !== -1) {
    payload = runTask(payload)
    if (meta[0] !== -1 && performance.now() > until) {
      // The task in `meta` is already ours: run it after the event loop's turn.
      const id = meta[0]
      const moduleId = meta[1]
      const next = payload
      setImmediate(() => {
        meta[0] = id
        meta[1] = moduleId
        pump(next)
      })
      return
    }
  }
}

function onWake() {
  const aborts = handle.poll()
  for (let i = 0; i < aborts.length; i++) onAbort(aborts[i])
  pump(handle.take(meta))
}

try {
  handle = native.poolAttach(poolId, workerId, onWake)
} catch {
  // The pool is gone (destroyed before this worker started): nothing holds
  // this thread open, so it ends.
  handle = null
}
if (handle !== null) pump(handle.take(meta))
