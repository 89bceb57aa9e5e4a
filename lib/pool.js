'use strict'
// WorkerPool: a worker_threads executor for CPU tasks with piscina 5's run()
// shape. The queue and the dispatch state machine live in Rust
// (src/pool.rs); this file owns the JS values: the promise of each task (an
// id -> {resolve, reject} map), the Worker objects, and option validation.
// Workers run lib/pool-worker.js, which pulls tasks from Rust directly, so a
// busy pool keeps going while this thread is blocked; results come back in
// batches through one weak thread-safe function.
const { EventEmitter } = require('node:events')
const { Worker, isMainThread, SHARE_ENV, workerData: rawWorkerData } = require('node:worker_threads')
const { fileURLToPath } = require('node:url')
const path = require('node:path')
const os = require('node:os')
const v8 = require('node:v8')
const fs = require('node:fs')
const { BulkheadError, codes, checkOptions, typeError, rangeError } = require('./errors.js')
const { track } = require('./instances.js')
const { poolChannel, checkLabel } = require('./tracing.js')

// The key under which a pool's own data travels in a worker's workerData.
const KEY = '__bulkheadPoolWorker'
const RUNNER = path.join(__dirname, 'pool-worker.js')
const ERROR_MARK = '__bulkheadError'

const ownData = !isMainThread && rawWorkerData != null && typeof rawWorkerData === 'object' ? rawWorkerData[KEY] : undefined
const cpus = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length

const POOL_OPTIONS = new Set([
  'filename',
  'name',
  'minThreads',
  'maxThreads',
  'idleTimeout',
  'maxQueue',
  'concurrentTasksPerWorker',
  'resourceLimits',
  'env',
  'argv',
  'execArgv',
  'workerData',
  'taskTimeout',
  'abortGrace',
  'niceIncrement',
  'label',
])
const RUN_OPTIONS = new Set(['filename', 'name', 'signal', 'timeout', 'queueTimeout', 'transferList'])
const CLOSE_OPTIONS = new Set(['force'])

/** Default `maxThreads`: one thread per core but one (the main thread's), at least 1. */
const DEFAULT_MAX_THREADS = Math.max(cpus - 1, 1)

/** Default `maxQueue` per thread (`maxQueue` defaults to `maxThreads * 1024`). */
const DEFAULT_QUEUE_PER_THREAD = 1024
/** Most results settled in one turn of the main thread's event loop (bounds its delay). */
const DRAIN_BATCH = 512
const ALL = 0xffffffff
/** How long a worker has to return an aborted or timed-out task before it is terminated (ms). */
const DEFAULT_ABORT_GRACE = 1000

let native
const NO_OPTIONS = Object.freeze({})

function withResolvers() {
  let resolve
  let reject
  const promise = new Promise((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

function isPrimitive(value) {
  const t = typeof value
  return value === null || (t !== 'object' && t !== 'function' && t !== 'bigint' && t !== 'symbol')
}

/** Encodes a value to cross to another thread: primitives as they are, the rest V8-serialized. */
function encodeValue(value) {
  return isPrimitive(value) ? value : v8.serialize(value)
}

function decodeValue(value) {
  if (typeof value !== 'object' || value === null) return value
  return Array.isArray(value) ? decodeTransfer(value) : v8.deserialize(value)
}

// transferList support. The task is serialized with its ArrayBuffers (and
// views over them) referring to the transferred buffers by index instead of
// copying their bytes; the caller's buffers are detached, as postMessage
// would; Rust copies each buffer once and the worker gets ArrayBuffers made
// over that memory without another copy.
const VIEW_TYPES = [
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
  DataView,
  Buffer,
]

class TransferSerializer extends v8.DefaultSerializer {
  constructor(buffers) {
    super()
    this.buffers = buffers
  }

  _writeHostObject(obj) {
    const index = ArrayBuffer.isView(obj) ? this.buffers.indexOf(obj.buffer) : -1
    if (index === -1) {
      this.writeUint32(0)
      return super._writeHostObject(obj)
    }
    const type = Buffer.isBuffer(obj) ? VIEW_TYPES.length - 1 : VIEW_TYPES.findIndex((T) => obj.constructor === T || obj instanceof T)
    this.writeUint32(1)
    this.writeUint32(type)
    this.writeUint32(index)
    this.writeDouble(obj.byteOffset)
    this.writeDouble(obj instanceof DataView ? obj.byteLength : obj.length)
  }
}

class TransferDeserializer extends v8.DefaultDeserializer {
  constructor(bytes, buffers) {
    super(bytes)
    this.buffers = buffers
  }

  _readHostObject() {
    if (this.readUint32() === 0) return super._readHostObject()
    const T = VIEW_TYPES[this.readUint32()]
    const ab = this.buffers[this.readUint32()]
    const offset = this.readDouble()
    const length = this.readDouble()
    return T === Buffer ? Buffer.from(ab, offset, length) : new T(ab, offset, length)
  }
}

function encodeTransfer(value, transferList) {
  const buffers = []
  for (const item of transferList) {
    const ab = item instanceof ArrayBuffer ? item : ArrayBuffer.isView(item) ? item.buffer : null
    // Anything else (a MessagePort, a number) is not supported: say so rather than ignore it.
    if (!(ab instanceof ArrayBuffer)) throw typeError('transferList items must be ArrayBuffers or views of them')
    if (!buffers.includes(ab)) buffers.push(ab)
  }
  if (buffers.length === 0) return encodeValue(value)
  const ser = new TransferSerializer(buffers)
  ser.writeHeader()
  for (let i = 0; i < buffers.length; i++) ser.transferArrayBuffer(i, buffers[i])
  ser.writeValue(value)
  const out = [ser.releaseBuffer()]
  for (const ab of buffers) {
    try {
      out.push(structuredClone(ab, { transfer: [ab] }))
    } catch {
      // Marked untransferable (for example Buffer's shared pool): copied, not moved.
      out.push(ab)
    }
  }
  return out
}

function decodeTransfer([bytes, ...buffers]) {
  const des = new TransferDeserializer(bytes, buffers)
  des.readHeader()
  for (let i = 0; i < buffers.length; i++) des.transferArrayBuffer(i, buffers[i])
  return des.readValue()
}

/** Encodes a thrown value, keeping an Error's class, stack and own properties (such as `code`). */
function encodeError(err) {
  if (err instanceof Error) {
    const props = {}
    for (const key of Object.keys(err)) props[key] = err[key]
    try {
      return v8.serialize({ [ERROR_MARK]: 1, error: err, props })
    } catch {
      const plain = { name: err.name, message: err.message, stack: err.stack }
      return v8.serialize({ [ERROR_MARK]: 2, error: plain, props: {} })
    }
  }
  try {
    return encodeValue(err)
  } catch {
    return encodeValue(String(err))
  }
}

function decodeError(value) {
  const decoded = decodeValue(value)
  if (decoded !== null && typeof decoded === 'object' && decoded[ERROR_MARK]) {
    let err = decoded.error
    if (decoded[ERROR_MARK] === 2) {
      err = new Error(decoded.error.message)
      err.name = decoded.error.name
      err.stack = decoded.error.stack
    }
    for (const key of Object.keys(decoded.props)) {
      try {
        err[key] = decoded.props[key]
      } catch {
        // a read-only property of the error class; keep the class's own
      }
    }
    // V8 restores only the built-in classes; keep a subclass's name.
    if (decoded.props.name === undefined && typeof decoded.error.name === 'string') err.name = decoded.error.name
    return err
  }
  return decoded
}

function toFilename(filename) {
  if (filename instanceof URL) return fileURLToPath(filename)
  if (typeof filename === 'string' && filename.startsWith('file:')) return fileURLToPath(filename)
  return filename
}

// A task module that cannot exist is reported when the pool is made, not by
// every task: a relative path resolves against process.cwd() (as
// worker_threads and import() resolve it), so it is made absolute here.
function checkFilename(filename) {
  const absolute = path.resolve(filename)
  let stat
  try {
    stat = fs.statSync(absolute)
  } catch (err) {
    throw new BulkheadError(
      codes.INVALID_ARG,
      `options.filename: no task module at ${absolute}` +
        (absolute === filename ? '' : ` (relative paths resolve against process.cwd(), ${process.cwd()})`),
      { cause: err },
    )
  }
  if (!stat.isFile()) throw new BulkheadError(codes.INVALID_ARG, `options.filename: ${absolute} is not a file`)
  return absolute
}

function isNonNegativeNumber(v) {
  return typeof v === 'number' && v >= 0 && !Number.isNaN(v)
}

function validateOptions(opts) {
  if (opts.filename != null && typeof opts.filename !== 'string' && !(opts.filename instanceof URL)) {
    throw typeError('options.filename must be a string or null')
  }
  if (typeof opts.name !== 'string' && opts.name != null) throw typeError('options.name must be a string or null')
  // Numbers are checked as piscina checks them (any number in range; fractions are floored).
  if (opts.minThreads !== undefined && !(typeof opts.minThreads === 'number' && opts.minThreads >= 0)) {
    throw typeError('options.minThreads must be a non-negative integer')
  }
  if (opts.maxThreads !== undefined && !(typeof opts.maxThreads === 'number' && opts.maxThreads >= 1)) {
    throw typeError('options.maxThreads must be a positive integer')
  }
  if (opts.minThreads !== undefined && opts.maxThreads !== undefined && opts.minThreads > opts.maxThreads) {
    throw rangeError('options.minThreads and options.maxThreads must not conflict')
  }
  if (opts.idleTimeout !== undefined && !isNonNegativeNumber(opts.idleTimeout)) {
    throw typeError('options.idleTimeout must be a non-negative integer')
  }
  if (
    opts.maxQueue !== undefined &&
    opts.maxQueue !== 'auto' &&
    (typeof opts.maxQueue !== 'number' || !(opts.maxQueue >= 0))
  ) {
    throw typeError('options.maxQueue must be a non-negative integer')
  }
  if (
    opts.concurrentTasksPerWorker !== undefined &&
    !(typeof opts.concurrentTasksPerWorker === 'number' && opts.concurrentTasksPerWorker >= 1)
  ) {
    throw typeError('options.concurrentTasksPerWorker must be a positive integer')
  }
  if (opts.resourceLimits !== undefined && (typeof opts.resourceLimits !== 'object' || opts.resourceLimits === null)) {
    throw typeError('options.resourceLimits must be an object')
  }
  for (const key of ['taskTimeout', 'abortGrace']) {
    if (opts[key] !== undefined && !isNonNegativeNumber(opts[key])) {
      throw typeError(`options.${key} must be a non-negative number`)
    }
  }
  if (opts.niceIncrement !== undefined && !(typeof opts.niceIncrement === 'number' && opts.niceIncrement >= 0)) {
    throw typeError('options.niceIncrement must be a non-negative integer on Unix systems')
  }
  for (const key of ['argv', 'execArgv']) {
    if (opts[key] !== undefined && !Array.isArray(opts[key])) throw typeError(`options.${key} must be an array`)
  }
  // What new Worker() takes; checked here so a bad env throws at once (as
  // piscina's does) instead of failing every spawn later.
  const env = opts.env
  if (env != null && typeof env !== 'object' && env !== SHARE_ENV) {
    throw typeError('options.env must be an object, null or worker_threads.SHARE_ENV')
  }
}

/**
 * A pool of worker threads running a task module's function. See README "WorkerPool".
 */
class WorkerPool extends EventEmitter {
  #core
  #options
  #filename
  #name
  #workers = new Map() // worker id -> { worker, error }
  #pending = new Map() // task id -> { resolve, reject, signal, onAbort }
  #nextId = 1
  #modules = new Map() // filename -> Map(export name -> handle)
  #defaultModule = undefined
  #keepAlive = null
  #closing = null
  #destroyed = false
  #exitWaiters = []
  #exitCause = undefined
  #needsDrain = false
  #drainScheduled = false
  #start = performance.now()
  #completed = 0
  #label

  constructor(options = {}) {
    super()
    if (options === null || typeof options !== 'object') throw typeError('options must be an object')
    checkOptions(options, POOL_OPTIONS, 'new WorkerPool() options')
    validateOptions(options)
    this.#label = checkLabel(options.label, undefined)
    native ??= require('./native.js')
    // Fractions are floored; the core counts whole threads (at most 4096).
    const whole = (n) => Math.min(Math.floor(n), 4096)
    let maxThreads = whole(options.maxThreads ?? DEFAULT_MAX_THREADS)
    // Half the default maxThreads (at least 1), never above maxThreads.
    let minThreads = whole(options.minThreads ?? Math.max(Math.floor(DEFAULT_MAX_THREADS / 2), 1))
    if (options.maxThreads !== undefined && minThreads > maxThreads) minThreads = maxThreads
    if (options.minThreads !== undefined && maxThreads < minThreads) maxThreads = minThreads
    const concurrency = whole(options.concurrentTasksPerWorker ?? 1)
    let maxQueue = options.maxQueue ?? maxThreads * DEFAULT_QUEUE_PER_THREAD
    if (maxQueue === 'auto') maxQueue = maxThreads ** 2
    this.#filename = options.filename == null ? null : checkFilename(toFilename(options.filename))
    this.#name = options.name ?? 'default'
    this.#options = Object.freeze({
      filename: this.#filename,
      name: this.#name,
      minThreads,
      maxThreads,
      idleTimeout: options.idleTimeout ?? 0,
      maxQueue,
      concurrentTasksPerWorker: concurrency,
      resourceLimits: options.resourceLimits,
      env: options.env,
      argv: options.argv,
      execArgv: options.execArgv,
      workerData: options.workerData,
      taskTimeout: options.taskTimeout,
      abortGrace: options.abortGrace ?? DEFAULT_ABORT_GRACE,
      niceIncrement: Math.min(Math.floor(options.niceIncrement ?? 0), 19),
      label: this.#label,
    })
    this.#core = new native.PoolCore(
      minThreads,
      maxThreads,
      maxQueue,
      concurrency,
      this.#options.idleTimeout,
      this.#options.abortGrace,
      () => this.#onReady(),
    )
    for (const id of this.#core.start()) this.#spawn(id)
    track(this, 'pool') // the metrics registry (lib/instances.js), weakly
  }

  /** Whether this code runs inside one of a WorkerPool's workers. */
  static get isWorkerThread() {
    return ownData !== undefined
  }

  /** Inside a pool's worker: the pool's `workerData` option. */
  static get workerData() {
    return ownData === undefined ? undefined : ownData.workerData
  }

  /**
   * The label naming this pool in metrics and traces (`options.label`;
   * undefined when not given: a pool's `name` option is the task
   * function's export name, not the pool's).
   */
  get label() {
    return this.#label
  }

  /** The options in force, with defaults filled in. */
  get options() {
    return this.#options
  }

  get maxThreads() {
    return this.#options.maxThreads
  }

  get minThreads() {
    return this.#options.minThreads
  }

  /** The live Worker objects. */
  get threads() {
    const out = []
    for (const rec of this.#workers.values()) if (rec.worker) out.push(rec.worker)
    return out
  }

  /** Tasks waiting for a worker. */
  get queueSize() {
    return this.#destroyed ? 0 : this.#core.queueSize
  }

  /** Tasks that ran to the end in a worker (returned or threw). */
  get completed() {
    return this.#completed
  }

  /** Milliseconds since the pool was made. */
  get duration() {
    return performance.now() - this.#start
  }

  /** Fraction of the pool's thread time spent running tasks (0..1), as piscina computes it. */
  get utilization() {
    const total = this.#core.stats().runTimeTotal
    const capacity = this.duration * this.#options.maxThreads
    return capacity > 0 ? Math.min(total / capacity, 1) : 0
  }

  /** Whether the queue was full enough that callers should wait for 'drain'. */
  get needsDrain() {
    return this.#needsDrain
  }

  /** Counters and wait/run-time histograms (ms, p50/p90/p99). */
  stats() {
    return this.#core.stats()
  }

  /**
   * Runs `task` on a worker. Resolves with the task function's (awaited) result.
   * Options: `filename`, `name`, `signal`, `timeout` (running time, ms),
   * `queueTimeout` (time in the queue, ms), `transferList`.
   */
  run(task, options = NO_OPTIONS) {
    if (poolChannel.hasSubscribers) return this.#traced(task, options)
    return this.#run(task, options, undefined)
  }

  // A `bulkhead:pool` trace around one task (docs/observability.md). #run
  // fills in `filename` and `name`; #drain and #settle the times and
  // outcome ('threw' or 'returned'), and any other rejection is 'failed'.
  #traced(task, options) {
    const context = {
      label: this.#label,
      filename: undefined,
      name: undefined,
      waitTime: undefined,
      runTime: undefined,
      outcome: undefined,
    }
    return poolChannel.tracePromise(this.#runTraced, context, this, task, options, context)
  }

  #runTraced(task, options, context) {
    return this.#run(task, options, context).then(undefined, (err) => {
      context.outcome ??= 'failed'
      throw err
    })
  }

  #run(task, options, trace) {
    if (options === null || typeof options !== 'object') {
      return Promise.reject(typeError('options must be an object'))
    }
    if (options !== NO_OPTIONS) {
      try {
        checkOptions(options, RUN_OPTIONS, 'pool.run() options')
      } catch (err) {
        return Promise.reject(err)
      }
    }
    const { transferList, signal = null } = options
    const filename = options.filename ?? null
    const name = options.name ?? null
    if (transferList !== undefined && !Array.isArray(transferList)) {
      return Promise.reject(typeError('transferList argument must be an Array'))
    }
    if (filename != null && typeof filename !== 'string' && !(filename instanceof URL)) {
      return Promise.reject(typeError('filename argument must be a string'))
    }
    if (name != null && typeof name !== 'string') return Promise.reject(typeError('name argument must be a string'))
    if (signal != null && typeof signal !== 'object') {
      return Promise.reject(typeError('signal argument must be an object'))
    }
    const timeout = options.timeout ?? this.#options.taskTimeout
    const queueTimeout = options.queueTimeout
    if (timeout !== undefined && !isNonNegativeNumber(timeout)) {
      return Promise.reject(typeError('timeout argument must be a non-negative number'))
    }
    if (queueTimeout !== undefined && !isNonNegativeNumber(queueTimeout)) {
      return Promise.reject(typeError('queueTimeout argument must be a non-negative number'))
    }
    if (this.#closing || this.#destroyed) {
      return Promise.reject(new BulkheadError(codes.CLOSED, 'the pool is closed'))
    }
    const file = filename != null ? toFilename(filename) : this.#filename
    if (trace !== undefined) {
      trace.filename = file ?? undefined
      trace.name = name ?? this.#name
    }
    if (file == null) {
      return Promise.reject(
        new BulkheadError(codes.INVALID_ARG, 'filename must be provided to run() or in the WorkerPool options'),
      )
    }
    if (signal != null && signal.aborted) {
      return Promise.reject(new BulkheadError(codes.ABORTED, 'the task was aborted', { cause: signal.reason }))
    }
    let payload
    try {
      payload = transferList !== undefined && transferList.length > 0 ? encodeTransfer(task, transferList) : encodeValue(task)
    } catch (err) {
      // v8.serialize's DataCloneError is a plain Error: a task that cannot be cloned is a TypeError naming it.
      if (err instanceof TypeError) return Promise.reject(err)
      return Promise.reject(typeError(`task could not be cloned: ${err.message}`, { cause: err }))
    }
    const module =
      filename == null && name == null ? (this.#defaultModule ??= this.#moduleId(file, this.#name)) : this.#moduleId(file, name ?? this.#name)
    const id = this.#nextId++
    let spawn
    try {
      spawn = this.#core.submit(id, payload, module, queueTimeout ?? -1, timeout ?? -1)
    } catch (err) {
      if (err.code === codes.QUEUE_FULL) this.#needsDrain = true
      return Promise.reject(new BulkheadError(err.code ?? codes.INTERNAL, err.message))
    }
    if (spawn != null) for (let i = 0; i < spawn.length; i++) this.#spawn(spawn[i])
    const { promise, resolve, reject } = withResolvers()
    const entry = { resolve, reject, signal: null, onAbort: null, trace }
    if (signal != null) {
      entry.signal = signal
      entry.onAbort = () => this.#abort(id, signal)
      if (typeof signal.addEventListener === 'function') signal.addEventListener('abort', entry.onAbort, { once: true })
      else if (typeof signal.once === 'function') signal.once('abort', entry.onAbort)
    }
    if (this.#pending.size === 0) this.#ref()
    this.#pending.set(id, entry)
    return promise
  }

  #moduleId(file, name) {
    let byName = this.#modules.get(file)
    if (byName === undefined) {
      byName = new Map()
      this.#modules.set(file, byName)
    }
    let handle = byName.get(name)
    if (handle === undefined) {
      handle = this.#core.moduleId(file, name)
      byName.set(name, handle)
    }
    return handle
  }

  #abort(id, signal) {
    if (!this.#pending.has(id) || this.#destroyed) return
    if (this.#core.cancel(id, false)) {
      this.#settle(id, false, new BulkheadError(codes.ABORTED, 'the task was aborted', { cause: signal.reason }))
    }
  }

  // Tracing: the task's times and how it ended, on its trace context.
  #timed(id, kind, wait, run) {
    const trace = this.#pending.get(id)?.trace
    if (trace === undefined) return
    if (wait >= 0) trace.waitTime = wait
    if (run >= 0) trace.runTime = run
    if (kind === 1) trace.outcome = 'threw'
  }

  #settle(id, ok, value) {
    const entry = this.#pending.get(id)
    if (entry === undefined) return
    this.#pending.delete(id)
    if (ok && entry.trace !== undefined) entry.trace.outcome = 'returned'
    if (entry.signal !== null) {
      if (typeof entry.signal.removeEventListener === 'function') {
        entry.signal.removeEventListener('abort', entry.onAbort)
      } else if (typeof entry.signal.off === 'function') entry.signal.off('abort', entry.onAbort)
    }
    if (ok) entry.resolve(value)
    else entry.reject(value)
    if (this.#pending.size === 0) this.#allSettled()
  }

  #allSettled() {
    this.#unref()
    if (this.#closing !== null) this.#finishClose()
  }

  // One ref'd handle while any task is pending keeps the process alive for
  // it; an idle pool holds nothing (workers are unref'd, the wake-up is weak).
  #ref() {
    if (this.#keepAlive === null) this.#keepAlive = setInterval(() => {}, 1 << 30)
    else this.#keepAlive.ref()
  }

  #unref() {
    if (this.#keepAlive !== null) this.#keepAlive.unref()
  }

  #onReady() {
    if (this.#destroyed && this.#pending.size === 0) return
    this.#drain()
  }

  #drain(max = DRAIN_BATCH) {
    // Per-task times are asked for only while someone traces.
    const times = poolChannel.hasSubscribers
    const batch = times ? this.#core.drainTimed(max) : this.#core.drain(max)
    const stride = times ? 5 : 3
    let i = 0
    let completedNow = 0
    for (; i < batch.length; i += stride) {
      const id = batch[i]
      if (id < 0) {
        // More results wait: take them after the event loop had a turn.
        if (id === -2 && !this.#drainScheduled) {
          this.#drainScheduled = true
          setImmediate(() => {
            this.#drainScheduled = false
            this.#drain()
          })
        }
        break
      }
      const kind = batch[i + 1]
      const value = batch[i + 2]
      if (times) this.#timed(id, kind, batch[i + 3], batch[i + 4])
      if (kind === 0) {
        completedNow++
        if (!this.#pending.has(id)) continue
        let result
        try {
          result = decodeValue(value)
        } catch (err) {
          this.#settle(
            id,
            false,
            new BulkheadError(codes.DATA_CLONE, `the task's return value could not be read back: ${err.message}`, {
              cause: err,
            }),
          )
          continue
        }
        this.#settle(id, true, result)
      } else if (kind === 1) {
        completedNow++
        if (!this.#pending.has(id)) continue
        this.#settle(id, false, decodeError(value))
      } else {
        const space = value.indexOf(' ')
        const code = value.slice(0, space)
        const message = value.slice(space + 1)
        const options = code === codes.WORKER_EXITED && this.#exitCause !== undefined ? { cause: this.#exitCause } : undefined
        this.#settle(id, false, new BulkheadError(code, message, options))
      }
    }
    this.#completed += completedNow
    for (i += 1; i < batch.length; i++) {
      const rec = this.#workers.get(batch[i])
      if (rec !== undefined && rec.worker !== null) {
        rec.expected = true
        rec.worker.terminate()
      }
    }
    if (this.#needsDrain && !this.#destroyed && this.#core.queueSize === 0) {
      this.#needsDrain = false
      this.emit('drain')
    }
  }

  #spawn(id) {
    if (this.#destroyed) return
    const o = this.#options
    const rec = { worker: null, error: undefined, expected: false }
    this.#workers.set(id, rec)
    let worker
    try {
      worker = new Worker(RUNNER, {
        workerData: {
          [KEY]: { poolId: this.#core.id, workerId: id, workerData: o.workerData, niceIncrement: o.niceIncrement },
        },
        resourceLimits: o.resourceLimits,
        env: o.env,
        argv: o.argv,
        execArgv: o.execArgv,
      })
    } catch (err) {
      // Bad worker options: fail like a worker that died at start-up.
      rec.error = err
      queueMicrotask(() => this.#onExit(id, rec, 1))
      return
    }
    rec.worker = worker
    worker.unref()
    worker.on('error', (err) => {
      rec.error = err
    })
    worker.on('exit', (code) => this.#onExit(id, rec, code))
  }

  #onExit(id, rec, code) {
    this.#workers.delete(id)
    const err = rec.error
    const message =
      err !== undefined
        ? `the worker running the task exited: ${err && err.message}`
        : `the worker running the task exited with code ${code}`
    this.#exitCause = err
    const respawn = this.#core.workerExited(id, message)
    const before = this.#pending.size
    this.#drain(ALL)
    this.#exitCause = undefined
    if (err !== undefined && !rec.expected && before === this.#pending.size && !this.#destroyed) {
      // The error lost no task: tell listeners, if any (an 'error' event with
      // no listener would throw in the main thread).
      if (this.listenerCount('error') > 0) this.emit('error', err)
    }
    const start = () => {
      for (const w of respawn.workers) this.#spawn(w)
    }
    if (respawn.workers.length > 0) {
      if (respawn.delay > 0) setTimeout(start, respawn.delay).unref()
      else start()
    }
    if (this.#workers.size === 0 && this.#exitWaiters.length > 0) {
      for (const resolve of this.#exitWaiters.splice(0)) resolve()
    }
  }

  /** Finishes queued and running tasks, then stops the workers. */
  close(options = {}) {
    if (options === null || typeof options !== 'object') throw typeError('options must be an object')
    checkOptions(options, CLOSE_OPTIONS, 'pool.close() options')
    if (options.force !== undefined && typeof options.force !== 'boolean') {
      return Promise.reject(typeError('force argument must be a boolean'))
    }
    if (options.force) return this.destroy()
    if (this.#destroyed) return Promise.resolve()
    if (this.#closing === null) {
      this.#core.close()
      this.#closing = withResolvers()
      if (this.#pending.size === 0) this.#finishClose()
    }
    return this.#closing.promise
  }

  #finishClose() {
    const closing = this.#closing
    this.destroy().then(closing.resolve, closing.reject)
  }

  /** Rejects queued and running tasks with ERR_CLOSED and terminates the workers. */
  destroy() {
    if (!this.#destroyed) {
      this.#destroyed = true
      const workers = this.#core.destroy()
      this.#drain(ALL)
      for (const id of workers) {
        const rec = this.#workers.get(id)
        if (rec !== undefined && rec.worker !== null) {
          rec.expected = true
          rec.worker.terminate()
        }
      }
      if (this.#keepAlive !== null) {
        clearInterval(this.#keepAlive)
        this.#keepAlive = null
      }
    }
    if (this.#workers.size === 0) return Promise.resolve()
    return new Promise((resolve) => this.#exitWaiters.push(resolve))
  }

  [Symbol.asyncDispose]() {
    return this.close()
  }
}

// What lib/pool-worker.js shares with this file; not public API.
Object.defineProperty(WorkerPool, Symbol.for('bulkhead.pool.internals'), {
  value: Object.freeze({ KEY, encodeValue, decodeValue, encodeError }),
})

module.exports = { WorkerPool }
