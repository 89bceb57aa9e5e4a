'use strict'
// TieredCache: an in-process LRU (L1, a bulkhead LRUCache) in front of Redis
// (L2), kept coherent across instances by an invalidation bus, with loads
// deduplicated across the fleet by the distributed SingleFlight. See
// docs/tiered-cache.md for the consistency model.
//
// Keys, all under the hash tag `{name}` (one Cluster slot):
//   P:tiered:{name}:v:<key>         the value: "<grace>\n<write id>\n" + "v" + serialize(value)
//                                   (SingleFlight's encoding after the header),
//                                   PX = ttl + grace (it expires at the end of grace)
//   P:tiered:{name}:bus             pub/sub channel: "<token>:<seq>\nk<key>" (one key
//                                   changed) or "<token>:<seq>\nc" (cleared); the
//                                   writer's instance token lets it skip its own
//   P:tiered:flight:{name}:...      the loads' SingleFlight (lib/redis-single-flight.js)
// Time for L2 freshness is Redis's (PTTL), never a client clock: the fresh
// deadline is the key's expiry minus its grace.
//
// Coherence. Every write publishes the key; other instances drop it from L1.
// A value read from L2 (or loaded) is put in L1 only if no invalidation of
// its key and no bus reconnect happened while it was being read ("watches"),
// so a reply that raced a write never lands in L1. When the subscriber
// reports null (subscription confirmed, or reconnected: messages may have
// been missed) L1 is cleared: every entry older than that moment is dropped.
const { randomUUID } = require('node:crypto')
const { RedisClient, parseRedisOption } = require('./redis.js')
const { BulkheadError, codes, checkOptions, typeError } = require('./errors.js')
const { LRUCache } = require('./lru-cache.js')
const { SingleFlight } = require('./single-flight.js')
const { JSON_SERIALIZER, LEAD_WITH } = require('./redis-single-flight.js')
const { tieredCacheChannel, checkLabel } = require('./tracing.js')
const { track } = require('./instances.js')

const OPTIONS = new Set(['name', 'redis', 'max', 'maxSize', 'sizeCalculation', 'ttl', 'grace', 'l1Ttl',
  'fetchMethod', 'onRedisDown', 'serializer', 'label'])
const FETCH_OPTIONS = new Set(['fetchMethod', 'ttl', 'grace', 'signal', 'forceRefresh'])
const SET_OPTIONS = new Set(['ttl', 'grace'])

/** Default L1 bound (entries) when neither `max` nor `maxSize` is given. */
const DEFAULT_MAX = 10_000
/** How long Redis is left alone after a command failed (ms) before one call probes it again. */
const BREAKER_COOLDOWN = 1_000
/** Keys a `clear()` SCAN step asks for. */
const SCAN_COUNT = 1_000

// KEYS: value. {1, value, pttl} or {0}.
const GET = `
local v = redis.call('GET', KEYS[1])
if not v then return {0} end
return {1, v, redis.call('PTTL', KEYS[1])}
`
// KEYS: value. ARGV: value, px, channel, message.
const SET = `
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`
// KEYS: value. ARGV: channel, message.
const DEL = `
local n = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return n
`

function nonNegative(value, name) {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw typeError(`${name} must be a finite number of milliseconds >= 0`)
  }
  return value
}

function positive(value, name) {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 1) {
    throw typeError(`${name} must be a finite number of milliseconds >= 1`)
  }
  return Math.ceil(value)
}

function keyOf(key) {
  if (typeof key === 'string') return key
  if (typeof key === 'number' && Number.isFinite(key)) return String(key)
  throw typeError(`key must be a string or a finite number, got ${key === null ? 'null' : typeof key}`)
}

function unavailable(err) {
  return err?.code === codes.UNAVAILABLE
}

/** What a load resolves to inside the SingleFlight: the value and the id of its L2 write. */
function wrapSerializer(serializer) {
  return {
    serialize: (w) => (w.u ? 'u' : 'v') + (w.id ?? '') + '\n' + (w.u ? '' : serializer.serialize(w.v)),
    deserialize: (text) => {
      const i = text.indexOf('\n')
      const id = text.slice(1, i) || undefined
      return text[0] === 'u' ? { u: true, id } : { v: serializer.deserialize(text.slice(i + 1)), id }
    },
  }
}

/**
 * An in-process LRU in front of Redis, shared by every instance that opens
 * the same `name` on the same Redis. See docs/tiered-cache.md.
 */
class TieredCache {
  #name
  #label
  #client
  #flights // distributed SingleFlight of the loads
  #local // a SingleFlight of the loads while Redis is away (this process only)
  #l1
  #ttl
  #grace
  #l1Ttl
  #fetchMethod
  #onRedisDown
  #serializer
  #prefix
  #channel
  #token = randomUUID()
  #seq = 0
  #ids
  #subscription
  #confirmed = false
  #watches = new Map() // key -> Set(watch) of reads/loads/writes in progress
  #refreshing = new Set() // keys with a background refresh in progress here
  #breakerUntil = 0 // Redis is skipped until then (performance.now())
  #probing = false
  #closed = false
  #stats = {
    l1Hits: 0, l2Hits: 0, staleHits: 0, misses: 0, loads: 0, loadsJoinedLocally: 0,
    loadsJoinedRemote: 0, loadErrors: 0, staleIfError: 0, refreshes: 0, invalidationsSent: 0,
    invalidationsReceived: 0, busReconnects: 0, fallbacks: 0, rejectedWhileDown: 0,
  }

  /**
   * @param {object} options `{ name, redis, max, maxSize, sizeCalculation, ttl, grace, l1Ttl, fetchMethod, onRedisDown, serializer }`
   */
  constructor(options) {
    if (options === null || typeof options !== 'object') throw typeError('options must be an object')
    checkOptions(options, OPTIONS, 'new TieredCache() options')
    const {
      name, redis, max, maxSize, sizeCalculation, ttl, grace = 0, l1Ttl = ttl, fetchMethod,
      onRedisDown = 'local', serializer = JSON_SERIALIZER,
    } = options
    if (typeof name !== 'string' || name === '') throw typeError('options.name must be a non-empty string')
    if (redis === undefined) throw typeError('options.redis is required (a redis:// URL or { url, ... })')
    if (ttl === undefined) throw typeError('options.ttl is required: L2 entries always carry a TTL (ms)')
    this.#ttl = positive(ttl, 'options.ttl')
    this.#grace = Math.ceil(nonNegative(grace, 'options.grace'))
    this.#l1Ttl = positive(l1Ttl, 'options.l1Ttl')
    if (fetchMethod !== undefined && typeof fetchMethod !== 'function') {
      throw typeError('options.fetchMethod must be a function (key, staleValue, { signal }) => value')
    }
    if (onRedisDown !== 'local' && onRedisDown !== 'reject') {
      throw typeError("options.onRedisDown must be 'local' or 'reject'")
    }
    if (serializer === null || typeof serializer !== 'object' ||
      typeof serializer.serialize !== 'function' || typeof serializer.deserialize !== 'function') {
      throw typeError('options.serializer must be { serialize(value): string, deserialize(string) }')
    }
    if (sizeCalculation !== undefined && typeof sizeCalculation !== 'function') {
      throw typeError('options.sizeCalculation must be a function (value, key) => positive integer')
    }
    this.#fetchMethod = fetchMethod
    this.#onRedisDown = onRedisDown
    this.#serializer = serializer
    this.#name = name
    this.#label = checkLabel(options.label, name)
    // The inner cache and groups carry this cache's label, so in metrics
    // they are its series, not unlabelled ones merged with the user's.
    this.#local = new SingleFlight({ label: this.#label })
    const l1 = { label: this.#label }
    if (max !== undefined || maxSize === undefined) l1.max = max ?? DEFAULT_MAX
    if (maxSize !== undefined) l1.maxSize = maxSize
    if (sizeCalculation !== undefined) l1.sizeCalculation = (entry, key) => sizeCalculation(entry.value, key)
    this.#l1 = new LRUCache(l1) // throws the peer's TypeError for a bad max/maxSize
    const parsed = parseRedisOption(redis)
    this.#client = new RedisClient(parsed)
    const { keyPrefix, commandTimeout } = parsed
    this.#prefix = `${keyPrefix}tiered:{${name}}`
    this.#channel = `${this.#prefix}:bus`
    // The loads' flights: same connection, same hash tag, a prefix of their
    // own so a user's SingleFlight of the same name never shares a flight.
    this.#flights = new SingleFlight({
      name,
      redis: { ...parsed, keyPrefix: `${keyPrefix}tiered:` },
      lease: Math.max(30_000, 3 * commandTimeout),
      onRedisDown: 'reject', // the fallback is this class's (the breaker below)
      serializer: wrapSerializer(serializer),
      label: this.#label,
    })
    // A load's leader reads L2 in the same round trip as the flight lock and
    // writes it in the same round trip as the flight's outcome.
    this.#flights[LEAD_WITH]((k) => `${this.#prefix}:v:${k}`)
    this.#ids = { get: this.#client.script(GET), set: this.#client.script(SET), del: this.#client.script(DEL) }
    this.#subscription = this.#client.subscribe(this.#channel, (message) => this.#onMessage(message))
    track(this, 'tiered_cache') // the metrics registry (lib/instances.js), weakly
  }

  /** The name shared by every instance of this cache. */
  get name() { return this.#name }

  /** The label naming this cache in traces: `options.label`, else the name. */
  get label() { return this.#label }

  /** Entries in this process's L1. */
  get size() { return this.#l1.size }

  #onMessage(message) {
    if (this.#closed) return
    if (message === null) {
      // Confirmed or reconnected: invalidations may have been missed. Drop
      // every L1 entry (all are older than this moment) and every read in
      // progress loses its right to fill L1.
      if (this.#confirmed) this.#stats.busReconnects++
      this.#confirmed = true
      this.#l1.clear()
      for (const set of this.#watches.values()) for (const w of set) w.dirty = true
      return
    }
    const b = message.indexOf('\n')
    if (b < 0) return
    const id = message.slice(0, b)
    if (id.startsWith(this.#token + ':')) return // our own write
    this.#stats.invalidationsReceived++
    if (message[b + 1] === 'c') {
      this.#l1.clear()
      for (const set of this.#watches.values()) for (const w of set) w.dirty = true
      return
    }
    this.#invalidate(message.slice(b + 2), id)
  }

  // Key `k` changed (write `id`): drop it from L1; reads in progress see it.
  #invalidate(k, id) {
    this.#l1.delete(k)
    const set = this.#watches.get(k)
    if (set !== undefined) for (const w of set) (w.seen ??= []).push(id)
  }

  #watch(k) {
    const w = { dirty: false, seen: undefined }
    let set = this.#watches.get(k)
    if (set === undefined) this.#watches.set(k, set = new Set())
    set.add(w)
    return w
  }

  // Ends a watch; whether a value written as `id` (if any) may fill L1.
  #unwatch(k, w, id) {
    const set = this.#watches.get(k)
    set.delete(w)
    if (set.size === 0) this.#watches.delete(k)
    if (w.dirty || !this.#confirmed) return false
    return w.seen === undefined || (id !== undefined && w.seen.every((s) => s === id))
  }

  #nextId() {
    return `${this.#token}:${++this.#seq}`
  }

  // L1 entry for a value whose fresh and stale deadlines are `freshMs` and
  // `staleMs` from now.
  #fill(k, value, freshMs, staleMs) {
    if (value === undefined || staleMs <= 0) return
    const now = performance.now()
    const ttl = Math.max(1, Math.min(this.#l1Ttl, staleMs))
    this.#l1.set(k, { value, fresh: now + Math.min(freshMs, ttl), stale: now + ttl }, { ttl })
  }

  // Whether to use Redis now (the breaker is closed, or this call probes).
  #redisUsable() {
    if (this.#breakerUntil === 0) return true
    if (this.#probing || performance.now() < this.#breakerUntil) return false
    this.#probing = true
    return true
  }

  #redisAnswered() {
    this.#breakerUntil = 0
    this.#probing = false
  }

  #redisFailed() {
    this.#breakerUntil = performance.now() + BREAKER_COOLDOWN
    this.#probing = false
    this.#stats.fallbacks++
  }

  #downError() {
    this.#stats.rejectedWhileDown++
    return new BulkheadError(codes.UNAVAILABLE, `TieredCache "${this.#name}": Redis is not answering (onRedisDown: 'reject')`)
  }

  #checkOpen() {
    if (this.#closed) throw new BulkheadError(codes.CLOSED, `TieredCache "${this.#name}" is closed`)
  }

  /** The value of `key` from L1 only, if fresh (sync; never touches Redis). */
  get(key) {
    const k = keyOf(key)
    const e = this.#l1.get(k)
    if (e === undefined || performance.now() >= e.fresh) return undefined
    return e.value
  }

  /**
   * L1, then L2, then one load for the key across every instance.
   * @param {string|number} key
   * @param {{ fetchMethod?: Function, ttl?: number, grace?: number, signal?: AbortSignal, forceRefresh?: boolean }} [options]
   */
  fetch(key, options) {
    if (tieredCacheChannel.hasSubscribers) {
      const context = { label: this.#label, name: this.#name, key, source: undefined }
      return tieredCacheChannel.tracePromise(this.#fetch, context, this, key, options, context)
    }
    return this.#fetch(key, options, undefined)
  }

  // `trace`: the bulkhead:tiered-cache context, whose `source` says where the
  // value came from.
  async #fetch(key, options, trace) {
    const k = keyOf(key)
    let fetchMethod = this.#fetchMethod
    let ttl = this.#ttl
    let grace = this.#grace
    let signal
    let forceRefresh = false
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') throw typeError('options must be an object')
      checkOptions(options, FETCH_OPTIONS, 'cache.fetch() options')
      if (options.fetchMethod !== undefined) {
        if (typeof options.fetchMethod !== 'function') throw typeError('options.fetchMethod must be a function')
        fetchMethod = options.fetchMethod
      }
      if (options.ttl !== undefined) ttl = positive(options.ttl, 'options.ttl')
      if (options.grace !== undefined) grace = Math.ceil(nonNegative(options.grace, 'options.grace'))
      signal = options.signal
      if (signal != null && !(signal instanceof AbortSignal)) throw typeError('options.signal must be an AbortSignal')
      forceRefresh = options.forceRefresh === true
    }
    this.#checkOpen()
    if (fetchMethod === undefined) throw typeError('no fetchMethod: pass options.fetchMethod to the constructor or to fetch()')
    if (signal?.aborted) throw new BulkheadError(codes.ABORTED, 'the call was aborted', { cause: signal.reason })
    const load = { key, k, fetchMethod, ttl, grace, force: forceRefresh }

    // L1
    const now = performance.now()
    const e = this.#l1.get(k)
    let stale // a value we may serve stale (stale-while-revalidate / -if-error)
    if (e !== undefined) {
      if (now < e.fresh && !forceRefresh) {
        this.#stats.l1Hits++
        if (trace !== undefined) trace.source = 'l1'
        return e.value
      }
      if (now < e.stale) stale = e
    }
    if (stale !== undefined && !forceRefresh) {
      this.#stats.staleHits++
      if (trace !== undefined) trace.source = 'stale'
      this.#refresh(load)
      return stale.value
    }

    // L2
    if (!forceRefresh && this.#redisUsable()) {
      let hit
      const w = this.#watch(k)
      try {
        hit = await this.#l2Get(k)
        this.#redisAnswered()
      } catch (err) {
        this.#unwatch(k, w)
        if (!unavailable(err)) {
          this.#redisAnswered() // it answered (a probe must not stay open)
          throw err
        }
        this.#redisFailed()
      }
      if (hit !== undefined) {
        if (hit !== null) {
          const ok = this.#unwatch(k, w, hit.id)
          if (hit.freshMs > 0) {
            this.#stats.l2Hits++
            if (trace !== undefined) trace.source = 'l2'
            if (ok) this.#fill(k, hit.value, hit.freshMs, hit.staleMs)
            return hit.value
          }
          // In grace: serve it stale, refresh in the background.
          this.#stats.staleHits++
          if (trace !== undefined) trace.source = 'stale'
          if (ok) this.#fill(k, hit.value, 0, hit.staleMs)
          this.#refresh(load)
          return hit.value
        }
        this.#unwatch(k, w)
      }
    }
    this.#stats.misses++
    if (trace !== undefined) trace.source = 'load'
    try {
      return await this.#load(load, signal, stale?.value)
    } catch (err) {
      if (stale !== undefined && !(err?.code === codes.ABORTED && signal?.aborted)) {
        this.#stats.staleIfError++
        if (trace !== undefined) trace.source = 'stale'
        return stale.value
      }
      throw err
    }
  }

  // The L2 entry of `k`: { value, freshMs, staleMs } (ms from now, Redis's
  // clock), or null for a miss.
  async #l2Get(k) {
    return this.#parseL2(await this.#client.eval(this.#ids.get, [`${this.#prefix}:v:${k}`], []))
  }

  // The reply of GET (or of the loads' flight lock, LEAD_WITH): [1, text,
  // pttl] when the key exists.
  #parseL2(reply) {
    if (reply[0] !== 1 || reply.length < 3) return null
    const text = reply[1]
    const pttl = Number(reply[2])
    const a = text.indexOf('\n')
    const b = text.indexOf('\n', a + 1)
    const grace = Number(text.slice(0, a))
    if (b < 0 || text[b + 1] !== 'v' || !(pttl > 0)) return null
    return {
      value: this.#serializer.deserialize(text.slice(b + 2)),
      id: text.slice(a + 1, b),
      freshMs: pttl - grace,
      staleMs: pttl,
    }
  }

  // Writes `value` to L2 (PX ttl + grace) and publishes key `k` as write `id`.
  async #l2Set(k, value, ttl, grace, id) {
    const write = this.#l2Write(k, value, ttl, grace, id)
    await this.#client.eval(this.#ids.set, [write.key], [write.value, write.px, write.channel, write.message])
    this.#stats.invalidationsSent++
  }

  // What #l2Set sends: the key, its text and PX, and the message to publish.
  #l2Write(k, value, ttl, grace, id) {
    return {
      key: `${this.#prefix}:v:${k}`,
      value: `${grace}\n${id}\nv${this.#serializer.serialize(value === undefined ? null : value)}`,
      px: ttl + grace,
      channel: this.#channel,
      message: `${id}\nk${k}`,
    }
  }

  // One load of `k` across the fleet (or in this process while Redis is away).
  async #load(load, signal, staleValue) {
    const { k } = load
    const callOptions = signal == null ? undefined : { signal }
    if (!this.#redisUsable()) {
      if (this.#onRedisDown === 'reject') throw this.#downError()
      return this.#loadLocally(load, callOptions, staleValue)
    }
    const joined = this.#flights.inFlight(k)
    let ran = false
    const w = this.#watch(k)
    let result
    try {
      result = await this.#flights.do(k, async (sig, lead) => {
        ran = true
        return this.#leadLoad(load, sig, staleValue, lead)
      }, callOptions)
      this.#redisAnswered()
    } catch (err) {
      this.#unwatch(k, w)
      if (!unavailable(err)) {
        this.#redisAnswered() // e.g. the loader failed: Redis answered
        throw err
      }
      // The flight could not reach Redis: run it here (the breaker is open).
      this.#redisFailed()
      if (this.#onRedisDown === 'reject') throw this.#downError()
      return this.#loadLocally(load, callOptions, staleValue)
    }
    const ok = this.#unwatch(k, w, result.id)
    if (joined) this.#stats.loadsJoinedLocally++
    else if (!ran) this.#stats.loadsJoinedRemote++
    if (result.u) return undefined
    if (ok) this.#fill(k, result.v, load.ttl, load.ttl + load.grace)
    return result.v
  }

  // The leader's part: check L2 again (another instance may have just
  // loaded it), else run the loader and write its value to L2. `lead` (when
  // this process leads in Redis, see LEAD_WITH): that check was made with the
  // flight lock, and the write goes with the flight's outcome.
  async #leadLoad(load, signal, staleValue, lead) {
    const { k, key, ttl, grace } = load
    if (!load.force) {
      try {
        const hit = lead === undefined ? await this.#l2Get(k) : this.#parseL2(lead.peek)
        if (hit !== null && hit.freshMs > 0) return { v: hit.value, id: hit.id }
      } catch (err) {
        if (!unavailable(err)) throw err
      }
    }
    this.#stats.loads++
    let value
    try {
      value = await load.fetchMethod(key, staleValue, { signal })
    } catch (err) {
      this.#stats.loadErrors++
      throw err
    }
    if (value === undefined) return { u: true }
    const id = this.#nextId()
    if (lead !== undefined) {
      const write = this.#l2Write(k, value, ttl, grace, id)
      write.written = () => this.#l2Written(k, id)
      write.failed = (err) => { if (unavailable(err)) this.#redisFailed() }
      // Given up (every caller here left): still write what was loaded.
      write.orphaned = () => { this.#l2Set(k, value, ttl, grace, id).then(() => this.#invalidateOwn(k, id), () => {}) }
      lead.write = write
      return { v: value, id }
    }
    try {
      await this.#l2Set(k, value, ttl, grace, id)
      this.#invalidateOwn(k, id)
    } catch (err) {
      if (!unavailable(err)) throw err
      this.#redisFailed()
    }
    return { v: value, id }
  }

  // The leader's L2 write of `k` (write `id`) went with the flight's outcome.
  #l2Written(k, id) {
    this.#stats.invalidationsSent++
    this.#invalidateOwn(k, id)
  }

  // Our own write: reads of `k` in progress here must not fill L1 with what
  // they read before it.
  #invalidateOwn(k, id) {
    const set = this.#watches.get(k)
    if (set !== undefined) for (const w of set) (w.seen ??= []).push(id)
  }

  // Redis away: one load per key in this process.
  async #loadLocally(load, callOptions, staleValue) {
    const { k, key } = load
    const joined = this.#local.inFlight(k)
    if (!joined && !load.force) {
      // This call may have waited for Redis (a command timeout) while
      // another caller of the key loaded it here and filled L1: take that
      // value rather than load again.
      const e = this.#l1.get(k)
      if (e !== undefined && performance.now() < e.fresh) {
        this.#stats.l1Hits++
        return e.value
      }
    }
    const w = this.#watch(k)
    let value
    let ok
    try {
      value = await this.#local.do(k, async (signal) => {
        this.#stats.loads++
        try {
          return await load.fetchMethod(key, staleValue, { signal })
        } catch (err) {
          this.#stats.loadErrors++
          throw err
        }
      }, callOptions)
    } finally {
      ok = this.#unwatch(k, w)
      if (joined) this.#stats.loadsJoinedLocally++
    }
    // Not in L2: other instances may disagree; the bus reconnect (or l1Ttl)
    // drops it once Redis is back.
    if (ok || !this.#confirmed) {
      this.#fill(k, value, load.ttl, load.ttl + load.grace)
    }
    return value
  }

  // Stale-while-revalidate: one background refresh of a key per process
  // (and, through the flight, one across the fleet).
  #refresh(load) {
    if (this.#refreshing.has(load.k) || this.#closed) return
    this.#refreshing.add(load.k)
    this.#stats.refreshes++
    const stale = this.#l1.peek(load.k)?.value
    this.#load(load, undefined, stale).catch(() => {
      // The stale value stays until its grace ends (stale-if-error).
    }).finally(() => this.#refreshing.delete(load.k))
  }

  /** Writes `value` to L2 (with `ttl`), then to L1; other instances drop the key. */
  async set(key, value, options) {
    const k = keyOf(key)
    let ttl = this.#ttl
    let grace = this.#grace
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') throw typeError('options must be an object')
      checkOptions(options, SET_OPTIONS, 'cache.set() options')
      if (options.ttl !== undefined) ttl = positive(options.ttl, 'options.ttl')
      if (options.grace !== undefined) grace = Math.ceil(nonNegative(options.grace, 'options.grace'))
    }
    this.#checkOpen()
    if (value === undefined) return this.delete(key)
    const id = this.#nextId()
    this.#l1.delete(k)
    this.#invalidateOwn(k, id)
    const w = this.#watch(k)
    try {
      await this.#l2Set(k, value, ttl, grace, id)
      this.#redisAnswered()
    } catch (err) {
      this.#unwatch(k, w)
      if (unavailable(err)) this.#redisFailed()
      throw err
    }
    if (this.#unwatch(k, w, id)) this.#fill(k, value, ttl, ttl + grace)
  }

  /** Deletes `key` from L2 and L1, here and (through the bus) in every instance. Resolves to whether L2 had it. */
  async delete(key) {
    const k = keyOf(key)
    this.#checkOpen()
    const id = this.#nextId()
    this.#l1.delete(k)
    this.#invalidateOwn(k, id)
    let n
    try {
      n = await this.#client.eval(this.#ids.del, [`${this.#prefix}:v:${k}`], [this.#channel, `${id}\nk${k}`])
      this.#redisAnswered()
    } catch (err) {
      if (unavailable(err)) this.#redisFailed()
      throw err
    }
    this.#stats.invalidationsSent++
    this.#l1.delete(k)
    return Number(n) > 0
  }

  /** Deletes every key of this cache from L2 (SCAN + UNLINK) and every instance's L1. */
  async clear() {
    this.#checkOpen()
    this.#l1.clear()
    for (const set of this.#watches.values()) for (const w of set) w.dirty = true
    const pattern = `${this.#prefix}:v:`.replace(/[*?[\]\\]/g, '\\$&') + '*'
    try {
      let cursor = '0'
      do {
        const [next, keys] = await this.#client.command('SCAN', cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT)
        cursor = String(next)
        if (keys.length > 0) await this.#client.command('UNLINK', ...keys)
      } while (cursor !== '0')
      await this.#client.command('PUBLISH', this.#channel, `${this.#nextId()}\nc`)
      this.#redisAnswered()
    } catch (err) {
      if (unavailable(err)) this.#redisFailed()
      throw err
    }
    this.#stats.invalidationsSent++
    this.#l1.clear()
  }

  /** This process's counters, L1's size, and the Redis connection's counters. */
  stats() {
    return {
      ...this.#stats,
      l1Size: this.#l1.size,
      l1CalculatedSize: this.#l1.calculatedSize,
      redisDown: this.#breakerUntil !== 0,
      redis: this.#closed ? undefined : this.#client.stats(),
    }
  }

  /** Lets go of the Redis connections; later calls reject with ERR_CLOSED. */
  close() {
    if (this.#closed) return
    this.#closed = true
    this.#client.unsubscribe(this.#channel, this.#subscription)
    this.#flights.close()
    this.#client.close()
    this.#l1.clear()
  }
}

module.exports = { TieredCache }
