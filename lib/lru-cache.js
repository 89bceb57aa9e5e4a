'use strict'
// LRUCache: a drop-in for lru-cache 11 whose policy (recency order, TTL
// bookkeeping, sizes, victims, stats) lives in Rust (src/cache.rs, glue in
// src/js/lru_cache.rs), while every JS value stays here.
//
// Layout. `#keyMap` maps key -> slot (a Map: SameValueZero, object keys by
// identity). `#keyList[slot]` and `#valList[slot]` hold the key and value.
// Rust hands out and recycles slot ids. The memory shared with Rust is a
// handful of ArrayBuffers created here:
//   #io    Float64Array: arguments and results of the native calls, counters
//   #log   Uint32Array: the access log (slots read since the last crossing)
//   #out   Uint32Array, one cell per slot: victims and iteration order
//   #starts/#ttls Float64Array, one cell per slot (once TTLs are tracked):
//          written by Rust on set, read here to answer "is it stale?"
// A read (get/fetch hit) never crosses: it appends its slot to the log.
// Every native call replays the log first, so the order Rust sees is exact.

const { channel, tracingChannel } = require('node:diagnostics_channel')
const native = require('./native.js')
const { track } = require('./instances.js')
const { checkLabel } = require('./tracing.js')
const { BulkheadError, codes } = require('./errors.js')

const {
  lruCreate,
  lruBind,
  lruCandidates,
  lruReserve,
  lruFlush,
  lruInsert,
  lruUpdate,
  lruRemove,
  lruPop,
  lruOrder,
  lruStale,
  lruExpired,
  lruClear,
  lruSizeOf,
  lruStats,
  lruOptions,
} = native.lruCacheFunctions()

// io layout, mirrored in src/js/lru_cache.rs.
const IO_LOG_N = 0
const IO_A = 1
const IO_B = 2
const IO_C = 3
const IO_D = 4
const IO_RET = 5
const IO_NVICT = 6
const IO_CALC = 7
const IO_NEXT_DEADLINE = 10
const IO_NOW = 11
const IO_SETS = 12
const IO_EVICTIONS = 13
const IO_EXPIRATIONS = 14
const IO_DELETES = 15
const IO_LEN = 16
const EXPIRED_BIT = 0x80000000
const REFRESH_BIT = 0x80000000 // in the access log: a TTL restart, not a read (src/cache.rs)
const SIZE_BIT = 0x40000000 // in the access log: the next word is the slot's new size (src/cache.rs)
const SIZE_WORD_MAX = 0xffffffff // the largest size a log word carries; larger ones cross
const LOG_LEN = 4096
const CANDIDATES = 64
const RESERVE_LEN = 64 // cells after the log that carry reserved slot ids
const REASON_EXPIRE = 1
const REASON_DELETE = 2

// lru-cache publishes on these channels; subscribers of lru-cache see us too.
const metrics = channel('lru-cache:metrics')
const tracing = tracingChannel('lru-cache')
const hasSubscribers = () => metrics.hasSubscribers || tracing.hasSubscribers

const defaultPerf =
  typeof performance === 'object' && performance && typeof performance.now === 'function'
    ? performance
    : Date

const warned = new Set()
/** lru-cache's warning: through process.emitWarning, or console.error where there is none. */
function emitWarning(msg, type, code, fn) {
  if (typeof process === 'object' && process && typeof process.emitWarning === 'function') {
    process.emitWarning(msg, type, code, fn)
  } else {
    console.error(`[${code}] ${type}: ${msg}`)
  }
}
const isPosInt = (n) => !!n && n === Math.floor(n) && n > 0 && isFinite(n)
const unref = (t) => {
  if (t && typeof t.unref === 'function') t.unref()
  return t
}

/** `v` as a number, throwing the engine's TypeError for a symbol or a bigint. */
const toNumber = (v) => v - 0

const sameValueZero = (a, b) => a === b || (a !== a && b !== b)

function flushTasks(disposed, disposeAfter) {
  let task
  while ((task = disposed.shift())) disposeAfter(...task)
}

let NamedLRUCache
function loadNamed() {
  NamedLRUCache ??= require('./lru-cache-named.js').NamedLRUCache
  return NamedLRUCache
}

class LRUCache {
  /** A named cache is an LRUCache too, though another class implements it. */
  static [Symbol.hasInstance](value) {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true
    return this === LRUCache && value instanceof loadNamed()
  }

  // options that are read-only after construction
  #max
  #maxSize
  #label
  #dispose
  #onInsert
  #disposeAfter
  #fetchMethod
  #memoMethod
  #perf
  #hasDispose
  #hasOnInsert
  #hasDisposeAfter
  #hasFetchMethod
  #disposed

  // JS values
  #keyMap = new Map()
  #keyList = []
  #valList = []

  // shared with Rust
  #h
  #io
  #log
  #logN = 0
  #out
  #cap = 0
  #starts
  #ttls
  #sizesTracked = false
  // With sizes: the size of the entry in each live slot, as JS last gave it
  // to Rust (so an add can check the fit of an evicting set without a call).
  #sizes = new Float64Array(0)
  #evictExpiredFirst = false
  #trackDeadlines = false

  // (Stamps are bytes, so the array stays small enough for the CPU cache; the
  // epoch wraps every 255 refills, clearing the stamps.)
  // Eviction without crossing (count-limited caches without size or deadline
  // tracking): Rust publishes the CANDIDATES least recently used slots; an
  // evicting set takes the first one not read since (a read stamps its slot
  // with the current epoch), reuses its slot and logs it as a move to the
  // tail, which is exactly what "evict the head, add at the tail" does to
  // the recency list.
  #stamp = new Uint8Array(0)
  #epoch = 1
  #candN = 0
  #candPos = 0
  // Adding without crossing (same caches, not full): Rust reserves up to 64
  // slot ids; an add takes one and logs it, and the replay links it.
  #resN = 0
  #resPos = 0
  #hits = 0
  #misses = 0
  #jsSets = 0
  #jsEvictions = 0

  // TTL helpers (lru-cache's ttlResolution: perf.now() read at most once per window)
  #cachedNow = 0
  #purgeTimer
  #purgeAt = Infinity

  ttl
  ttlResolution
  ttlAutopurge
  updateAgeOnGet
  updateAgeOnHas
  allowStale
  noDisposeOnSet
  noUpdateTTL
  maxEntrySize
  sizeCalculation
  noDeleteOnFetchRejection
  noDeleteOnStaleGet
  allowStaleOnFetchAbort
  allowStaleOnFetchRejection
  ignoreFetchAbort
  backgroundFetchSize

  get perf() {
    return this.#perf
  }
  get max() {
    return this.#max
  }
  get maxSize() {
    return this.#maxSize
  }
  get calculatedSize() {
    return this.#sizesTracked ? this.#io[IO_CALC] : 0
  }
  get size() {
    return this.#keyMap.size
  }
  get fetchMethod() {
    return this.#fetchMethod
  }
  get memoMethod() {
    return this.#memoMethod
  }
  get dispose() {
    return this.#dispose
  }
  get onInsert() {
    return this.#onInsert
  }
  get disposeAfter() {
    return this.#disposeAfter
  }
  /** bulkhead extension: the label naming this cache in metrics and traces (`options.label`, or undefined). */
  get label() {
    return this.#label
  }
  /** bulkhead extension: when room is needed, drop an expired entry before the LRU live one. */
  get evictExpiredFirst() {
    return this.#evictExpiredFirst
  }
  set evictExpiredFirst(on) {
    this.#evictExpiredFirst = !!on
    this.#trackDeadlines ||= this.#evictExpiredFirst
    this.#io[IO_A] = on ? 1 : 0
    lruOptions(this.#h)
  }

  constructor(options) {
    // `name` switches to the process-wide store (lib/lru-cache-named.js):
    // same API, entries in Rust memory shared by every worker_thread.
    if (options != null && typeof options === 'object' && options.name !== undefined) {
      return new (loadNamed())(options)
    }
    // lru-cache ignores options it does not know, and so does this class;
    // but `shards` is bulkhead's and means something only with `name`.
    if (options != null && typeof options === 'object' && options.shards !== undefined) {
      throw new BulkheadError(codes.INVALID_ARG, 'options.shards applies only to a named cache: set options.name too')
    }
    const {
      max = 0,
      ttl,
      ttlResolution = 1,
      ttlAutopurge,
      updateAgeOnGet,
      updateAgeOnHas,
      allowStale,
      dispose,
      onInsert,
      disposeAfter,
      noDisposeOnSet,
      noUpdateTTL,
      maxSize = 0,
      maxEntrySize = 0,
      sizeCalculation,
      fetchMethod,
      memoMethod,
      noDeleteOnFetchRejection,
      noDeleteOnStaleGet,
      allowStaleOnFetchRejection,
      allowStaleOnFetchAbort,
      ignoreFetchAbort,
      backgroundFetchSize = 1,
      perf,
      evictExpiredFirst,
      label,
    } = options
    // bulkhead extension (lru-cache has no `label`; it ignores unknown options).
    this.#label = checkLabel(label, undefined)
    this.backgroundFetchSize = backgroundFetchSize
    if (perf !== undefined && typeof perf?.now !== 'function') {
      throw new TypeError('perf option must have a now() method if specified')
    }
    this.#perf = perf ?? defaultPerf
    if (max !== 0 && !isPosInt(max)) {
      throw new TypeError('max option must be a nonnegative integer')
    }
    if (max > Number.MAX_SAFE_INTEGER) {
      throw new Error('invalid max value: ' + max)
    }
    this.#max = max
    this.#maxSize = maxSize
    this.maxEntrySize = maxEntrySize || this.#maxSize
    this.sizeCalculation = sizeCalculation
    if (this.sizeCalculation) {
      if (!this.#maxSize && !this.maxEntrySize) {
        throw new TypeError('cannot set sizeCalculation without setting maxSize or maxEntrySize')
      }
      if (typeof this.sizeCalculation !== 'function') {
        throw new TypeError('sizeCalculation set to non-function')
      }
    }
    if (memoMethod !== undefined && typeof memoMethod !== 'function') {
      throw new TypeError('memoMethod must be a function if defined')
    }
    this.#memoMethod = memoMethod
    if (fetchMethod !== undefined && typeof fetchMethod !== 'function') {
      throw new TypeError('fetchMethod must be a function if specified')
    }
    this.#fetchMethod = fetchMethod
    this.#hasFetchMethod = !!fetchMethod
    if (typeof dispose === 'function') this.#dispose = dispose
    if (typeof onInsert === 'function') this.#onInsert = onInsert
    if (typeof disposeAfter === 'function') {
      this.#disposeAfter = disposeAfter
      this.#disposed = []
    } else {
      this.#disposeAfter = undefined
      this.#disposed = undefined
    }
    this.#hasDispose = !!this.#dispose
    this.#hasOnInsert = !!this.#onInsert
    this.#hasDisposeAfter = !!this.#disposeAfter
    this.noDisposeOnSet = !!noDisposeOnSet
    this.noUpdateTTL = !!noUpdateTTL
    this.noDeleteOnFetchRejection = !!noDeleteOnFetchRejection
    this.allowStaleOnFetchRejection = !!allowStaleOnFetchRejection
    this.allowStaleOnFetchAbort = !!allowStaleOnFetchAbort
    this.ignoreFetchAbort = !!ignoreFetchAbort
    if (this.maxEntrySize !== 0) {
      if (this.#maxSize !== 0 && !isPosInt(this.#maxSize)) {
        throw new TypeError('maxSize must be a positive integer if specified')
      }
      if (!isPosInt(this.maxEntrySize)) {
        throw new TypeError('maxEntrySize must be a positive integer if specified')
      }
      this.#sizesTracked = true
    }
    this.allowStale = !!allowStale
    this.noDeleteOnStaleGet = !!noDeleteOnStaleGet
    this.updateAgeOnGet = !!updateAgeOnGet
    this.updateAgeOnHas = !!updateAgeOnHas
    this.ttlResolution = isPosInt(ttlResolution) || ttlResolution === 0 ? ttlResolution : 1
    this.ttlAutopurge = !!ttlAutopurge
    this.ttl = ttl || 0
    if (this.ttl && !isPosInt(this.ttl)) {
      throw new TypeError('ttl must be a positive integer if specified')
    }
    if (this.#max === 0 && this.ttl === 0 && this.#maxSize === 0) {
      throw new TypeError('At least one of max, maxSize, or ttl is required')
    }
    this.#evictExpiredFirst = !!evictExpiredFirst
    this.#io = new Float64Array(new ArrayBuffer(IO_LEN * 8))
    this.#log = new Uint32Array(new ArrayBuffer((LOG_LEN + RESERVE_LEN) * 4))
    this.#trackDeadlines = this.ttlAutopurge || this.#evictExpiredFirst
    const flags = (this.#trackDeadlines ? 1 : 0) | (this.#evictExpiredFirst ? 2 : 0)
    this.#h = lruCreate(this.#io.buffer, this.#log.buffer, this.#max, this.#sizesTracked ? this.#maxSize : 0, flags)
    if (this.ttl) this.#initializeTTLTracking()
    if (!this.ttlAutopurge && !this.#max && !this.#maxSize) {
      const code = 'LRU_CACHE_UNBOUNDED'
      if (!warned.has(code)) {
        warned.add(code)
        const msg =
          'TTL caching without ttlAutopurge, max, or maxSize can ' + 'result in unbounded memory consumption.'
        emitWarning(msg, 'UnboundedCacheWarning', code, LRUCache)
      }
    }
    track(this, 'cache') // the metrics registry (lib/instances.js), weakly
  }

  // ---- shared memory ------------------------------------------------------

  #bind() {
    lruBind(this.#h, this.#out?.buffer, this.#starts?.buffer, this.#ttls?.buffer)
  }

  /** Makes room in the per-slot columns for one more entry (grows by doubling). */
  #grow() {
    let cap = this.#cap === 0 ? 16 : this.#cap * 2
    if (this.#max) cap = Math.min(cap, this.#max)
    if (cap <= this.#cap) return false
    this.#out = new Uint32Array(new ArrayBuffer(cap * 4))
    const stamp = new Uint8Array(cap)
    stamp.set(this.#stamp)
    this.#stamp = stamp
    if (this.#sizesTracked) {
      const sizes = new Float64Array(cap)
      sizes.set(this.#sizes)
      this.#sizes = sizes
    }
    this.#candN = 0
    if (this.#starts) {
      const starts = new Float64Array(new ArrayBuffer(cap * 8))
      const ttls = new Float64Array(new ArrayBuffer(cap * 8))
      starts.set(this.#starts)
      ttls.set(this.#ttls)
      this.#starts = starts
      this.#ttls = ttls
    }
    for (let i = this.#keyList.length; i < cap; i++) {
      this.#keyList.push(undefined)
      this.#valList.push(undefined)
    }
    this.#cap = cap
    this.#bind()
    return true
  }

  #initializeTTLTracking() {
    this.#starts = new Float64Array(new ArrayBuffer(Math.max(this.#cap, 1) * 8))
    this.#ttls = new Float64Array(new ArrayBuffer(Math.max(this.#cap, 1) * 8))
    this.#bind()
  }

  /** Replays the access log (the call itself does it). */
  #flush() {
    this.#pre()
    lruFlush(this.#h)
  }

  /** Records a read of `index`: it becomes the most recently used. */
  #moveToTail(index) {
    this.#stamp[index] = this.#epoch
    const n = this.#logN
    this.#log[n] = index
    this.#logN = n + 1
    if (n + 1 === LOG_LEN) this.#flush()
  }

  /**
   * Before a native call: hand the access log over, and drop the eviction
   * candidates and the reserved slots (every call replays the log and takes
   * back unused reservations).
   */
  #pre() {
    this.#io[IO_LOG_N] = this.#logN
    this.#logN = 0
    this.#candN = 0
    this.#resN = 0
    return this.#io
  }

  /**
   * Records, without a call, that slot `index` (just logged as used) now
   * holds an entry of `size` in place of one of `old`: the mirror, the total
   * in io (Rust recomputes it from the log at the next call) and a size word
   * pair in the log.
   */
  #logSize(index, size, old) {
    this.#sizes[index] = size
    this.#io[IO_CALC] += size - old
    let n = this.#logN
    if (n + 2 > LOG_LEN) {
      this.#flush()
      n = 0
    }
    this.#log[n] = index | SIZE_BIT
    this.#log[n + 1] = size
    this.#logN = n + 2
    if (n + 2 === LOG_LEN) this.#flush()
  }

  /**
   * The slot an add of `size` takes from the least recently used entry
   * without crossing, or -1 when it cannot: in a cache with sizes, when the
   * new entry would need more room than that one entry frees.
   */
  #victimFor(size) {
    const slot = this.#nextVictim()
    if (!this.#sizesTracked) return slot
    if (size > SIZE_WORD_MAX || (this.#maxSize !== 0 && this.#io[IO_CALC] - this.#sizes[slot] + size > this.#maxSize)) {
      this.#candPos-- // not taken: still the next candidate
      return -1
    }
    return slot
  }

  /** Whether an add of `size` fits a cache with sizes without evicting (so it needs no call). */
  #fits(size) {
    return size <= SIZE_WORD_MAX && (this.#maxSize === 0 || this.#io[IO_CALC] + size <= this.#maxSize)
  }

  /** A slot id for an add without crossing (see #resN), or -1. */
  #takeReserved() {
    if (this.#resPos < this.#resN) return this.#log[LOG_LEN + this.#resPos++]
    for (;;) {
      const io = this.#pre()
      io[IO_A] = this.#cap
      lruReserve(this.#h)
      this.#resN = io[IO_RET]
      this.#resPos = 0
      if (this.#resN > 0) return this.#log[LOG_LEN + this.#resPos++]
      // no room below the count limit: a hook re-entered mid-add; cross instead
      if (!this.#grow()) return -1
    }
  }

  /** The least recently used slot, from the published candidates (see #stamp). */
  #nextVictim() {
    for (;;) {
      const out = this.#out
      const stamp = this.#stamp
      const epoch = this.#epoch
      while (this.#candPos < this.#candN) {
        const slot = out[this.#candPos++]
        if (stamp[slot] !== epoch) return slot
      }
      const io = this.#pre()
      io[IO_A] = CANDIDATES
      lruCandidates(this.#h)
      this.#candN = io[IO_RET]
      this.#candPos = 0
      if (++this.#epoch === 0x100) {
        this.#stamp.fill(0)
        this.#epoch = 1
      }
    }
  }

  /** Slots in recency order, as an array (a snapshot). */
  #order(mruFirst) {
    if (this.#keyMap.size === 0) return []
    const io = this.#pre()
    io[IO_A] = mruFirst ? 1 : 0
    lruOrder(this.#h)
    const n = io[IO_RET]
    const out = this.#out
    const slots = new Array(n)
    for (let i = 0; i < n; i++) slots[i] = out[i]
    return slots
  }

  // ---- TTL ----------------------------------------------------------------

  #getNow() {
    const n = this.#perf.now()
    if (this.ttlResolution > 0) {
      this.#cachedNow = n
      unref(setTimeout(() => (this.#cachedNow = 0), this.ttlResolution))
    }
    return n
  }

  #isStale(index) {
    const ttls = this.#ttls
    if (ttls === undefined) return false
    const t = ttls[index]
    if (!t) return false
    const s = this.#starts[index]
    return !!s && (this.#cachedNow || this.#getNow()) - s > t
  }

  #remainingTTL(index) {
    const ttl = this.#ttls[index]
    const start = this.#starts[index]
    if (!ttl || !start) return Infinity
    return ttl - ((this.#cachedNow || this.#getNow()) - start)
  }

  #updateItemAge(index) {
    const ttls = this.#ttls
    if (ttls === undefined) return
    this.#starts[index] = ttls[index] !== 0 ? this.#perf.now() : 0
    if (this.#trackDeadlines) {
      // Re-armed at this point of the access log, so equal deadlines expire
      // in the order they were armed (as lru-cache's per-entry timers do).
      const n = this.#logN
      this.#log[n] = index | REFRESH_BIT
      this.#logN = n + 1
      if (n + 1 === LOG_LEN) this.#flush()
    }
  }

  #statusTTL(status, index) {
    const ttls = this.#ttls
    if (ttls === undefined || !ttls[index]) return
    const ttl = ttls[index]
    const start = this.#starts[index]
    if (!ttl || !start) return
    status.ttl = ttl
    status.start = start
    status.now = this.#cachedNow || this.#getNow()
    status.remainingTTL = ttl - (status.now - start)
  }

  /** The one auto-purge timer: armed for the earliest deadline Rust knows. */
  #armPurge(deadline) {
    if (!this.ttlAutopurge || !deadline || deadline >= this.#purgeAt) return
    if (this.#purgeTimer) clearTimeout(this.#purgeTimer)
    this.#purgeAt = deadline
    // Capped: setTimeout turns a delay beyond 2^31-1 ms into 1 ms (a huge
    // ttl would then spin); a far deadline is reached in steps.
    const delay = Math.min(2 ** 31 - 1, Math.max(0, deadline - this.#perf.now()) + 1)
    this.#purgeTimer = unref(setTimeout(() => this.#autopurge(), delay))
  }

  #autopurge() {
    this.#purgeTimer = undefined
    this.#purgeAt = Infinity
    const io = this.#pre()
    const now = this.#perf.now()
    io[IO_NOW] = now
    lruExpired(this.#h)
    const keys = this.#slotKeys(io[IO_RET])
    const next = io[IO_NEXT_DEADLINE]
    for (const k of keys) {
      // (a hook run by an earlier removal may have replaced or refreshed it;
      // either re-armed it, so skipping it here loses no deadline)
      const index = this.#keyMap.get(k)
      if (index === undefined) continue
      const ttl = this.#ttls[index]
      const start = this.#starts[index]
      if (ttl && start && now - start > ttl) this.#delete(k, 'expire')
    }
    this.#armPurge(next)
  }

  #slotKeys(n) {
    const out = this.#out
    const keys = new Array(n)
    for (let i = 0; i < n; i++) keys[i] = this.#keyList[out[i]]
    return keys
  }

  getRemainingTTL(key) {
    const index = this.#keyMap.get(key)
    if (index === undefined) return 0
    if (this.#ttls === undefined) return Infinity
    return this.#remainingTTL(index)
  }

  // ---- sizes --------------------------------------------------------------

  #requireSize(k, v, size, sizeCalculation) {
    if (!this.#sizesTracked) {
      if (size || sizeCalculation) {
        throw new TypeError('cannot set size without setting maxSize or maxEntrySize on cache')
      }
      return 0
    }
    if (!isPosInt(size)) {
      if (this.#isBackgroundFetch(v)) return this.backgroundFetchSize
      if (sizeCalculation) {
        if (typeof sizeCalculation !== 'function') {
          throw new TypeError('sizeCalculation must be a function')
        }
        size = sizeCalculation(v, k)
        if (!isPosInt(size)) {
          throw new TypeError('sizeCalculation return invalid (expect positive integer)')
        }
      } else {
        throw new TypeError(
          'invalid size value (must be positive integer). ' +
            'When maxSize or maxEntrySize is used, sizeCalculation ' +
            'or size must be set.',
        )
      }
    }
    return size
  }

  #sizeOf(index) {
    this.#pre()
    this.#io[IO_A] = index
    lruSizeOf(this.#h)
    return this.#io[IO_RET]
  }

  // ---- iteration ----------------------------------------------------------

  #isValidIndex(index) {
    return index !== undefined && this.#keyMap.get(this.#keyList[index]) === index
  }

  *#indexes({ allowStale = this.allowStale } = {}) {
    for (const i of this.#order(true)) {
      if (this.#isValidIndex(i) && (allowStale || !this.#isStale(i))) yield i
    }
  }

  *#rindexes({ allowStale = this.allowStale } = {}) {
    for (const i of this.#order(false)) {
      if (this.#isValidIndex(i) && (allowStale || !this.#isStale(i))) yield i
    }
  }

  *entries() {
    for (const i of this.#indexes()) {
      const v = this.#valList[i]
      const k = this.#keyList[i]
      if (v !== undefined && k !== undefined && !this.#isBackgroundFetch(v)) yield [k, v]
    }
  }

  *rentries() {
    for (const i of this.#rindexes()) {
      const v = this.#valList[i]
      const k = this.#keyList[i]
      if (v !== undefined && k !== undefined && !this.#isBackgroundFetch(v)) yield [k, v]
    }
  }

  *keys() {
    for (const i of this.#indexes()) {
      const k = this.#keyList[i]
      if (k !== undefined && !this.#isBackgroundFetch(this.#valList[i])) yield k
    }
  }

  *rkeys() {
    for (const i of this.#rindexes()) {
      const k = this.#keyList[i]
      if (k !== undefined && !this.#isBackgroundFetch(this.#valList[i])) yield k
    }
  }

  *values() {
    for (const i of this.#indexes()) {
      const v = this.#valList[i]
      if (v !== undefined && !this.#isBackgroundFetch(v)) yield v
    }
  }

  *rvalues() {
    for (const i of this.#rindexes()) {
      const v = this.#valList[i]
      if (v !== undefined && !this.#isBackgroundFetch(v)) yield v
    }
  }

  [Symbol.iterator]() {
    return this.entries()
  }

  [Symbol.toStringTag] = 'LRUCache'

  #visible(i) {
    const v = this.#valList[i]
    return this.#isBackgroundFetch(v) ? v.__staleWhileFetching : v
  }

  find(fn, getOptions = {}) {
    for (const i of this.#indexes()) {
      const value = this.#visible(i)
      if (value === undefined) continue
      if (fn(value, this.#keyList[i], this)) return this.#get(this.#keyList[i], getOptions)
    }
  }

  forEach(fn, thisp = this) {
    for (const i of this.#indexes()) {
      const value = this.#visible(i)
      if (value === undefined) continue
      fn.call(thisp, value, this.#keyList[i], this)
    }
  }

  rforEach(fn, thisp = this) {
    for (const i of this.#rindexes()) {
      const value = this.#visible(i)
      if (value === undefined) continue
      fn.call(thisp, value, this.#keyList[i], this)
    }
  }

  purgeStale() {
    if (this.#ttls === undefined || this.#keyMap.size === 0) return false
    const io = this.#pre()
    io[IO_NOW] = this.#cachedNow || this.#getNow()
    lruStale(this.#h)
    const slots = []
    for (let i = 0; i < io[IO_RET]; i++) slots.push(this.#out[i])
    let deleted = false
    for (const i of slots) {
      if (this.#isValidIndex(i) && this.#isStale(i)) {
        this.#delete(this.#keyList[i], 'expire')
        deleted = true
      }
    }
    return deleted
  }

  info(key) {
    const i = this.#keyMap.get(key)
    if (i === undefined) return undefined
    const value = this.#visible(i)
    if (value === undefined) return undefined
    const entry = { value }
    if (this.#ttls) {
      const ttl = this.#ttls[i]
      const start = this.#starts[i]
      if (ttl && start) {
        entry.ttl = ttl - (this.#perf.now() - start)
        entry.start = Date.now()
      }
    }
    if (this.#sizesTracked) entry.size = this.#sizeOf(i)
    return entry
  }

  dump() {
    const arr = []
    for (const i of this.#indexes({ allowStale: true })) {
      const key = this.#keyList[i]
      const value = this.#visible(i)
      if (value === undefined || key === undefined) continue
      const entry = { value }
      if (this.#ttls) {
        entry.ttl = this.#ttls[i]
        const age = this.#perf.now() - this.#starts[i]
        entry.start = Math.floor(Date.now() - age)
      }
      if (this.#sizesTracked) entry.size = this.#sizeOf(i)
      arr.push([key, entry])
    }
    return arr.reverse()
  }

  load(arr) {
    this.clear()
    for (const [key, entry] of arr) {
      if (entry.start) {
        const age = Date.now() - entry.start
        entry.start = this.#perf.now() - age
      }
      this.#set(key, entry.value, entry)
    }
  }

  // ---- set ----------------------------------------------------------------

  set(k, v, setOptions = {}) {
    const { status = metrics.hasSubscribers ? {} : undefined } = setOptions
    setOptions.status = status
    if (status) {
      status.op = 'set'
      status.key = k
      if (v !== undefined) status.value = v
      status.cache = this
    }
    const result = this.#set(k, v, setOptions)
    if (status && metrics.hasSubscribers) metrics.publish(status)
    return result
  }

  /**
   * Takes the victims Rust published (before any hook can re-enter) and
   * unmaps them; returns their hook tasks, or undefined when there are none
   * to run.
   */
  #takeVictims(reuse) {
    const n = this.#io[IO_NVICT]
    if (n === 0) return undefined
    const out = this.#out
    // Without hooks nothing can see a victim or re-enter: no task list, so
    // the caller maps the new key at once (no #adopt).
    const tasks = this.#victimHooks() ? [] : undefined
    for (let j = 0; j < n; j++) {
      const word = out[j]
      const i = word & ~EXPIRED_BIT
      const k = this.#keyList[i]
      const v = this.#valList[i]
      this.#keyMap.delete(k)
      if (i !== reuse) {
        this.#keyList[i] = undefined
        this.#valList[i] = undefined
      }
      if (tasks !== undefined) tasks.push(k, v, word & EXPIRED_BIT ? 'expire' : 'evict')
    }
    return tasks
  }

  /** The status fields of an add made without crossing (as the crossing path sets them). */
  #statusAdd(status, size) {
    if (this.#sizesTracked) {
      status.entrySize = size
      status.totalCalculatedSize = this.#io[IO_CALC]
    }
    status.set = 'add'
  }

  /** Whether an evicted entry has hooks to run (dispose, disposeAfter, or a background fetch to abort). */
  #victimHooks() {
    return this.#hasDispose || this.#hasDisposeAfter || this.#hasFetchMethod
  }

  /** Runs the hooks of victims taken by #takeVictims, in order. */
  #disposeVictims(tasks, from = 0) {
    for (let j = from; j < tasks.length; j += 3) this.#disposeOne(tasks[j], tasks[j + 1], tasks[j + 2])
  }

  /**
   * Maps `k` to the slot it was just written to, after a victim's hooks ran.
   * Re-entrant hooks may have evicted that entry already (its slot then holds
   * something else) or set `k` elsewhere (ours then yields): returns whether
   * the entry is in the cache.
   */
  #adopt(k, v, index) {
    const ours = sameValueZero(this.#keyList[index], k) && sameValueZero(this.#valList[index], v)
    if (ours && !this.#keyMap.has(k)) {
      this.#keyMap.set(k, index)
      return true
    }
    if (ours) {
      const io = this.#pre()
      io[IO_A] = index
      io[IO_B] = REASON_DELETE
      lruRemove(this.#h)
      this.#keyList[index] = undefined
      this.#valList[index] = undefined
    }
    return false
  }

  /** The hooks of one evicted (or expired) entry: abort its fetch, dispose its value. */
  #disposeOne(k, v, reason) {
    const isBF = this.#isBackgroundFetch(v)
    if (isBF) v.__abortController.abort(new Error('evicted'))
    const oldValue = isBF ? v.__staleWhileFetching : v
    if (oldValue !== undefined) {
      if (this.#hasDispose) this.#dispose(oldValue, k, reason)
      if (this.#hasDisposeAfter) this.#disposed.push([oldValue, k, reason])
    }
  }

  #set(k, v, setOptions, bf) {
    const {
      ttl = this.ttl,
      start,
      noDisposeOnSet = this.noDisposeOnSet,
      sizeCalculation = this.sizeCalculation,
      status,
    } = setOptions
    // A ttl or start that can never be a number (a symbol, a bigint) throws
    // the conversion's TypeError here, before any state changes (lru-cache
    // throws it halfway through its set; ours would leave a half-made entry).
    if (typeof ttl !== 'number') toNumber(ttl)
    if (start !== undefined && ttl !== 0 && typeof start !== 'number') toNumber(start) // (unused without a ttl)
    const isBF = this.#isBackgroundFetch(v)
    if (v === undefined) {
      if (status) status.set = 'deleted'
      this.delete(k)
      return this
    }
    let { noUpdateTTL = this.noUpdateTTL } = setOptions
    if (status && !isBF) status.value = v
    const size = this.#requireSize(k, v, setOptions.size || 0, sizeCalculation)
    if (this.maxEntrySize && size > this.maxEntrySize) {
      this.#delete(k, 'set')
      if (status) {
        status.set = 'miss'
        status.maxEntrySizeExceeded = true
      }
      return this
    }
    if (ttl !== 0 && !this.#ttls) this.#initializeTTLTracking()
    const ttls = this.#ttls
    const io = this.#io
    let index = this.#keyMap.size === 0 ? undefined : this.#keyMap.get(k)
    let deadline = 0
    let reserved
    let victim
    if (
      index === undefined &&
      this.#keyMap.size === this.#max &&
      this.#max !== 0 &&
      !this.#trackDeadlines &&
      (victim = this.#victimFor(size)) >= 0
    ) {
      // addition that evicts, without crossing (see #nextVictim, #victimFor)
      index = victim
      const oldK = this.#keyList[index]
      const oldV = this.#valList[index]
      this.#keyMap.delete(oldK)
      this.#keyList[index] = k
      this.#valList[index] = v
      this.#moveToTail(index)
      if (this.#sizesTracked) this.#logSize(index, size, this.#sizes[index])
      this.#jsSets++
      this.#jsEvictions++
      if (ttls !== undefined) {
        ttls[index] = ttl
        const begin = start === undefined ? this.#perf.now() : start
        this.#starts[index] = ttl !== 0 ? begin : 0
      }
      if (this.#victimHooks()) {
        // as in lru-cache, the victim's hooks run before the new key is visible
        // (the slot is already the most recently used, so a hook that
        // re-enters evicts others; it moves again after whatever the hook read)
        this.#disposeOne(oldK, oldV, 'evict')
        if (this.#adopt(k, v, index)) this.#moveToTail(index)
      } else {
        this.#keyMap.set(k, index)
      }
      if (status) this.#statusAdd(status, size)
      noUpdateTTL = false
      if (this.#hasOnInsert && !isBF) this.#onInsert(v, k, 'add')
    } else if (
      index === undefined &&
      !this.#trackDeadlines &&
      (!this.#sizesTracked || this.#fits(size)) &&
      (reserved = this.#takeReserved()) >= 0
    ) {
      // addition with room, without crossing (see #takeReserved)
      index = reserved
      this.#keyList[index] = k
      this.#valList[index] = v
      this.#keyMap.set(k, index)
      this.#moveToTail(index)
      if (this.#sizesTracked) this.#logSize(index, size, 0)
      const ttls = this.#ttls // (taking a slot may have grown the columns)
      if (ttls !== undefined) {
        ttls[index] = ttl
        const begin = start === undefined ? this.#perf.now() : start
        this.#starts[index] = ttl !== 0 ? begin : 0
      }
      if (status) this.#statusAdd(status, size)
      noUpdateTTL = false
      if (this.#hasOnInsert && !isBF) this.#onInsert(v, k, 'add')
    } else if (index === undefined) {
      // addition
      if (this.#keyMap.size >= this.#cap) this.#grow()
      this.#pre()
      io[IO_A] = size
      if (ttls !== undefined) {
        io[IO_B] = ttl
        io[IO_C] = start === undefined ? this.#perf.now() : start
        io[IO_NOW] = this.#evictExpiredFirst ? this.#cachedNow || this.#getNow() : 0
      } else {
        io[IO_B] = NaN
      }
      lruInsert(this.#h)
      index = io[IO_RET]
      if (this.#sizesTracked) this.#sizes[index] = size
      deadline = io[IO_NEXT_DEADLINE]
      const victims = this.#takeVictims(index)
      this.#keyList[index] = k
      this.#valList[index] = v
      if (victims === undefined) {
        this.#keyMap.set(k, index)
      } else if ((this.#out[0] & ~EXPIRED_BIT) === index) {
        // a count eviction (its slot is reused): its hooks run before the new
        // key is visible, those of size evictions after, as in lru-cache
        this.#disposeOne(victims[0], victims[1], victims[2])
        // after anything the hooks read, as in lru-cache
        if (this.#adopt(k, v, index)) this.#moveToTail(index)
        this.#disposeVictims(victims, 3)
      } else {
        this.#keyMap.set(k, index)
        this.#disposeVictims(victims)
      }
      if (status) {
        if (this.#sizesTracked) {
          status.entrySize = size
          status.totalCalculatedSize = io[IO_CALC]
        }
        status.set = 'add'
      }
      noUpdateTTL = false
      if (this.#hasOnInsert && !isBF) this.#onInsert(v, k, 'add')
    } else {
      // update (maybe of a background fetch)
      const oldVal = this.#valList[index]
      const resize = this.#sizesTracked && v !== oldVal
      let restart = ttls !== undefined && !noUpdateTTL
      if (restart && !resize && !this.#trackDeadlines) {
        // no deadline heap to keep: write the TTL columns here, no crossing
        ttls[index] = ttl
        const begin = start === undefined ? this.#perf.now() : start
        this.#starts[index] = ttl !== 0 ? begin : 0
        restart = false
        this.#jsSets++
      } else if (!resize && !restart) {
        this.#jsSets++
      }
      let victims
      if (resize || restart) {
        this.#pre()
        io[IO_A] = index
        io[IO_B] = resize ? size : NaN
        if (restart) {
          io[IO_C] = ttl
          io[IO_D] = start === undefined ? this.#perf.now() : start
          io[IO_NOW] = this.#evictExpiredFirst ? this.#cachedNow || this.#getNow() : 0
        } else {
          io[IO_C] = NaN
        }
        lruUpdate(this.#h)
        if (resize) this.#sizes[index] = size
        deadline = io[IO_NEXT_DEADLINE]
        victims = this.#takeVictims(-1)
      } else {
        this.#moveToTail(index)
      }
      if (v !== oldVal) {
        if (!noDisposeOnSet) {
          if (this.#isBackgroundFetch(oldVal)) {
            if (oldVal !== bf) oldVal.__abortController.abort(new Error('replaced'))
            const s = oldVal.__staleWhileFetching
            if (s !== undefined && s !== v) {
              if (this.#hasDispose) this.#dispose(s, k, 'set')
              if (this.#hasDisposeAfter) this.#disposed.push([s, k, 'set'])
            }
          } else {
            if (this.#hasDispose) this.#dispose(oldVal, k, 'set')
            if (this.#hasDisposeAfter) this.#disposed.push([oldVal, k, 'set'])
          }
        }
        if (victims !== undefined) this.#disposeVictims(victims)
        if (status && this.#sizesTracked) {
          status.entrySize = size
          status.totalCalculatedSize = io[IO_CALC]
        }
        this.#valList[index] = v
        if (!isBF) {
          const oldValue = oldVal && this.#isBackgroundFetch(oldVal) ? oldVal.__staleWhileFetching : oldVal
          const setType = oldValue === undefined ? 'add' : v !== oldValue ? 'replace' : 'update'
          if (status) {
            status.set = setType
            if (oldValue !== undefined) status.oldValue = oldValue
          }
          if (this.#hasOnInsert) this.#onInsert(v, k, setType)
        }
      } else {
        if (victims !== undefined) this.#disposeVictims(victims)
        if (!isBF) {
          if (status) status.set = 'update'
          if (this.#hasOnInsert) this.#onInsert(v, k, 'update')
        }
      }
    }
    if (this.#ttls !== undefined && status) this.#statusTTL(status, index)
    if (deadline) this.#armPurge(deadline)
    if (!noDisposeOnSet && this.#hasDisposeAfter) flushTasks(this.#disposed, this.#disposeAfter)
    return this
  }

  // ---- pop / has / peek ---------------------------------------------------

  pop() {
    try {
      while (this.#keyMap.size) {
        const io = this.#pre()
        lruPop(this.#h)
        const i = io[IO_RET]
        if (i < 0) break
        const k = this.#keyList[i]
        const val = this.#valList[i]
        this.#keyMap.delete(k)
        this.#keyList[i] = undefined
        this.#valList[i] = undefined
        this.#disposeOne(k, val, 'evict')
        if (this.#isBackgroundFetch(val)) {
          if (val.__staleWhileFetching) return val.__staleWhileFetching
        } else if (val !== undefined) {
          return val
        }
      }
    } finally {
      if (this.#hasDisposeAfter) flushTasks(this.#disposed, this.#disposeAfter)
    }
  }

  has(k, hasOptions = {}) {
    const { status = metrics.hasSubscribers ? {} : undefined } = hasOptions
    hasOptions.status = status
    if (status) {
      status.op = 'has'
      status.key = k
      status.cache = this
    }
    const result = this.#has(k, hasOptions)
    if (metrics.hasSubscribers) metrics.publish(status)
    return result
  }

  #has(k, hasOptions) {
    const { updateAgeOnHas = this.updateAgeOnHas, status } = hasOptions
    const index = this.#keyMap.get(k)
    if (index !== undefined) {
      if (this.#hasFetchMethod) {
        const v = this.#valList[index]
        if (this.#isBackgroundFetch(v) && v.__staleWhileFetching === undefined) return false
      }
      if (!this.#isStale(index)) {
        if (updateAgeOnHas) this.#updateItemAge(index)
        if (status) {
          status.has = 'hit'
          this.#statusTTL(status, index)
        }
        return true
      } else if (status) {
        status.has = 'stale'
        this.#statusTTL(status, index)
      }
    } else if (status) {
      status.has = 'miss'
    }
    return false
  }

  peek(k, peekOptions = {}) {
    const { status = hasSubscribers() ? {} : undefined } = peekOptions
    if (status) {
      status.op = 'peek'
      status.key = k
      status.cache = this
    }
    peekOptions.status = status
    const result = this.#peek(k, peekOptions)
    if (metrics.hasSubscribers) metrics.publish(status)
    return result
  }

  #peek(k, peekOptions) {
    const { status, allowStale = this.allowStale } = peekOptions
    const index = this.#keyMap.get(k)
    if (index === undefined || (!allowStale && this.#isStale(index))) {
      if (status) status.peek = index === undefined ? 'miss' : 'stale'
      return undefined
    }
    const val = this.#visible(index)
    if (status) {
      if (val !== undefined) {
        status.peek = 'hit'
        status.value = val
      } else {
        status.peek = 'miss'
      }
    }
    return val
  }

  // ---- fetch --------------------------------------------------------------

  #isBackgroundFetch(p) {
    return (
      this.#hasFetchMethod &&
      !!p &&
      p instanceof Promise &&
      Object.prototype.hasOwnProperty.call(p, '__staleWhileFetching') &&
      p.__abortController instanceof AbortController
    )
  }

  /**
   * Starts (or returns the running) background fetch of `k`. The promise is
   * stored in the value slot; its settlement writes the result back only if
   * that slot still holds this very promise.
   */
  #backgroundFetch(k, index, options, context) {
    const v = index === undefined ? undefined : this.#valList[index]
    if (this.#isBackgroundFetch(v)) return v
    const ac = new AbortController()
    const { signal } = options
    signal?.addEventListener('abort', () => ac.abort(signal.reason), { signal: ac.signal })
    const fetchOpts = { signal: ac.signal, options, context }
    const stillOurs = () => this.#valList[index] === bf

    const fail = (er, proceed) => {
      const aborted = ac.signal.aborted
      const allowStaleAborted = aborted && options.allowStaleOnFetchAbort
      const allowStale = allowStaleAborted || options.allowStaleOnFetchRejection
      const noDelete = allowStale || options.noDeleteOnFetchRejection
      if (stillOurs()) {
        if (!noDelete || (!proceed && bf.__staleWhileFetching === undefined)) {
          this.#delete(k, 'fetch')
        } else if (!allowStaleAborted) {
          this.#valList[index] = bf.__staleWhileFetching
        }
      }
      if (allowStale) {
        if (options.status && bf.__staleWhileFetching !== undefined) options.status.returnedStale = true
        return bf.__staleWhileFetching
      }
      if (bf.__returned === bf) throw er
    }

    const resolved = (value, updateCache = false) => {
      const aborted = ac.signal.aborted
      const ignoreAbort = options.ignoreFetchAbort && value !== undefined
      const proceed = options.ignoreFetchAbort || !!(options.allowStaleOnFetchAbort && value !== undefined)
      if (options.status) {
        if (aborted && !updateCache) {
          options.status.fetchAborted = true
          options.status.fetchError = ac.signal.reason
          if (ignoreAbort) options.status.fetchAbortIgnored = true
        } else {
          options.status.fetchResolved = true
        }
      }
      if (aborted && !ignoreAbort && !updateCache) return fail(ac.signal.reason, proceed)
      const current = this.#valList[index]
      if (current === bf || (current === undefined && ignoreAbort && updateCache)) {
        if (value === undefined) {
          if (bf.__staleWhileFetching !== undefined) this.#valList[index] = bf.__staleWhileFetching
          else this.#delete(k, 'fetch')
        } else {
          if (options.status) options.status.fetchUpdated = true
          this.#set(k, value, fetchOpts.options, bf)
        }
      }
      return value
    }

    const rejected = (er) => {
      if (options.status) {
        options.status.fetchRejected = true
        options.status.fetchError = er
      }
      return fail(er, false)
    }

    const run = (res, rej) => {
      const fmp = this.#fetchMethod?.(k, v, fetchOpts)
      ac.signal.addEventListener('abort', () => {
        if (!options.ignoreFetchAbort || options.allowStaleOnFetchAbort) {
          res(undefined)
          if (options.allowStaleOnFetchAbort) res = (value) => resolved(value, true)
        }
      })
      if (fmp && fmp instanceof Promise) {
        fmp.then((value) => res(value === undefined ? undefined : value), rej)
      } else if (fmp !== undefined) {
        res(fmp)
      }
    }

    if (options.status) options.status.fetchDispatched = true
    const p = new Promise(run).then(resolved, rejected)
    const bf = Object.assign(p, {
      __abortController: ac,
      __staleWhileFetching: v,
      __returned: undefined,
    })
    if (index === undefined) {
      this.#set(k, bf, { ...fetchOpts.options, status: undefined })
      index = this.#keyMap.get(k)
    } else {
      // not a use: the entry keeps its place, and its size stands in for the fetch
      this.#valList[index] = bf
    }
    return bf
  }

  fetch(k, fetchOptions = {}) {
    const traced = tracing.hasSubscribers
    const { status = hasSubscribers() ? {} : undefined } = fetchOptions
    fetchOptions.status = status
    if (status && fetchOptions.context) status.context = fetchOptions.context
    const p = this.#fetch(k, fetchOptions)
    if (status && traced) {
      status.trace = true
      tracing.tracePromise(() => p, status).catch(() => {})
    }
    return p
  }

  async #fetch(k, fetchOptions = {}) {
    const {
      allowStale = this.allowStale,
      updateAgeOnGet = this.updateAgeOnGet,
      noDeleteOnStaleGet = this.noDeleteOnStaleGet,
      ttl = this.ttl,
      noDisposeOnSet = this.noDisposeOnSet,
      size = 0,
      sizeCalculation = this.sizeCalculation,
      noUpdateTTL = this.noUpdateTTL,
      noDeleteOnFetchRejection = this.noDeleteOnFetchRejection,
      allowStaleOnFetchRejection = this.allowStaleOnFetchRejection,
      ignoreFetchAbort = this.ignoreFetchAbort,
      allowStaleOnFetchAbort = this.allowStaleOnFetchAbort,
      context,
      forceRefresh = false,
      status,
      signal,
    } = fetchOptions
    if (status) {
      status.op = 'fetch'
      status.key = k
      if (forceRefresh) status.forceRefresh = true
      status.cache = this
    }
    if (!this.#hasFetchMethod) {
      if (status) status.fetch = 'get'
      return this.#get(k, { allowStale, updateAgeOnGet, noDeleteOnStaleGet, status })
    }
    const options = {
      allowStale,
      updateAgeOnGet,
      noDeleteOnStaleGet,
      ttl,
      noDisposeOnSet,
      size,
      sizeCalculation,
      noUpdateTTL,
      noDeleteOnFetchRejection,
      allowStaleOnFetchRejection,
      allowStaleOnFetchAbort,
      ignoreFetchAbort,
      status,
      signal,
    }
    const index = this.#keyMap.get(k)
    if (index === undefined) {
      if (status) status.fetch = 'miss'
      this.#misses++
      const p = this.#backgroundFetch(k, index, options, context)
      return (p.__returned = p)
    }
    const v = this.#valList[index]
    if (this.#isBackgroundFetch(v)) {
      const stale = allowStale && v.__staleWhileFetching !== undefined
      if (status) {
        status.fetch = 'inflight'
        if (stale) status.returnedStale = true
      }
      return stale ? v.__staleWhileFetching : (v.__returned = v)
    }
    const isStale = this.#isStale(index)
    if (!forceRefresh && !isStale) {
      if (status) status.fetch = 'hit'
      this.#hits++
      this.#moveToTail(index)
      if (updateAgeOnGet) this.#updateItemAge(index)
      if (status) this.#statusTTL(status, index)
      return v
    }
    this.#misses++
    const p = this.#backgroundFetch(k, index, options, context)
    const staleVal = p.__staleWhileFetching !== undefined && allowStale
    if (status) {
      status.fetch = isStale ? 'stale' : 'refresh'
      if (staleVal && isStale) status.returnedStale = true
    }
    return staleVal ? p.__staleWhileFetching : (p.__returned = p)
  }

  forceFetch(k, fetchOptions = {}) {
    const traced = tracing.hasSubscribers
    const { status = hasSubscribers() ? {} : undefined } = fetchOptions
    fetchOptions.status = status
    if (status && fetchOptions.context) status.context = fetchOptions.context
    const p = this.#forceFetch(k, fetchOptions)
    if (status && traced) {
      status.trace = true
      tracing.tracePromise(() => p, status).catch(() => {})
    }
    return p
  }

  async #forceFetch(k, fetchOptions) {
    const v = await this.#fetch(k, fetchOptions)
    if (v === undefined) throw new Error('fetch() returned undefined')
    return v
  }

  memo(k, memoOptions = {}) {
    const { status = metrics.hasSubscribers ? {} : undefined } = memoOptions
    memoOptions.status = status
    if (status) {
      status.op = 'memo'
      status.key = k
      if (memoOptions.context) status.context = memoOptions.context
      status.cache = this
    }
    const result = this.#memo(k, memoOptions)
    if (status) status.value = result
    if (metrics.hasSubscribers) metrics.publish(status)
    return result
  }

  #memo(k, memoOptions) {
    const memoMethod = this.#memoMethod
    if (!memoMethod) throw new Error('no memoMethod provided to constructor')
    const { context, status, forceRefresh, ...options } = memoOptions
    if (status && forceRefresh) status.forceRefresh = true
    const v = this.#get(k, options)
    const refresh = forceRefresh || v === undefined
    if (status) {
      status.memo = refresh ? 'miss' : 'hit'
      if (!refresh) status.value = v
    }
    if (!refresh) return v
    const vv = memoMethod(k, v, { options, context })
    if (status) status.value = vv
    this.#set(k, vv, options)
    return vv
  }

  // ---- get ----------------------------------------------------------------

  get(k, getOptions = {}) {
    const { status = metrics.hasSubscribers ? {} : undefined } = getOptions
    getOptions.status = status
    if (status) {
      status.op = 'get'
      status.key = k
      status.cache = this
    }
    const result = this.#get(k, getOptions)
    if (status) {
      if (result !== undefined) status.value = result
      if (metrics.hasSubscribers) metrics.publish(status)
    }
    return result
  }

  #get(k, getOptions) {
    const {
      allowStale = this.allowStale,
      updateAgeOnGet = this.updateAgeOnGet,
      noDeleteOnStaleGet = this.noDeleteOnStaleGet,
      status,
    } = getOptions
    const index = this.#keyMap.get(k)
    if (index === undefined) {
      if (status) status.get = 'miss'
      this.#misses++
      return undefined
    }
    const value = this.#valList[index]
    const fetching = this.#isBackgroundFetch(value)
    if (status) this.#statusTTL(status, index)
    if (this.#isStale(index)) {
      this.#misses++
      if (!fetching) {
        if (!noDeleteOnStaleGet) this.#delete(k, 'expire')
        if (status) status.get = 'stale'
        if (allowStale) {
          if (status) status.returnedStale = true
          return value
        }
        return undefined
      }
      if (status) status.get = 'stale-fetching'
      if (allowStale && value.__staleWhileFetching !== undefined) {
        if (status) status.returnedStale = true
        return value.__staleWhileFetching
      }
      return undefined
    }
    if (status) status.get = fetching ? 'fetching' : 'hit'
    this.#hits++
    this.#moveToTail(index)
    if (updateAgeOnGet) this.#updateItemAge(index)
    return fetching ? value.__staleWhileFetching : value
  }

  // ---- delete / clear -----------------------------------------------------

  delete(k) {
    return this.#delete(k, 'delete')
  }

  #delete(k, reason) {
    if (metrics.hasSubscribers) metrics.publish({ op: 'delete', delete: reason, key: k, cache: this })
    let deleted = false
    if (this.#keyMap.size !== 0) {
      const index = this.#keyMap.get(k)
      if (index !== undefined) {
        deleted = true
        const v = this.#valList[index]
        // lru-cache clears the whole cache when deleting its last entry, and
        // then reports the stored key (it differs from `k` only for 0 / -0).
        if (this.#keyMap.size === 1) k = this.#keyList[index]
        const io = this.#pre()
        io[IO_A] = index
        io[IO_B] = reason === 'expire' ? REASON_EXPIRE : REASON_DELETE
        lruRemove(this.#h)
        this.#keyMap.delete(k)
        this.#keyList[index] = undefined
        this.#valList[index] = undefined
        if (this.#isBackgroundFetch(v)) {
          v.__abortController.abort(new Error('deleted'))
        } else {
          if (this.#hasDispose) this.#dispose(v, k, reason)
          if (this.#hasDisposeAfter) this.#disposed.push([v, k, reason])
        }
      }
    }
    if (this.#hasDisposeAfter && this.#disposed.length) {
      flushTasks(this.#disposed, this.#disposeAfter)
    }
    return deleted
  }

  clear() {
    return this.#clear('delete')
  }

  #clear(reason) {
    // As in lru-cache, the hooks run (least recently used first) while the
    // entries are still there; whatever they add is cleared with the rest.
    for (const index of this.#rindexes({ allowStale: true })) {
      const v = this.#valList[index]
      if (this.#isBackgroundFetch(v)) {
        v.__abortController.abort(new Error('deleted'))
      } else {
        const k = this.#keyList[index]
        if (this.#hasDispose) this.#dispose(v, k, reason)
        if (this.#hasDisposeAfter) this.#disposed.push([v, k, reason])
      }
    }
    this.#pre()
    lruClear(this.#h)
    this.#keyMap.clear()
    this.#keyList.fill(undefined)
    this.#valList.fill(undefined)
    if (this.#ttls) {
      this.#ttls.fill(0)
      this.#starts.fill(0)
    }
    if (this.#purgeTimer) clearTimeout(this.#purgeTimer)
    this.#purgeTimer = undefined
    this.#purgeAt = Infinity
    this.#candN = 0
    if (this.#hasDisposeAfter) flushTasks(this.#disposed, this.#disposeAfter)
  }

  // ---- bulkhead extensions ------------------------------------------------

  /**
   * Aggregate counters since construction: `{ hits, misses, sets, evictions,
   * expirations, deletes, size, calculatedSize }`. Cheap: one native call.
   */
  stats() {
    const io = this.#pre()
    lruStats(this.#h)
    return {
      hits: this.#hits,
      misses: this.#misses,
      sets: io[IO_SETS] + this.#jsSets,
      evictions: io[IO_EVICTIONS] + this.#jsEvictions,
      expirations: io[IO_EXPIRATIONS],
      deletes: io[IO_DELETES],
      size: this.size,
      calculatedSize: this.calculatedSize,
    }
  }
}

module.exports = { LRUCache }
