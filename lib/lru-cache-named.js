'use strict'
// The named (process-wide) mode of LRUCache: `new LRUCache({ name, ... })`.
//
// Every worker_thread that opens the same name shares one store in Rust
// memory (src/shared_cache.rs), off the V8 heap and bounded in exact bytes.
// This class is the JS face of one handle on that store: it validates options
// with lru-cache's messages, encodes values to bytes (strings, numbers and
// byte arrays directly, everything else with the V8 serializer), makes one
// native call per operation, and runs `dispose`/`disposeAfter` in the thread
// whose operation removed the entries.
const v8 = require('node:v8')
const native = require('./native.js')
const { track } = require('./instances.js')

const { SharedCacheHandle, sharedCacheRawFunctions } = native
const { BulkheadError, codes, checkOptions, typeError } = require('./errors.js')
const { checkLabel } = require('./tracing.js')

// lru-cache 11's options, and bulkhead's own: a key outside these is a slip
// (`maxsize`, `tll`) and is rejected with the option meant.
const KNOWN_OPTIONS = new Set([
  'name',
  'max',
  'maxSize',
  'maxEntrySize',
  'ttl',
  'ttlResolution',
  'ttlAutopurge',
  'updateAgeOnGet',
  'updateAgeOnHas',
  'allowStale',
  'dispose',
  'disposeAfter',
  'onInsert',
  'noDisposeOnSet',
  'noUpdateTTL',
  'sizeCalculation',
  'fetchMethod',
  'memoMethod',
  'noDeleteOnFetchRejection',
  'noDeleteOnStaleGet',
  'allowStaleOnFetchRejection',
  'allowStaleOnFetchAbort',
  'ignoreFetchAbort',
  'perf',
  'evictExpiredFirst',
  'label',
  'shards',
])

/** The most shards a named cache may have (MAX_SHARDS in src/shared_cache.rs). */
const MAX_SHARDS = 256

// Value tags; the Rust glue (src/js/shared_cache.rs) uses the same numbers.
const TAG_BUFFER = 2
const TAG_UINT8 = 3
const TAG_V8 = 4

// Flag bits of the native calls, shared with src/js/shared_cache.rs.
const ALLOW_STALE = 1
const UPDATE_AGE = 2
const NO_DELETE_ON_STALE = 4
const COLLECT = 8
const NO_DISPOSE_ON_SET = 16
const NO_UPDATE_TTL = 32

const isPosInt = (n) => typeof n === 'number' && n > 0 && Number.isInteger(n) && Number.isFinite(n)
const disposeSymbol = Symbol.dispose ?? Symbol.for('nodejs.dispose')

// Options that need JS values to live in the cache, or a timer per entry;
// named mode refuses them clearly instead of ignoring them.
const UNSUPPORTED = ['sizeCalculation', 'memoMethod', 'onInsert', 'ttlAutopurge']

function invalid(message) {
  return new BulkheadError(codes.INVALID_ARG, message)
}

/** The `perf` clock's time; anything but a number would reach Rust as garbage. */
function perfNow(perf) {
  const now = perf.now()
  if (typeof now !== 'number') throw typeError(`perf.now() must return a number, got ${typeof now}`)
  return now
}

/** A value's structured-clone bytes; an uncloneable value is a TypeError naming it. */
function serialize(v) {
  try {
    return v8.serialize(v)
  } catch (err) {
    throw typeError(`named LRUCache values must be structured-cloneable: ${err.message}`, { cause: err })
  }
}

function checkKey(k) {
  const t = typeof k
  if (t !== 'string' && t !== 'number') {
    throw typeError(`named LRUCache keys must be strings or numbers, got ${t === 'object' && k === null ? 'null' : t}`)
  }
}

// fetch() across threads. A call that finds another thread (or call)
// fetching its key waits here under a waiter id until that thread's waker
// (a thread-safe function, src/js/shared_cache.rs) calls back.
const ORPHANED = 'the thread fetching this key closed its named LRUCache or exited'
const waiting = new Map()
let nextWaiter = 0
let installWaker
let refWaker
let wakerInstalled = false

function onWake(id, ok, message) {
  const w = waiting.get(id)
  if (w === undefined) return
  settleWait(id, w)
  if (ok) w.resolve()
  else if (message === ORPHANED) w.reject(new BulkheadError(codes.WORKER_EXITED, message))
  else w.reject(new BulkheadError(codes.ABORTED, `fetchMethod failed in the call fetching this key: ${message}`))
}

function settleWait(id, w) {
  waiting.delete(id)
  if (w.signal) w.signal.removeEventListener('abort', w.onAbort)
  // Only waits keep this thread alive; an idle cache does not.
  if (waiting.size === 0) refWaker(false)
}

function waitFor(id, signal) {
  return new Promise((resolve, reject) => {
    const w = { resolve, reject, signal, onAbort: undefined }
    if (signal) {
      w.onAbort = () => {
        settleWait(id, w)
        reject(signal.reason)
      }
      signal.addEventListener('abort', w.onAbort, { once: true })
    }
    if (waiting.size === 0) refWaker(true)
    waiting.set(id, w)
  })
}

function decode(r) {
  if (r === null || r === undefined) return undefined
  if (typeof r !== 'object') return r
  const tag = r[0]
  if (tag === TAG_BUFFER) return r.subarray(1)
  if (tag === TAG_UINT8) return new Uint8Array(r.buffer, r.byteOffset + 1, r.length - 1)
  return v8.deserialize(r.subarray(1))
}

class NamedLRUCache {
  #h
  // The hot paths: hand-registered Node-API functions bound to this handle
  // (src/js/shared_cache.rs). `now` is passed only with a `perf` clock.
  #get
  #set
  #has
  #peek
  #del
  #perf
  #collect
  #dispose
  #disposeAfter
  #name
  #label
  #max
  #maxSize
  #fetchMethod

  constructor(options) {
    if (options === null || typeof options !== 'object') {
      throw typeError('At least one of max, maxSize, or ttl is required')
    }
    const {
      name,
      max = 0,
      maxSize = 0,
      maxEntrySize = 0,
      ttl,
      perf,
      dispose,
      disposeAfter,
      allowStale,
      updateAgeOnGet,
      updateAgeOnHas,
      noDeleteOnStaleGet,
      noDisposeOnSet,
      noUpdateTTL,
      fetchMethod,
      label,
      shards = 1,
    } = options
    if (typeof name !== 'string' || name.length === 0) {
      throw invalid('options.name must be a non-empty string (the name of the process-wide cache)')
    }
    checkOptions(options, KNOWN_OPTIONS, `new LRUCache({ name: '${name}' }) options`)
    this.#label = checkLabel(label, name)
    if (perf !== undefined && typeof perf?.now !== 'function') {
      throw typeError('perf option must have a now() method if specified')
    }
    if (max !== 0 && !isPosInt(max)) {
      throw typeError('max option must be a nonnegative integer')
    }
    if (maxSize !== 0 && !isPosInt(maxSize)) {
      throw typeError('maxSize must be a positive integer if specified')
    }
    if (maxEntrySize !== 0 && !isPosInt(maxEntrySize)) {
      throw typeError('maxEntrySize must be a positive integer if specified')
    }
    const ttlMs = ttl || 0
    if (ttlMs && !isPosInt(ttlMs)) {
      throw typeError('ttl must be a positive integer if specified')
    }
    if (!max && !maxSize && !ttlMs) {
      throw typeError('At least one of max, maxSize, or ttl is required')
    }
    if (!max && !maxSize) {
      throw invalid(`a named LRUCache ('${name}') must be bounded: set options.max or options.maxSize`)
    }
    for (const option of UNSUPPORTED) {
      if (options[option] !== undefined && options[option] !== false) {
        throw invalid(`options.${option} is not supported by a named (process-wide) LRUCache`)
      }
    }
    if (fetchMethod !== undefined && typeof fetchMethod !== 'function') {
      throw typeError('fetchMethod must be a function if specified')
    }
    if (!Number.isInteger(shards) || shards < 1 || shards > MAX_SHARDS) {
      throw invalid(`options.shards must be an integer from 1 to ${MAX_SHARDS}`)
    }
    if (max !== 0 && shards > max) {
      throw invalid(`options.shards (${shards}) must not exceed options.max (${max}): every shard holds at least one entry`)
    }
    const overhead = SharedCacheHandle.entryOverhead()
    if (maxSize !== 0 && shards > 1 && Math.floor(maxSize / shards) < overhead) {
      throw invalid(
        `options.shards (${shards}) leaves each shard less of options.maxSize (${maxSize}) than one entry's ` +
          `overhead (${overhead} bytes): use at most ${Math.max(1, Math.floor(maxSize / overhead))} shards`,
      )
    }
    this.#h = new SharedCacheHandle(name, max, maxSize, maxEntrySize, ttlMs, shards)
    const raw = sharedCacheRawFunctions(this.#h.id)
    this.#get = raw.get
    this.#set = raw.set
    this.#has = raw.has
    this.#peek = raw.peek
    this.#del = raw.delete
    installWaker ??= raw.installWaker
    refWaker ??= raw.refWaker
    this.#fetchMethod = fetchMethod
    this.#name = name
    this.#max = max
    this.#maxSize = maxSize
    this.#perf = perf
    // Like lru-cache, a dispose option that is not a function is ignored.
    this.#dispose = typeof dispose === 'function' ? dispose : undefined
    this.#disposeAfter = typeof disposeAfter === 'function' ? disposeAfter : undefined
    this.#collect = this.#dispose || this.#disposeAfter ? COLLECT : 0
    this.maxEntrySize = this.#h.maxEntrySize
    this.ttl = ttlMs
    this.allowStale = !!allowStale
    this.updateAgeOnGet = !!updateAgeOnGet
    this.updateAgeOnHas = !!updateAgeOnHas
    this.noDeleteOnStaleGet = !!noDeleteOnStaleGet
    this.noDisposeOnSet = !!noDisposeOnSet
    this.noUpdateTTL = !!noUpdateTTL
    track(this, 'cache') // the metrics registry (lib/instances.js), weakly
  }

  /** The process-wide name of this cache. */
  get name() {
    return this.#name
  }

  /** The label naming this cache in metrics and traces: `options.label`, else the name. */
  get label() {
    return this.#label
  }
  get max() {
    return this.#max
  }
  get maxSize() {
    return this.#maxSize
  }
  /**
   * How many shards the store is split into (option `shards`, default 1).
   * With 1, the cache keeps one exact LRU order; with more, each shard keeps
   * its own order within its share of `max` and `maxSize`.
   */
  get shards() {
    return this.#h.shards
  }
  /** Entries held by the shared cache (all threads). */
  get size() {
    return this.#h.size
  }
  /** Bytes held by the shared cache: key + value + per-entry overhead of every entry. */
  get calculatedSize() {
    return this.#h.calculatedSize
  }
  get dispose() {
    return this.#dispose
  }
  get disposeAfter() {
    return this.#disposeAfter
  }
  get fetchMethod() {
    return this.#fetchMethod
  }
  get perf() {
    return this.#perf
  }
  /** Whether close() was called on this handle. */
  get closed() {
    return this.#h.closed
  }

  #now() {
    return this.#perf === undefined ? -1 : perfNow(this.#perf)
  }

  #drain() {
    const d = this.#h.takeDisposed()
    if (d === null || d === undefined) return
    const dispose = this.#dispose
    const after = this.#disposeAfter
    const n = d.length
    if (dispose) for (let i = 0; i < n; i += 3) dispose(decode(d[i + 1]), d[i], d[i + 2])
    if (after) for (let i = 0; i < n; i += 3) after(decode(d[i + 1]), d[i], d[i + 2])
  }

  get(k, getOptions) {
    checkKey(k)
    let flags = this.#collect
    if (getOptions === undefined) {
      if (this.allowStale) flags |= ALLOW_STALE
      if (this.updateAgeOnGet) flags |= UPDATE_AGE
      if (this.noDeleteOnStaleGet) flags |= NO_DELETE_ON_STALE
    } else {
      const {
        allowStale = this.allowStale,
        updateAgeOnGet = this.updateAgeOnGet,
        noDeleteOnStaleGet = this.noDeleteOnStaleGet,
      } = getOptions
      if (allowStale) flags |= ALLOW_STALE
      if (updateAgeOnGet) flags |= UPDATE_AGE
      if (noDeleteOnStaleGet) flags |= NO_DELETE_ON_STALE
    }
    const r = this.#perf === undefined ? this.#get(k, flags) : this.#get(k, flags, perfNow(this.#perf))
    if (flags & COLLECT) this.#drain()
    return decode(r)
  }

  /**
   * Like lru-cache's fetch(): a fresh cached value, or the result of
   * `fetchMethod(key, staleValue, { signal, options, context })`, stored.
   * Concurrent fetches of one key in any threads of the process run
   * `fetchMethod` once; the others wait and read the stored value.
   */
  async fetch(k, fetchOptions = {}) {
    checkKey(k)
    const fetchMethod = this.#fetchMethod
    if (fetchMethod === undefined) return this.get(k, fetchOptions)
    const { signal, context } = fetchOptions
    let forceRefresh = !!fetchOptions.forceRefresh
    if (!wakerInstalled) {
      installWaker(onWake)
      wakerInstalled = true
    }
    for (;;) {
      if (!forceRefresh) {
        const v = this.get(k, fetchOptions)
        if (v !== undefined) return v
      }
      if (signal?.aborted) throw signal.reason
      const id = ++nextWaiter
      if (this.#h.fetchBegin(k, id) === 0) return this.#runFetch(k, fetchMethod, fetchOptions, signal, context)
      await waitFor(id, signal)
      // Another call stored a fresh value (or gave up): read it, or fetch.
      forceRefresh = false
    }
  }

  async #runFetch(k, fetchMethod, fetchOptions, signal, context) {
    const ac = new AbortController()
    const onAbort = () => ac.abort(signal.reason)
    signal?.addEventListener('abort', onAbort, { once: true })
    let v
    try {
      const stale = this.peek(k, { allowStale: true })
      v = await fetchMethod(k, stale, { signal: ac.signal, options: fetchOptions, context })
    } catch (err) {
      this.#h.fetchEnd(k, false, String(err?.message ?? err))
      throw err
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
    try {
      if (ac.signal.aborted) throw ac.signal.reason
      if (v !== undefined) this.set(k, v, fetchOptions)
    } finally {
      this.#h.fetchEnd(k, true, '')
    }
    return v
  }

  peek(k, peekOptions) {
    checkKey(k)
    const allowStale = peekOptions?.allowStale ?? this.allowStale
    return decode(this.#peek(k, allowStale ? 1 : 0, this.#now()))
  }

  has(k, hasOptions) {
    checkKey(k)
    const updateAgeOnHas = hasOptions?.updateAgeOnHas ?? this.updateAgeOnHas
    return this.#has(k, updateAgeOnHas ? 1 : 0, this.#now())
  }

  set(k, v, setOptions) {
    checkKey(k)
    if (v === undefined) {
      this.delete(k)
      return this
    }
    let flags = this.#collect
    let ttl = -1
    let start = -1
    if (setOptions === undefined) {
      if (this.noDisposeOnSet) flags |= NO_DISPOSE_ON_SET
      if (this.noUpdateTTL) flags |= NO_UPDATE_TTL
    } else {
      const { noDisposeOnSet = this.noDisposeOnSet, noUpdateTTL = this.noUpdateTTL } = setOptions
      if (noDisposeOnSet) flags |= NO_DISPOSE_ON_SET
      if (noUpdateTTL) flags |= NO_UPDATE_TTL
      if (typeof setOptions.ttl === 'number' && setOptions.ttl >= 0) ttl = setOptions.ttl
      if (typeof setOptions.start === 'number' && setOptions.start >= 0) start = setOptions.start
    }
    let value = v
    let tag = 0
    const t = typeof v
    if (t !== 'string' && t !== 'number') {
      if (Buffer.isBuffer(v)) tag = TAG_BUFFER
      else if (v instanceof Uint8Array && v.constructor === Uint8Array) tag = TAG_UINT8
      else {
        tag = TAG_V8
        value = serialize(v)
      }
    }
    if (ttl === -1 && start === -1 && this.#perf === undefined) this.#set(k, value, tag, flags)
    else this.#set(k, value, tag, flags, ttl, start, this.#now())
    // With noDisposeOnSet the store reports no 'set' removals, but
    // evictions this set caused are still disposed (as lru-cache does).
    if (flags & COLLECT) this.#drain()
    return this
  }

  delete(k) {
    checkKey(k)
    const deleted = this.#del(k, this.#collect)
    if (this.#collect) this.#drain()
    return deleted
  }

  clear() {
    this.#h.clear(this.#collect)
    if (this.#collect) this.#drain()
  }

  pop() {
    const r = this.#h.pop(this.#collect)
    if (this.#collect) this.#drain()
    return decode(r)
  }

  purgeStale() {
    const any = this.#h.purgeStale(this.#now(), this.#collect)
    if (this.#collect) this.#drain()
    return any
  }

  getRemainingTTL(k) {
    checkKey(k)
    return this.#h.remainingTtl(k, this.#now())
  }

  #snapshot(reverse, allowStale = this.allowStale) {
    return this.#h.entries(this.#now(), !!allowStale, reverse)
  }

  *entries() {
    const flat = this.#snapshot(false)
    for (let i = 0; i < flat.length; i += 2) yield [flat[i], decode(flat[i + 1])]
  }
  *rentries() {
    const flat = this.#snapshot(true)
    for (let i = 0; i < flat.length; i += 2) yield [flat[i], decode(flat[i + 1])]
  }
  *keys() {
    const flat = this.#snapshot(false)
    for (let i = 0; i < flat.length; i += 2) yield flat[i]
  }
  *rkeys() {
    const flat = this.#snapshot(true)
    for (let i = 0; i < flat.length; i += 2) yield flat[i]
  }
  *values() {
    const flat = this.#snapshot(false)
    for (let i = 0; i < flat.length; i += 2) yield decode(flat[i + 1])
  }
  *rvalues() {
    const flat = this.#snapshot(true)
    for (let i = 0; i < flat.length; i += 2) yield decode(flat[i + 1])
  }
  [Symbol.iterator]() {
    return this.entries()
  }

  forEach(fn, thisp = this) {
    for (const [k, v] of this.entries()) fn.call(thisp, v, k, this)
  }
  rforEach(fn, thisp = this) {
    for (const [k, v] of this.rentries()) fn.call(thisp, v, k, this)
  }

  find(fn, getOptions = {}) {
    for (const [k, v] of this.entries()) {
      if (fn(v, k, this)) return this.get(k, getOptions)
    }
    return undefined
  }

  info(k) {
    checkKey(k)
    const now = this.#now()
    const value = decode(this.#peek(k, 1, now))
    if (value === undefined) return undefined
    const entry = { value }
    const remain = this.#h.remainingTtl(k, now)
    if (Number.isFinite(remain)) {
      entry.ttl = remain
      entry.start = Date.now()
    }
    return entry
  }

  dump() {
    const flat = this.#h.dump(this.#now())
    const arr = []
    for (let i = 0; i < flat.length; i += 5) {
      const entry = { value: decode(flat[i + 1]) }
      if (flat[i + 2]) {
        entry.ttl = flat[i + 2]
        entry.start = Math.floor(Date.now() - flat[i + 3])
      }
      entry.size = flat[i + 4]
      arr.push([flat[i], entry])
    }
    return arr
  }

  load(arr) {
    this.clear()
    const now = this.#perf === undefined ? SharedCacheHandle.now() : this.#perf.now()
    for (const [key, entry] of arr) {
      const opts = {}
      if (entry.ttl) opts.ttl = entry.ttl
      if (entry.start) opts.start = Math.max(0, now - (Date.now() - entry.start))
      this.set(key, entry.value, opts)
    }
  }

  /**
   * Counters of the shared cache since it was created (all threads), plus
   * its current entry count and bytes.
   */
  stats() {
    const [hits, misses, sets, evictions, expirations, deletes, size, calculatedSize] = this.#h.stats()
    return { hits, misses, sets, evictions, expirations, deletes, size, calculatedSize }
  }

  /**
   * Lets go of this handle. The shared cache (and its memory) is freed when
   * the last handle in any thread is closed or garbage collected.
   */
  close() {
    this.#h.close()
  }

  [disposeSymbol]() {
    this.close()
  }

  get [Symbol.toStringTag]() {
    return 'LRUCache'
  }

  /** Live named caches in the process (for leak checks). */
  static liveCount() {
    return SharedCacheHandle.liveCount()
  }

  /** The fixed bytes each entry is charged besides its key and value. */
  static entryOverhead() {
    return SharedCacheHandle.entryOverhead()
  }
}

module.exports = { NamedLRUCache }
