'use strict'
// `new SingleFlight({ name, redis, timeout, lease, onRedisDown, serializer })`:
// concurrent `do(key, fn)` calls for one key in any process share one run of
// `fn`. At-least-once, not exactly-once: see docs/redis.md.
//
// Keys, all under the hash tag `{name}` (one Cluster slot):
//   P:l:<key>    the flight's lock: the leader's flight token, with a lease
//                (renewed from the addon's Rust runtime while fn runs)
//   P:v:<token>  the outcome of flight <token>, kept RESULT_TTL ms for the
//                flight's followers only (keyed by flight, never served to
//                a later flight of the key)
//   P:done       pub/sub channel: "<token>\n<outcome>" when a flight settles
// Within one process, callers of a key join one local promise first, so a
// process makes one Redis call per key per flight, not one per caller.
const { randomUUID } = require('node:crypto')
const { RedisClient } = require('./redis.js')
const { BulkheadError, codes, checkOptions } = require('./errors.js')

// What distributed mode supports; anything else is an ERR_INVALID_ARG naming it.
const REDIS_FLIGHT_OPTIONS = new Set(['name', 'redis', 'timeout', 'lease', 'onRedisDown', 'serializer'])

const DEFAULT_LEASE = 30_000
const MAX_POLL = 1_000
/** How long a flight's outcome stays for its followers (ms). */
const RESULT_TTL = 10_000

// KEYS: lock. ARGV: token, lease. {1} leader, {0, holderToken} follower.
const JOIN = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1} end
return {0, redis.call('GET', KEYS[1]) or ''}
`
// KEYS: lock, value of token. ARGV: token. {2, outcome} done, {0} running,
// {1} the leader is gone without an outcome (take over).
const CHECK = `
local v = redis.call('GET', KEYS[2])
if v then return {2, v} end
if redis.call('GET', KEYS[1]) == ARGV[1] then return {0} end
return {1}
`
// KEYS: lock, value of token. ARGV: token, outcome, ttl, channel.
const SETTLE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[1] .. '\\n' .. ARGV[2])
return 1
`
// KEYS: lock. ARGV: token. Deletes the lock if it is still ours.
const UNLOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`
// KEYS: lock. ARGV: token, lease. 0 = lost.
const RENEW = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`

/** JSON, readable by every Node version (the default serializer). */
const JSON_SERIALIZER = { serialize: JSON.stringify, deserialize: JSON.parse }

function encodeOutcome(serializer, ok, value) {
  if (ok) return 'v' + serializer.serialize(value === undefined ? null : value)
  const e = value instanceof Error
    ? { name: value.name, message: value.message, code: value.code }
    : { name: 'Error', message: String(value) }
  return 'e' + JSON.stringify(e)
}

function decodeOutcome(serializer, text) {
  if (text[0] === 'v') return { ok: true, value: serializer.deserialize(text.slice(1)) }
  const e = JSON.parse(text.slice(1))
  const err = new Error(e.message)
  err.name = e.name
  if (e.code !== undefined) err.code = e.code
  return { ok: false, value: err }
}

class RedisSingleFlight {
  #client
  #prefix
  #channel
  #lease
  #timeout
  #onRedisDown
  #serializer
  #ids
  #local = new Map() // key -> promise of the process's call for the key
  #followers = new Map() // token -> Set(wake(outcomeText|null))
  #subscription = undefined
  #closed = false
  #stats = { flights: 0, led: 0, followed: 0, joinedLocally: 0, takeovers: 0, fallbacks: 0, timeouts: 0 }

  constructor(options) {
    checkOptions(options, REDIS_FLIGHT_OPTIONS, 'new SingleFlight({ redis }) options')
    const { name, redis, timeout, lease = DEFAULT_LEASE, onRedisDown = 'local', serializer = JSON_SERIALIZER } = options
    if (typeof name !== 'string' || name === '') {
      throw new TypeError('options.name must be a non-empty string (required with options.redis)')
    }
    if (onRedisDown !== 'local' && onRedisDown !== 'reject') {
      throw new TypeError("options.onRedisDown must be 'local' or 'reject'")
    }
    if (timeout !== undefined && !(typeof timeout === 'number' && timeout > 0 && Number.isFinite(timeout))) {
      throw new TypeError('options.timeout must be a positive finite number of milliseconds')
    }
    if (serializer === null || typeof serializer !== 'object' ||
      typeof serializer.serialize !== 'function' || typeof serializer.deserialize !== 'function') {
      throw new TypeError('options.serializer must be { serialize(value): string, deserialize(string) }')
    }
    this.#client = new RedisClient(redis)
    const { commandTimeout, keyPrefix } = this.#client.options
    if (!(typeof lease === 'number' && Number.isFinite(lease) && lease >= 3 * commandTimeout)) {
      this.#client.close()
      throw new TypeError(`options.lease must be a number of milliseconds of at least 3 x commandTimeout (${3 * commandTimeout})`)
    }
    this.#prefix = `${keyPrefix}flight:{${name}}`
    this.#channel = `${this.#prefix}:done`
    this.#lease = lease
    this.#timeout = timeout
    this.#onRedisDown = onRedisDown
    this.#serializer = serializer
    this.#ids = {
      join: this.#client.script(JOIN),
      check: this.#client.script(CHECK),
      settle: this.#client.script(SETTLE),
      renew: this.#client.script(RENEW),
      unlock: this.#client.script(UNLOCK),
    }
  }

  #subscribe() {
    if (this.#subscription !== undefined) return
    this.#subscription = this.#client.subscribe(this.#channel, (message) => {
      if (message === null) {
        for (const set of this.#followers.values()) for (const wake of set) wake(null)
        return
      }
      const i = message.indexOf('\n')
      const set = this.#followers.get(message.slice(0, i))
      if (set !== undefined) for (const wake of set) wake(message.slice(i + 1))
    })
  }

  do(key, fn, options) {
    return this.#call(key, fn, options).then((r) => r.value)
  }

  doShared(key, fn, options) {
    return this.#call(key, fn, options)
  }

  async #call(key, fn, options = {}) {
    if (typeof key !== 'string') throw new TypeError('key must be a string with options.redis')
    if (typeof fn !== 'function') throw new TypeError('fn must be a function')
    if (this.#closed) throw new BulkheadError(codes.CLOSED, 'the group is closed')
    const timeout = options?.timeout ?? this.#timeout
    let entry = this.#local.get(key)
    if (entry !== undefined) {
      this.#stats.joinedLocally++
      entry.calls++
      const { ok, value } = await entry.promise
      if (!ok) throw value
      return { value, shared: true }
    }
    entry = { calls: 1, promise: undefined }
    entry.promise = this.#flight(key, fn, timeout).then(
      (value) => ({ ok: true, value }), (value) => ({ ok: false, value }))
    this.#local.set(key, entry)
    this.#stats.flights++
    let outcome
    try {
      outcome = await entry.promise
    } finally {
      if (this.#local.get(key) === entry) this.#local.delete(key)
    }
    if (!outcome.ok) throw outcome.value
    return { value: outcome.value, shared: entry.calls > 1 || outcome.shared === true }
  }

  async #flight(key, fn, timeout) {
    const deadline = timeout === undefined ? Number.POSITIVE_INFINITY : performance.now() + timeout
    const lock = `${this.#prefix}:l:${key}`
    this.#subscribe()
    for (;;) {
      const token = randomUUID()
      let reply
      try {
        reply = await this.#client.eval(this.#ids.join, [lock], [token, this.#lease])
      } catch (err) {
        if (err?.code === codes.UNAVAILABLE) this.#cleanUp(lock, token)
        if (err?.code !== codes.UNAVAILABLE || this.#onRedisDown === 'reject') throw err
        this.#stats.fallbacks++
        return fn() // dedupe within this process only (the local map above)
      }
      if (reply[0] === 1) return this.#lead(lock, token, fn)
      const leader = reply[1]
      if (leader === '') continue
      const result = await this.#follow(lock, leader, deadline, timeout)
      if (result !== undefined) {
        if (!result.ok) throw result.value
        return result.value
      }
      this.#stats.takeovers++ // the leader died: try to lead
    }
  }

  async #lead(lock, token, fn) {
    this.#stats.led++
    const renewal = this.#client.startRenewal(this.#ids.renew, [lock], [token, this.#lease],
      this.#lease / 3, this.#lease, () => {})
    let ok = true
    let value
    try {
      value = await fn()
    } catch (err) {
      ok = false
      value = err
    } finally {
      this.#client.stopRenewal(renewal)
    }
    try {
      await this.#client.eval(this.#ids.settle, [lock, `${this.#prefix}:v:${token}`],
        [token, encodeOutcome(this.#serializer, ok, value), RESULT_TTL, this.#channel])
    } catch {
      // Followers see the lock lapse and take over (at-least-once).
    }
    if (!ok) throw value
    return value
  }

  // Resolves to { ok, value } when flight `token` settles, or undefined when
  // its leader is gone without an outcome.
  async #follow(lock, token, deadline, timeout) {
    this.#stats.followed++
    const valueKey = `${this.#prefix}:v:${token}`
    let set = this.#followers.get(token)
    if (set === undefined) this.#followers.set(token, set = new Set())
    try {
      for (;;) {
        const reply = await this.#client.eval(this.#ids.check, [lock, valueKey], [token])
        if (reply[0] === 2) return { ...decodeOutcome(this.#serializer, reply[1]), shared: true }
        if (reply[0] === 1) return undefined
        const now = performance.now()
        if (now >= deadline) {
          this.#stats.timeouts++
          throw new BulkheadError(codes.TIMEOUT, `the flight timed out after ${timeout} ms`)
        }
        const text = await new Promise((resolve) => {
          const wake = (t) => { clearTimeout(timer); set.delete(wake); resolve(t) }
          const timer = setTimeout(() => wake(null), Math.min(MAX_POLL, this.#lease / 3, deadline - now))
          set.add(wake)
        })
        if (text !== null) return { ...decodeOutcome(this.#serializer, text), shared: true }
      }
    } finally {
      if (set.size === 0) this.#followers.delete(token)
    }
  }

  // A JOIN that timed out may still run when Redis comes back (it was in
  // Redis's socket buffer), taking a lock nobody renews. Until the lease
  // would have ended, keep trying to delete that lock if it is ours, so
  // followers are not stranded for a whole lease.
  #cleanUp(lock, token) {
    const until = performance.now() + this.#lease
    let successes = 0
    // Once more a second after the first success: the late command may run
    // just after it (it sat in the old connection's buffer).
    const attempt = () => {
      if (performance.now() > until || this.#closed) return
      this.#client.eval(this.#ids.unlock, [lock], [token]).then(
        () => { if (++successes < 2) setTimeout(attempt, 1000).unref() },
        () => setTimeout(attempt, 200).unref(),
      )
    }
    setTimeout(attempt, 0).unref()
  }

  stats() {
    return { ...this.#stats, inFlight: this.#local.size, redis: this.#client.stats() }
  }

  close() {
    if (this.#closed) return
    this.#closed = true
    if (this.#subscription !== undefined) this.#client.unsubscribe(this.#channel, this.#subscription)
    this.#client.close()
  }
}

module.exports = { RedisSingleFlight, JSON_SERIALIZER }
