'use strict'
// `new Limiter({ name, redis, concurrency, lease, onRedisDown })`: one
// concurrency limit shared by every process (and thread) that opens `name` on
// the same Redis. See docs/redis.md for the model and its failure semantics.
//
// State in Redis, every key under one hash tag `{name}` (one Cluster slot):
//   P:h  ZSET  lease id -> expiry (Redis ms)         the permits held
//   P:w  HASH  lease id -> weight
//   P:q  ZSET  waiter member -> -priority            the queue; equal scores
//              order by member, which starts with a zero-padded arrival number
//   P:m  HASH  waiter member -> "expiry|channel|weight"
//   P:s  STRING arrival counter
//   P:r  ZSET  start id -> start time (Redis ms): the rate limit's sliding
//              log, at most rate.limit entries
// Time is Redis's (`TIME` in the scripts). A permit is a lease renewed from
// the addon's Rust runtime while its task runs; a lease not renewed (its
// process died) lapses, and the next script call frees it.
const { randomUUID } = require('node:crypto')
const { RedisClient } = require('./redis.js')
const { BulkheadError, codes, checkOptions } = require('./errors.js')

// What distributed mode supports; anything else (a typo, or a local-mode
// option such as maxPending) is an ERR_INVALID_ARG naming it.
const REDIS_LIMITER_OPTIONS = new Set(['name', 'redis', 'concurrency', 'rate', 'lease', 'timeout', 'onRedisDown'])

/** Default lease of a distributed permit (ms). */
const DEFAULT_LEASE = 30_000
/** Longest wait between a waiter's own re-checks when no wake-up arrives. */
const MAX_POLL = 1_000

// Shared Lua: Redis time, purge of lapsed holders and waiters, and the wake-up
// of the queue head when it fits.
const PRELUDE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local H, W, Q, M, S = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local lapsed = redis.call('ZRANGEBYSCORE', H, '-inf', now)
for _, id in ipairs(lapsed) do redis.call('HDEL', W, id); redis.call('ZREM', H, id) end
local function used()
  local s = 0
  for _, w in ipairs(redis.call('HVALS', W)) do s = s + tonumber(w) end
  return s
end
local function meta(member)
  local m = redis.call('HGET', M, member)
  if not m then return nil end
  local e, ch, w = string.match(m, '^(%d+)|(.*)|(%d+)$')
  return tonumber(e), ch, tonumber(w)
end
-- Drops waiters at the head whose process stopped refreshing them, then wakes
-- the head if its weight fits.
local function wake(concurrency)
  for _ = 1, 16 do
    local head = redis.call('ZRANGE', Q, 0, 0)[1]
    if not head then return end
    local e, ch, w = meta(head)
    if e and e >= now then
      if used() + w <= concurrency then redis.call('PUBLISH', ch, head) end
      return
    end
    redis.call('ZREM', Q, head); redis.call('HDEL', M, head)
  end
end
`

// ARGV: member ('' for a new caller), lease id, weight, concurrency, lease ms,
// priority, channel, waiter ttl ms, notAfter (Redis ms; 0 = unknown),
// rate limit, rate interval ms (0 = no rate limit).
// Returns {1, now} acquired, {0, now, member, retryMs} queued (retryMs > 0:
// the rate limit frees a start then), {-1, now} too late.
const ACQUIRE = PRELUDE + `
local member, id, weight, concurrency = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local lease, priority, channel, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7], tonumber(ARGV[8])
local notAfter, rlimit, rinterval = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
if notAfter > 0 and now > notAfter then return {-1, now} end
local R = KEYS[6]
-- 0 if a start is allowed now, else ms until the rate limit allows one.
local function rateWait()
  if rinterval <= 0 then return 0 end
  redis.call('ZREMRANGEBYSCORE', R, '-inf', now - rinterval)
  if redis.call('ZCARD', R) < rlimit then return 0 end
  local oldest = redis.call('ZRANGE', R, 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + rinterval - now + 1)
end
local rw = rateWait()
-- Every key expires when nobody uses the name for a while.
for _, k in ipairs({Q, M, S}) do redis.call('PEXPIRE', k, math.max(lease, ttl) * 2) end
local ahead
if member == '' or not redis.call('ZSCORE', Q, member) then
  ahead = redis.call('ZCOUNT', Q, '-inf', -priority)
  if member == '' then
    member = string.format('%016d', redis.call('INCR', S)) .. ':' .. id
  end
  if ahead > 0 or used() + weight > concurrency or rw > 0 then
    redis.call('ZADD', Q, -priority, member)
    redis.call('HSET', M, member, (now + ttl) .. '|' .. channel .. '|' .. weight)
    return {0, now, member, rw}
  end
else
  ahead = redis.call('ZRANK', Q, member)
  if ahead > 0 or used() + weight > concurrency or rw > 0 then
    redis.call('HSET', M, member, (now + ttl) .. '|' .. channel .. '|' .. weight)
    if ahead > 0 then wake(concurrency) end
    return {0, now, member, ahead > 0 and 0 or rw}
  end
  redis.call('ZREM', Q, member); redis.call('HDEL', M, member)
end
if rinterval > 0 then
  redis.call('ZADD', R, now, id)
  redis.call('PEXPIRE', R, rinterval * 2)
end
redis.call('ZADD', H, now + lease, id)
redis.call('HSET', W, id, weight)
redis.call('PEXPIRE', H, lease * 2); redis.call('PEXPIRE', W, lease * 2)
wake(concurrency)
return {1, now}
`

// ARGV: lease id, concurrency. Frees the permit and wakes the head.
const RELEASE = PRELUDE + `
local had = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
wake(tonumber(ARGV[2]))
return {had, now}
`

// ARGV: member, concurrency. A waiter that leaves (abort, timeout).
const LEAVE = PRELUDE + `
redis.call('ZREM', Q, ARGV[1]); redis.call('HDEL', M, ARGV[1])
wake(tonumber(ARGV[2]))
return {1, now}
`

// KEYS: holders, weights. ARGV: lease id, lease ms. 0 = the lease is gone.
const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local e = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not e or tonumber(e) < now then
  redis.call('ZREM', KEYS[1], ARGV[1]); redis.call('HDEL', KEYS[2], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2); redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) * 2)
return 1
`

const ON_REDIS_DOWN = new Set(['reject', 'local', 'allow'])

function invalid(message) {
  return new TypeError(message)
}

function errorFor(code, message, cause) {
  return new BulkheadError(code, message, cause === undefined ? undefined : { cause })
}

class RedisLimiter {
  #client
  #name
  #keys
  #concurrency
  #lease
  #timeout
  #onRedisDown
  #channel
  #token = randomUUID()
  #seq = 0
  #ids = { acquire: 0, release: 0, leave: 0, renew: 0 }
  #waiters = new Map() // member -> wake()
  #subscription = undefined
  #active = 0
  #pending = 0
  #closed = false
  #redisOffset = undefined // Redis ms - performance.now(), from the last reply
  #local = undefined
  #rate = undefined
  #makeLocal
  #stats = { acquired: 0, fallbacks: 0, lostLeases: 0, allowedWhileDown: 0, rejectedWhileDown: 0 }

  constructor(options, makeLocal) {
    checkOptions(options, REDIS_LIMITER_OPTIONS, 'new Limiter({ redis }) options')
    const { name, redis, concurrency, lease = DEFAULT_LEASE, timeout, onRedisDown = 'reject' } = options
    if (typeof name !== 'string' || name === '') {
      throw invalid('options.name must be a non-empty string (required with options.redis)')
    }
    const limit = concurrency ?? (options.rate !== undefined ? 2 ** 31 : undefined)
    if (!(Number.isInteger(limit) && limit >= 1 && limit <= 2 ** 31)) {
      throw invalid('options.concurrency must be an integer from 1 and up (required with options.redis unless options.rate is given)')
    }
    if (options.rate !== undefined) {
      const rate = options.rate
      if (rate === null || typeof rate !== 'object') throw invalid('options.rate must be { limit, interval }')
      if (!(Number.isInteger(rate.limit) && rate.limit >= 1 && rate.limit <= 2 ** 31)) {
        throw invalid('options.rate.limit must be an integer from 1 and up')
      }
      if (!(Number.isInteger(rate.interval) && rate.interval >= 1)) {
        throw invalid('options.rate.interval must be a positive integer number of milliseconds with options.redis')
      }
      this.#rate = { limit: rate.limit, interval: rate.interval }
    }
    if (!ON_REDIS_DOWN.has(onRedisDown)) {
      throw invalid("options.onRedisDown must be 'reject', 'local' or 'allow'")
    }
    if (timeout !== undefined && !(typeof timeout === 'number' && timeout > 0 && Number.isFinite(timeout))) {
      throw invalid('options.timeout must be a positive finite number of milliseconds')
    }
    this.#client = new RedisClient(redis)
    const { commandTimeout, keyPrefix } = this.#client.options
    if (!(typeof lease === 'number' && Number.isFinite(lease) && lease >= 3 * commandTimeout)) {
      this.#client.close()
      throw invalid(`options.lease must be a number of milliseconds of at least 3 x commandTimeout (${3 * commandTimeout})`)
    }
    this.#name = name
    this.#concurrency = limit
    this.#lease = lease
    this.#timeout = timeout
    this.#onRedisDown = onRedisDown
    this.#makeLocal = makeLocal
    const p = `${keyPrefix}limiter:{${name}}`
    this.#keys = [`${p}:h`, `${p}:w`, `${p}:q`, `${p}:m`, `${p}:s`, `${p}:r`]
    this.#channel = `${p}:wake:${this.#token}`
    this.#ids.acquire = this.#client.script(ACQUIRE)
    this.#ids.release = this.#client.script(RELEASE)
    this.#ids.leave = this.#client.script(LEAVE)
    this.#ids.renew = this.#client.script(RENEW)
  }

  get concurrency() { return this.#concurrency }
  get activeCount() { return this.#active }
  get pendingCount() { return this.#pending }

  #notAfter() {
    if (this.#redisOffset === undefined) return 0
    return Math.floor(performance.now() + this.#redisOffset + this.#client.options.commandTimeout)
  }

  #seen(now) {
    this.#redisOffset = now - performance.now()
  }

  #subscribe() {
    if (this.#subscription !== undefined) return
    this.#subscription = this.#client.subscribe(this.#channel, (member) => {
      if (member === null) {
        // The subscriber reconnected: wake-ups may be lost; everyone re-checks.
        for (const wake of this.#waiters.values()) wake()
      } else {
        this.#waiters.get(member)?.()
      }
    })
  }

  async run(fn, options = {}) {
    if (typeof fn !== 'function') throw invalid('fn must be a function')
    if (this.#closed) throw errorFor(codes.CLOSED, 'the limiter is closed')
    if (options === null || typeof options !== 'object') throw invalid('options must be an object')
    const { signal, priority = 0, weight = 1 } = options
    const timeout = options.timeout ?? this.#timeout
    if (!(Number.isInteger(priority) && priority >= -(2 ** 31) && priority < 2 ** 31)) {
      throw invalid('options.priority must be a 32-bit integer')
    }
    if (!(Number.isInteger(weight) && weight >= 1 && weight <= this.#concurrency)) {
      throw invalid(`options.weight must be an integer from 1 to the concurrency (${this.#concurrency})`)
    }
    if (timeout !== undefined && !(typeof timeout === 'number' && timeout > 0 && Number.isFinite(timeout))) {
      throw invalid('options.timeout must be a positive finite number of milliseconds')
    }
    if (signal?.aborted) throw errorFor(codes.ABORTED, 'the task was aborted', signal.reason)
    const deadline = timeout === undefined ? Number.POSITIVE_INFINITY : performance.now() + timeout
    const id = `${this.#token}:${++this.#seq}`
    this.#pending++
    let granted
    try {
      granted = await this.#acquire(id, weight, priority, signal, deadline, timeout)
    } catch (err) {
      if (err?.code !== codes.UNAVAILABLE) throw err
      this.#cleanUp(id)
      return this.#whenDown(err, fn, options)
    } finally {
      this.#pending--
    }
    if (!granted) throw errorFor(codes.INTERNAL, 'unreachable')
    return this.#runHolding(id, fn, signal, deadline, timeout)
  }

  async #whenDown(err, fn, options) {
    switch (this.#onRedisDown) {
      case 'allow':
        this.#stats.allowedWhileDown++
        return fn(options.signal)
      case 'local':
        this.#stats.fallbacks++
        // Sized as this instance's own concurrency: N processes may then run
        // up to N x concurrency between them while Redis is away.
        this.#local ??= this.#makeLocal({ concurrency: this.#concurrency, timeout: this.#timeout, rate: this.#rate })
        return this.#local.run(fn, options)
      default:
        this.#stats.rejectedWhileDown++
        throw err
    }
  }

  async #acquire(id, weight, priority, signal, deadline, timeout) {
    let member = ''
    for (;;) {
      const reply = await this.#client.eval(this.#ids.acquire, this.#keys, [
        member, id, weight, this.#concurrency, this.#lease, priority, this.#channel,
        this.#lease, this.#notAfter(), this.#rate?.limit ?? 0, this.#rate?.interval ?? 0,
      ])
      this.#seen(reply[1])
      if (reply[0] === 1) return true
      if (reply[0] === -1) {
        throw errorFor(codes.UNAVAILABLE, 'redis unavailable: the acquire ran after its deadline')
      }
      member = reply[2]
      const outcome = await this.#wait(member, signal, deadline, reply[3])
      if (outcome !== 'wake') {
        // Leave the queue in Redis (best effort: a waiter we fail to remove
        // lapses after one lease, since we stop refreshing it).
        this.#releasing++
        this.#client.eval(this.#ids.leave, this.#keys, [member, this.#concurrency]).catch(() => {})
          .finally(() => {
            this.#releasing--
            if (this.#closed) this.#closeClient()
          })
        if (outcome === 'timeout') {
          throw errorFor(codes.TIMEOUT, `the task timed out after ${timeout} ms`)
        }
        if (outcome === 'closed') throw errorFor(codes.CLOSED, 'the limiter is closed')
        throw errorFor(codes.ABORTED, 'the task was aborted', signal.reason)
      }
    }
  }

  // Waits for a wake-up, the backstop poll, the deadline, an abort or close.
  // `retryMs` > 0: the rate limit allows a start then (no message will come).
  #wait(member, signal, deadline, retryMs) {
    this.#subscribe()
    return new Promise((resolve) => {
      const poll = retryMs > 0 ? retryMs : Math.min(MAX_POLL, this.#lease / 3)
      const wait = Math.max(0, Math.min(poll, deadline - performance.now()))
      const onAbort = () => done('abort')
      const close = () => done('closed')
      const done = (outcome) => {
        clearTimeout(timer)
        this.#waiters.delete(member)
        this.#closers.delete(close)
        signal?.removeEventListener('abort', onAbort)
        resolve(outcome)
      }
      const timer = setTimeout(() => done(performance.now() >= deadline ? 'timeout' : 'wake'), wait)
      signal?.addEventListener('abort', onAbort, { once: true })
      this.#waiters.set(member, () => done('wake'))
      this.#closers.add(close)
    })
  }

  #closers = new Set()

  async #runHolding(id, fn, signal, deadline, timeout) {
    this.#active++
    this.#stats.acquired++
    const controller = new AbortController()
    let settleEarly
    const early = new Promise((resolve, reject) => { settleEarly = reject })
    early.catch(() => {})
    const abort = (error) => {
      if (controller.signal.aborted) return
      controller.abort(error)
      settleEarly(error)
    }
    const onAbort = () => abort(errorFor(codes.ABORTED, 'the task was aborted', signal.reason))
    signal?.addEventListener('abort', onAbort, { once: true })
    let timer
    if (deadline !== Number.POSITIVE_INFINITY) {
      timer = setTimeout(() => abort(errorFor(codes.TIMEOUT, `the task timed out after ${timeout} ms`)),
        Math.max(0, deadline - performance.now()))
    }
    const renewal = this.#client.startRenewal(this.#ids.renew, this.#keys.slice(0, 2),
      [id, this.#lease], this.#lease / 3, this.#lease, () => {
        this.#stats.lostLeases++
        abort(errorFor(codes.LEASE_LOST, `the permit's lease in Redis was lost (limiter '${this.#name}')`))
      })
    const work = (async () => fn(controller.signal))()
    try {
      return await Promise.race([work, early])
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      // The permit is held until fn settles (an aborted fn may still be
      // using the upstream), then given back.
      work.catch(() => {}).finally(() => {
        this.#client.stopRenewal(renewal)
        this.#releasing++
        this.#client.eval(this.#ids.release, this.#keys, [id, this.#concurrency]).catch(() => {})
          .finally(() => {
            this.#releasing--
            this.#active--
            if (this.#closed) this.#closeClient()
          })
      })
    }
  }

  // An acquire that timed out may still run when Redis comes back (it was in
  // Redis's socket buffer) and grant a permit nobody holds. Until that lease
  // would end, keep trying to give it back (a no-op if it was never granted).
  #cleanUp(id) {
    const until = performance.now() + this.#lease
    let successes = 0
    // Once more a second after the first success: the late command may run
    // just after it (it sat in the old connection's buffer).
    const attempt = () => {
      if (performance.now() > until || this.#closed) return
      this.#client.eval(this.#ids.release, this.#keys, [id, this.#concurrency]).then(
        () => { if (++successes < 2) setTimeout(attempt, 1000).unref() },
        () => setTimeout(attempt, 200).unref(),
      )
    }
    setTimeout(attempt, 0).unref()
  }

  stats() {
    return {
      active: this.#active,
      pending: this.#pending,
      ...this.#stats,
      redis: this.#client.stats(),
    }
  }

  close() {
    if (this.#closed) return
    this.#closed = true
    for (const close of this.#closers) close()
    this.#closers.clear()
    if (this.#subscription !== undefined) this.#client.unsubscribe(this.#channel, this.#subscription)
    this.#local?.close?.()
    // After the closed waiters have sent their leave (a few microtasks on).
    setImmediate(() => this.#closeClient())
  }

  // Lets go of Redis once the permits of tasks still running are given back.
  #closeClient() {
    if (this.#active === 0 && this.#releasing === 0 && !this.#clientClosed) {
      this.#clientClosed = true
      this.#client.close()
    }
  }

  #clientClosed = false

  #releasing = 0
}

module.exports = { RedisLimiter, DEFAULT_LEASE }
