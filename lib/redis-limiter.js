'use strict'
// `new Limiter({ name, redis, concurrency, rate, lease, onRedisDown, ... })`:
// one concurrency limit shared by every process (and thread) that opens
// `name` on the same Redis. See docs/redis.md for the model and its failure
// semantics.
//
// RedisLimiter extends Limiter, so `instanceof Limiter` holds and the local
// class's map()/mapIterable() (which only call `this.run()`) serve both
// modes. Every other public member is overridden here; the local Limiter's
// base state is left empty (its constructor returns early for this class),
// and no local method gains a branch.
//
// State in Redis, every key under one hash tag `{name}` (one Cluster slot):
//   P:h  ZSET  "lease id|weight" -> expiry (Redis ms)   the permits held
//   P:u  STRING the sum of the weights held
//   P:q  ZSET  waiter member -> -priority            the queue; equal scores
//              order by member, which starts with a zero-padded arrival number
//              and ends with the lease id the waiter will hold
//   P:m  HASH  waiter member -> "expiry|channel|weight"; field '#': the
//              arrival counter
//   P:r  ZSET  lease id -> start time (Redis ms): the rate limit's sliding
//              log, at most rate.limit entries
// Time is Redis's (`TIME` in the scripts). A permit is a lease renewed from
// the addon's Rust runtime while its task runs; a lease not renewed (its
// process died) lapses, and is freed when the permits run short.
//
// A permit that frees goes straight to the queue head that fits (the release
// or leave script moves it into P:h and publishes its lease id on the
// waiter's process channel): a waiting task costs one acquire and one
// release, two round trips, however long it waits. A waiter whose wake-up
// was missed finds its permit on its next check (the safety poll, or the
// re-check every waiter makes when the subscription is confirmed). The
// scripts touch only what changes: about 17 Redis commands per contended
// task (docs/performance.md, "Distributed limit").
const { randomUUID } = require('node:crypto')
const { RedisClient } = require('./redis.js')
const { BulkheadError, codes, checkOptions, typeError } = require('./errors.js')
const { Limiter } = require('./p-limit.js')
const { TaskSignal } = require('./task-signal.js')
const { limiterChannel, checkLabel, traceLimiterTask } = require('./tracing.js')

// What distributed mode supports; anything else (a typo, or a local-only
// option) is an ERR_INVALID_ARG naming it, with the option meant if close.
const REDIS_LIMITER_OPTIONS = new Set([
  'name', 'redis', 'concurrency', 'maxPending', 'timeout', 'queueTimeout', 'rate', 'lease', 'onRedisDown', 'label',
])
const RUN_OPTIONS = new Set(['signal', 'timeout', 'queueTimeout', 'priority', 'weight'])

/** Default `maxPending` (per process), as in local mode. */
const DEFAULT_MAX_PENDING = 1024
/** Default `queueTimeout` (ms), as in local mode. */
const DEFAULT_QUEUE_TIMEOUT = 30_000
/**
 * Largest `rate.limit` in distributed mode: the sliding log keeps one sorted
 * set member per start in the window (docs/redis.md, "Rate limit").
 */
const MAX_RATE_LIMIT = 100_000

/** Default lease of a distributed permit (ms). */
const DEFAULT_LEASE = 30_000
/** Longest wait between a waiter's own re-checks when no wake-up arrives. */
const MAX_POLL = 1_000

// Shared Lua. KEYS: holders, held weight, queue, waiter metadata, rate log.
// ARGV[1..4]: concurrency, lease ms, rate limit, rate interval ms (0 = no rate
// limit); the script's own arguments follow. Time is Redis's.
const PRELUDE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local H, U, Q, M, R = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local concurrency, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local rlimit, rinterval = tonumber(ARGV[3]), tonumber(ARGV[4])
local function used() return tonumber(redis.call('GET', U) or '0') end
-- Frees the permit \`holder\` ("lease id|weight") if held; returns whether it was.
local function free(holder)
  if redis.call('ZREM', H, holder) == 0 then return false end
  redis.call('DECRBY', U, tonumber(string.match(holder, '|(%d+)$')))
  return true
end
-- The weight held once lapsed leases (their process stopped renewing them)
-- are freed; a count left behind by a deleted holders key (a flushed or
-- restarted Redis) is reset. Called only when the permits look short.
local function purge()
  for _, holder in ipairs(redis.call('ZRANGEBYSCORE', H, '-inf', now, 'LIMIT', 0, 64)) do free(holder) end
  local u = used()
  if u ~= 0 and redis.call('EXISTS', H) == 0 then
    redis.call('DEL', U)
    return 0
  end
  return u
end
-- The weight held if \`w\` more permits fit (purging lapsed leases if they
-- seem not to), else nil.
local function room(w)
  local u = used()
  if u + w > concurrency then u = purge() end
  if u + w <= concurrency then return u end
  return nil
end
-- 0 if a start is allowed now, else ms until the rate limit allows one.
local function rateWait()
  if rinterval <= 0 then return 0 end
  redis.call('ZREMRANGEBYSCORE', R, '-inf', now - rinterval)
  if redis.call('ZCARD', R) < rlimit then return 0 end
  local oldest = redis.call('ZRANGE', R, 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + rinterval - now + 1)
end
-- Lease \`id\` holds \`w\` permits (and, with a rate limit, one start); \`u\` is
-- the weight held before.
local function hold(id, w, u)
  redis.call('ZADD', H, now + lease, id .. '|' .. w)
  redis.call('PEXPIRE', H, lease * 2)
  redis.call('SET', U, u + w, 'PX', lease * 2)
  if rinterval > 0 then
    redis.call('ZADD', R, now, id)
    redis.call('PEXPIRE', R, rinterval * 2)
  end
end
-- Hands free permits to the queue: grants the head while it fits (its lease
-- id, the end of its member, is published on its process's channel), drops
-- waiters whose process stopped refreshing them, and tells a head held back
-- only by the rate limit to check again ('?' .. lease id).
local function wake()
  local u = used()
  for _ = 1, 16 do
    if u >= concurrency then return end
    local head = redis.call('ZRANGE', Q, 0, 0)[1]
    if not head then return end
    local m = redis.call('HGET', M, head)
    local e, ch, w
    if m then e, ch, w = string.match(m, '^(%d+)|(.*)|(%d+)$') end
    if e and tonumber(e) >= now then
      w = tonumber(w)
      if u + w > concurrency then return end
      local id = string.sub(head, 18)
      if rateWait() > 0 then
        redis.call('PUBLISH', ch, '?' .. id)
        return
      end
      redis.call('ZREM', Q, head); redis.call('HDEL', M, head)
      hold(id, w, u)
      u = u + w
      redis.call('PUBLISH', ch, id)
    else
      redis.call('ZREM', Q, head); redis.call('HDEL', M, head)
    end
  end
end
`

// ARGV[5..]: member ('' for a new caller), lease id, weight, priority,
// channel, notAfter (Redis ms; 0 = unknown).
// Returns {1, now} acquired (also when a release handed the permit over),
// {0, now, member, retryMs} queued (retryMs > 0: the rate limit frees a start
// then), {-1, now} too late.
const ACQUIRE = PRELUDE + `
local member, id, weight = ARGV[5], ARGV[6], tonumber(ARGV[7])
local priority, channel, notAfter = tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[10])
if notAfter > 0 and now > notAfter then return {-1, now} end
local holder = id .. '|' .. weight
local function queued(rw, refresh)
  redis.call('HSET', M, member, (now + lease) .. '|' .. channel .. '|' .. weight)
  -- Every key expires when nobody uses the name for a while (a queue with
  -- waiters is refreshed by their checks).
  if refresh then redis.call('PEXPIRE', Q, lease * 2); redis.call('PEXPIRE', M, lease * 2) end
  return {0, now, member, rw}
end
if member ~= '' then
  if redis.call('ZSCORE', H, holder) then
    -- Handed over while this waiter was not listening.
    redis.call('ZADD', H, 'XX', now + lease, holder)
    return {1, now}
  end
  if not redis.call('ZSCORE', Q, member) then member = '' end
end
if member == '' then
  local rw = 0
  local first = redis.call('ZCOUNT', Q, '-inf', -priority) == 0
  local u = first and room(weight)
  if u then
    rw = rateWait()
    if rw == 0 then
      hold(id, weight, u)
      return {1, now}
    end
  end
  member = string.format('%016d', redis.call('HINCRBY', M, '#', 1)) .. ':' .. id
  redis.call('ZADD', Q, -priority, member)
  return queued(rw, first)
end
-- Queued already (a safety poll or a re-check): at the head and fitting,
-- take it; otherwise hand free permits on (a head that lapsed may be
-- holding up the queue).
local u = room(weight)
if u and redis.call('ZRANK', Q, member) == 0 then
  local rw = rateWait()
  if rw == 0 then
    redis.call('ZREM', Q, member); redis.call('HDEL', M, member)
    hold(id, weight, u)
    wake()
    return {1, now}
  end
  return queued(rw, true)
end
if u then wake() end
return queued(0, true)
`

// ARGV[5]: "lease id|weight". Frees the permit and hands it on.
const RELEASE = PRELUDE + `
local had = free(ARGV[5])
if had then wake() end
return {had and 1 or 0, now}
`

// ARGV[5]: member, ARGV[6]: weight. A waiter that leaves (abort, timeout,
// pause): out of the queue, and a permit handed to it meanwhile goes on to
// the next.
const LEAVE = PRELUDE + `
redis.call('ZREM', Q, ARGV[5]); redis.call('HDEL', M, ARGV[5])
free(string.sub(ARGV[5], 18) .. '|' .. ARGV[6])
wake()
return {1, now}
`

// KEYS: holders, held weight. ARGV: "lease id|weight", lease ms.
// 0 = the lease is gone.
const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local e = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not e or tonumber(e) < now then
  if e and redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
    redis.call('DECRBY', KEYS[2], tonumber(string.match(ARGV[1], '|(%d+)$')))
  end
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2); redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) * 2)
return 1
`

const ON_REDIS_DOWN = new Set(['reject', 'local', 'allow'])

function invalid(message) {
  return typeError(message)
}

function errorFor(code, message, cause) {
  return new BulkheadError(code, message, cause === undefined ? undefined : { cause })
}

// The local Limiter's checks, with its messages.
function checkTimeout(value, option) {
  if (value === Number.POSITIVE_INFINITY) return undefined
  if (!(typeof value === 'number' && value >= 0 && value <= 2 ** 31 - 1)) {
    throw invalid(`${option} must be a number of milliseconds from 0 to 2147483647, or Infinity`)
  }
  return value
}

function checkSignal(signal, option) {
  if (signal === null || typeof signal !== 'object' || typeof signal.aborted !== 'boolean' ||
    typeof signal.addEventListener !== 'function') {
    throw invalid(`${option} must be an AbortSignal`)
  }
}

/**
 * Wait and run times of this process's tasks: log-linear buckets of
 * microseconds (exact below 8 us, then 8 per power of two: at most 12.5 %
 * off), a fixed 232 counters whatever the load.
 */
class Histogram {
  #counts = new Float64Array(232)
  #total = 0

  record(ms) {
    const us = Math.min(2 ** 31 - 1, Math.max(0, Math.round(ms * 1000)))
    let i = us
    if (us >= 8) {
      const e = 31 - Math.clz32(us)
      i = (e - 2) * 8 + ((us >>> (e - 3)) & 7)
    }
    this.#counts[i]++
    this.#total++
  }

  /** The `q` quantile in ms (0 when empty). */
  quantile(q) {
    if (this.#total === 0) return 0
    const want = Math.max(1, Math.ceil(q * this.#total))
    let seen = 0
    for (let i = 0; i < this.#counts.length; i++) {
      seen += this.#counts[i]
      if (seen >= want) {
        if (i < 8) return i / 1000
        const e = Math.floor(i / 8) + 2
        return ((8 + (i % 8)) * 2 ** (e - 3)) / 1000
      }
    }
    return 0
  }
}

// What kind of end a waiting task met (`task.stop`).
const STOP_ABORT = 1
const STOP_TIMEOUT = 2
const STOP_QUEUE_TIMEOUT = 3
const STOP_CLEAR = 4
const STOP_CLOSE = 5

/** One task of this process between run() and its permit. */
class Waiter {
  constructor(id, weight, priority, signal, deadline, queueDeadline, timeout, queueTimeout) {
    this.id = id
    this.weight = weight
    this.priority = priority
    this.signal = signal
    this.deadline = deadline
    this.queueDeadline = queueDeadline
    this.timeout = timeout
    this.queueTimeout = queueTimeout
    this.lease = '' // the lease id it asks for (a new one each time it joins the queue)
    this.member = '' // its entry in the Redis queue, once it has one
    this.granted = false // a release handed it the permit (a message said so)
    this.recheck = false // a message may have been missed: ask Redis before sleeping
    this.stop = 0 // why it stopped waiting (STOP_*), 0 while it waits
    this.counted = true // in pendingCount
    this.wake = undefined // ends the current sleep
    this.resolve = undefined
    this.reject = undefined
    this.since = performance.now()
  }
}

/**
 * The distributed Limiter: what `new Limiter({ redis, ... })` returns. See
 * docs/redis.md. Per process: `maxPending`, `queueTimeout`, `pause()`,
 * `clear()`, `onIdle()` and the counts concern this process's tasks; the
 * permits, the queue order and the rate are shared through Redis.
 */
class RedisLimiter extends Limiter {
  #client
  #name
  #where
  #label
  #keys
  #concurrency
  #maxPending
  #lease
  #timeout
  #queueTimeout
  #onRedisDown
  #channel
  #token = randomUUID()
  #seq = 0
  #ids = { acquire: 0, release: 0, leave: 0, renew: 0 }
  #keyset = 0
  #renewals = new Map() // renewal id -> what to do when its lease is lost
  #waiting = new Set() // Waiter
  #byLease = new Map() // lease id asked for -> Waiter, while it may be handed a permit
  #joins = 0
  #subscription = undefined
  #active = 0
  #held = 0 // weight of this process's permits not yet given back
  #pending = 0
  #paused = false
  #closed = false
  #closing = undefined
  #closedResolve = undefined
  #busy = 0 // acquire loops, releases and leaves still talking to Redis
  #clientClosed = false
  #lastRedisStats = undefined // the connection's counters when it was let go
  #redisOffset = undefined // Redis ms - performance.now(), from the last reply
  #local = undefined
  #rate = undefined
  #rateOnly = false
  #idleWaiters = []
  #wait = new Histogram()
  #run = new Histogram()
  #stats = {
    acquired: 0, completed: 0, rejected: 0, timedOut: 0, aborted: 0, queueFull: 0,
    fallbacks: 0, lostLeases: 0, allowedWhileDown: 0, rejectedWhileDown: 0,
  }

  /** @param {object} options see `LimiterOptions` (lib/p-limit.d.ts) and docs/redis.md */
  constructor(options) {
    super(options)
    checkOptions(options, REDIS_LIMITER_OPTIONS, 'new Limiter({ redis }) options')
    const {
      name, redis, concurrency, lease = DEFAULT_LEASE, timeout, onRedisDown = 'reject',
      maxPending = DEFAULT_MAX_PENDING, queueTimeout = DEFAULT_QUEUE_TIMEOUT,
    } = options
    if (typeof name !== 'string' || name === '') {
      throw invalid('options.name must be a non-empty string (required with options.redis)')
    }
    this.#rateOnly = concurrency === undefined && options.rate !== undefined
    const limit = concurrency ?? (options.rate !== undefined ? 2 ** 31 : undefined)
    if (!(Number.isInteger(limit) && limit >= 1 && limit <= 2 ** 31)) {
      throw invalid('options.concurrency must be an integer from 1 and up (required with options.redis unless options.rate is given)')
    }
    if (options.rate !== undefined) {
      const rate = options.rate
      if (rate === null || typeof rate !== 'object') throw invalid('options.rate must be { limit, interval }')
      if (!(Number.isInteger(rate.limit) && rate.limit >= 1 && rate.limit <= MAX_RATE_LIMIT)) {
        throw invalid(`options.rate.limit must be an integer from 1 to ${MAX_RATE_LIMIT} with options.redis (the sliding log in Redis holds one entry per start in the window)`)
      }
      if (!(Number.isInteger(rate.interval) && rate.interval >= 1)) {
        throw invalid('options.rate.interval must be a positive integer number of milliseconds with options.redis')
      }
      this.#rate = { limit: rate.limit, interval: rate.interval }
    }
    if (!ON_REDIS_DOWN.has(onRedisDown)) {
      throw invalid("options.onRedisDown must be 'reject', 'local' or 'allow'")
    }
    if (maxPending !== Number.POSITIVE_INFINITY && !(Number.isInteger(maxPending) && maxPending >= 1)) {
      throw invalid('options.maxPending must be an integer from 1 and up, or Infinity, with options.redis ' +
        '(a task waits at least one Redis round trip; for fail-fast use queueTimeout: 0)')
    }
    this.#timeout = timeout === undefined ? undefined : checkTimeout(timeout, 'options.timeout')
    this.#queueTimeout = checkTimeout(queueTimeout, 'options.queueTimeout')
    this.#client = new RedisClient(redis)
    const { commandTimeout, keyPrefix } = this.#client.options
    if (!(typeof lease === 'number' && Number.isFinite(lease) && lease >= 3 * commandTimeout)) {
      this.#client.close()
      throw invalid(`options.lease must be a number of milliseconds of at least 3 x commandTimeout (${3 * commandTimeout})`)
    }
    this.#name = name
    this.#where = `Limiter "${name}" (redis)`
    this.#label = checkLabel(options.label, name)
    this.#concurrency = limit
    this.#maxPending = maxPending
    this.#lease = lease
    this.#onRedisDown = onRedisDown
    const p = `${keyPrefix}limiter:{${name}}`
    this.#keys = [`${p}:h`, `${p}:u`, `${p}:q`, `${p}:m`, `${p}:r`]
    this.#channel = `${p}:wake:${this.#token}`
    this.#ids.acquire = this.#client.script(ACQUIRE)
    this.#ids.release = this.#client.script(RELEASE)
    this.#ids.leave = this.#client.script(LEAVE)
    this.#ids.renew = this.#client.script(RENEW)
    // Keys and the shared leading arguments cross into Rust once.
    this.#keyset = this.#client.keyset(this.#keys,
      [limit, lease, this.#rate?.limit ?? 0, this.#rate?.interval ?? 0])
    this.#client.configureRenewal(this.#ids.renew, this.#keys.slice(0, 2), lease / 3, lease,
      (renewal) => this.#renewals.get(renewal)?.())
  }

  /** The shared limiter's name. */
  get name() { return this.#name }
  /** The label naming this limiter in metrics and traces: `options.label`, else the name. */
  get label() { return this.#label }
  /** This process's tasks running now. */
  get activeCount() { return this.#active }
  /** This process's tasks waiting for a permit (from run() until granted). */
  get pendingCount() { return this.#pending }
  /** Whether `pause()` is in force in this process. */
  get isPaused() { return this.#paused }
  /** No native task slots in distributed mode (0). */
  get nativeSlots() { return 0 }

  /** The shared permits (fixed: every process passes its own to the scripts). */
  get concurrency() { return this.#concurrency }

  set concurrency(_value) {
    // Each process passes its concurrency to every script call; changing it
    // in one process would make the limit depend on who asks.
    throw invalid(`${this.#where}: concurrency cannot be changed in distributed mode ` +
      '(every process passes its own to Redis; create the Limiter with the new value everywhere)')
  }

  #notAfter() {
    if (this.#redisOffset === undefined) return 0
    return Math.floor(performance.now() + this.#redisOffset + this.#client.options.commandTimeout)
  }

  // Redis's clock minus ours, from a reply's Redis time. A reply handled late
  // (a busy event loop) understates it, and an understated offset would make
  // the next acquire's deadline pass before it was even sent: keep the
  // largest sample, unless Redis's clock moved back by more than a minute
  // (another server after a failover).
  #seen(now) {
    const sample = now - performance.now()
    const offset = this.#redisOffset
    if (offset === undefined || sample > offset || sample < offset - 60_000) this.#redisOffset = sample
  }

  // The process's channel: a lease id (its permit was handed over), '?' and a
  // lease id (check again: the rate limit frees a start), or null (subscribed
  // or resubscribed: anything sent before was missed, so every waiter checks).
  #subscribe() {
    if (this.#subscription !== undefined) return
    this.#subscription = this.#client.subscribe(this.#channel, (message) => {
      if (message === null) {
        for (const task of this.#byLease.values()) {
          task.recheck = true
          task.wake?.()
        }
        return
      }
      const check = message.startsWith('?')
      const task = this.#byLease.get(check ? message.slice(1) : message)
      if (task === undefined) return
      if (check) task.recheck = true
      else task.granted = true
      task.wake?.()
    })
  }

  // The lease id the task asks for from now on. A new one each time it joins
  // the queue, so a permit handed to an entry it left is never taken for
  // its own (the leave script passes that permit on).
  #newLease(task) {
    if (task.lease !== '') this.#byLease.delete(task.lease)
    task.lease = `${task.id}:${++this.#joins}`
    task.granted = false
    this.#byLease.set(task.lease, task)
  }

  // Out of the queue (and out of a permit handed over meanwhile).
  #leaveQueue(task) {
    if (task.member !== '') {
      this.#leave(task.member, task.weight)
      task.member = ''
    }
    this.#byLease.delete(task.lease)
    task.lease = ''
    task.granted = false
    task.recheck = false
  }

  /**
   * Runs `fn(signal)` once it holds `weight` of the shared permits; settles
   * as `fn` does, or with ERR_QUEUE_FULL / ERR_TIMEOUT / ERR_ABORTED /
   * ERR_CLOSED / ERR_UNAVAILABLE / ERR_LEASE_LOST.
   */
  run(fn, options) {
    if (limiterChannel.hasSubscribers) return this.#traced(fn, options)
    return this.#runTask(fn, options)
  }

  // A `bulkhead:limiter` trace around one task (docs/observability.md);
  // `waitTime` is filled in when the task starts.
  #traced(fn, options) {
    return traceLimiterTask(this.#runTask, this, this.#label, this.#name, fn, options)
  }

  async #runTask(fn, options) {
    if (typeof fn !== 'function') throw invalid('fn must be a function')
    if (this.#closed) throw errorFor(codes.CLOSED, 'the limiter is closed')
    let signal
    let timeout = this.#timeout
    let queueTimeout = this.#queueTimeout
    let priority = 0
    let weight = 1
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') throw invalid('options must be an object')
      checkOptions(options, RUN_OPTIONS, 'limiter.run() options')
      if (options.signal !== undefined) {
        checkSignal(options.signal, 'options.signal')
        signal = options.signal
      }
      if (options.timeout !== undefined) timeout = checkTimeout(options.timeout, 'options.timeout')
      if (options.queueTimeout !== undefined) queueTimeout = checkTimeout(options.queueTimeout, 'options.queueTimeout')
      if (options.priority !== undefined) priority = options.priority
      if (options.weight !== undefined) weight = options.weight
    }
    if (!(Number.isInteger(priority) && priority >= -(2 ** 31) && priority < 2 ** 31)) {
      throw invalid('options.priority must be a 32-bit integer')
    }
    if (!(Number.isInteger(weight) && weight >= 1 && weight <= this.#concurrency)) {
      throw invalid(`options.weight must be an integer from 1 to the concurrency (${this.#concurrency})`)
    }
    if (signal?.aborted) {
      this.#stats.aborted++
      throw errorFor(codes.ABORTED, 'the task was aborted', signal.reason)
    }
    if (this.#pending >= this.#maxPending) {
      this.#stats.queueFull++
      throw errorFor(codes.QUEUE_FULL, `${this.#where}: the queue is full (maxPending: ${this.#maxPending} in this process)`)
    }
    const now = performance.now()
    const deadline = timeout === undefined ? Number.POSITIVE_INFINITY : now + timeout
    const queueDeadline = queueTimeout === undefined ? Number.POSITIVE_INFINITY : now + queueTimeout
    const task = new Waiter(`${this.#token}:${++this.#seq}`, weight, priority, signal, deadline, queueDeadline,
      timeout, queueTimeout)
    this.#pending++
    this.#waiting.add(task)
    const onAbort = () => this.#stopTask(task, STOP_ABORT)
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      await new Promise((resolve, reject) => {
        task.resolve = resolve
        task.reject = reject
        this.#busy++
        this.#acquire(task).then(() => {
          // Granted: from here a stop no longer rejects the caller (the
          // running task's own signal handling takes over).
          task.reject = undefined
          resolve()
        }, reject).finally(() => {
          this.#busy--
          if (this.#closed) this.#closeClient()
        })
      })
    } catch (err) {
      if (err?.code !== codes.UNAVAILABLE) throw err
      this.#byLease.delete(task.lease)
      this.#cleanUp(`${task.lease}|${task.weight}`)
      return this.#whenDown(err, fn, options)
    } finally {
      signal?.removeEventListener('abort', onAbort)
      if (task.stop !== 0) this.#byLease.delete(task.lease)
      this.#unpend(task)
      task.resolve = task.reject = task.wake = task.signal = undefined
    }
    this.#wait.record(performance.now() - task.since)
    return this.#runHolding(`${task.lease}|${weight}`, weight, fn, signal, deadline, timeout)
  }

  // Ends a task's wait: its caller is rejected at once; its acquire loop
  // (which may be in a round trip) leaves the Redis queue or gives back a
  // permit granted too late.
  #stopTask(task, why) {
    if (task.stop !== 0 || task.reject === undefined) return
    task.stop = why
    let error
    if (why === STOP_ABORT) {
      this.#stats.aborted++
      error = errorFor(codes.ABORTED, 'the task was aborted', task.signal.reason)
    } else if (why === STOP_TIMEOUT) {
      this.#stats.timedOut++
      error = errorFor(codes.TIMEOUT, `${this.#where}: the task timed out after ${task.timeout} ms`)
    } else if (why === STOP_QUEUE_TIMEOUT) {
      this.#stats.timedOut++
      error = errorFor(codes.TIMEOUT,
        `${this.#where}: the task waited ${task.queueTimeout} ms for a permit (queueTimeout) and was dropped`)
    } else if (why === STOP_CLEAR) {
      this.#stats.aborted++
      error = errorFor(codes.ABORTED, 'the task was cleared from the queue')
    } else {
      error = errorFor(codes.CLOSED, 'the limiter is closed')
    }
    task.reject(error)
    this.#unpend(task) // at once, as in local mode
    task.wake?.()
  }

  #unpend(task) {
    if (!task.counted) return
    task.counted = false
    this.#waiting.delete(task)
    this.#pending--
    this.#notify()
  }

  // Stops the task if a deadline passed; returns whether it is stopped.
  #expired(task) {
    if (task.stop !== 0) return true
    const now = performance.now()
    if (now >= task.queueDeadline && task.queueDeadline < task.deadline) this.#stopTask(task, STOP_QUEUE_TIMEOUT)
    else if (now >= task.deadline) this.#stopTask(task, STOP_TIMEOUT)
    return task.stop !== 0
  }

  // The task's wait: acquire in Redis (queueing there), sleep until a
  // release hands the permit over (or a check is due); leave the Redis queue
  // while paused or once stopped. Resolves when the permit is this task's
  // (task.lease is its id); rejects with ERR_UNAVAILABLE.
  async #acquire(task) {
    this.#subscribe()
    for (;;) {
      if (this.#expired(task) || this.#paused) {
        this.#leaveQueue(task)
        if (task.stop !== 0) return
        // Paused: wait here, out of the Redis queue (where this process's
        // waiter at the head would hold up every other process), until
        // resume(), a stop or a deadline.
        await this.#sleep(task, Math.min(task.deadline, task.queueDeadline) - performance.now())
        continue
      }
      if (task.granted) return this.#granted(task)
      if (task.lease === '') this.#newLease(task)
      task.recheck = false
      const reply = await this.#client.evalWith(this.#ids.acquire, this.#keyset, [
        task.member, task.lease, String(task.weight), String(task.priority), this.#channel, String(this.#notAfter()),
      ])
      this.#seen(reply[1])
      if (reply[0] === 1 || task.granted) {
        if (task.stop === 0 && !this.#paused) return this.#granted(task)
        // Stopped or paused meanwhile: the permit goes back.
        this.#release(`${task.lease}|${task.weight}`)
        task.member = ''
        this.#byLease.delete(task.lease)
        task.lease = ''
        task.granted = false
        continue
      }
      if (reply[0] === -1) {
        throw errorFor(codes.UNAVAILABLE, 'redis unavailable: the acquire ran after its deadline')
      }
      task.member = reply[2]
      if (task.recheck) continue
      const retryMs = reply[3]
      const poll = retryMs > 0 ? retryMs : Math.min(MAX_POLL, this.#lease / 3)
      await this.#sleep(task, Math.min(poll, Math.min(task.deadline, task.queueDeadline) - performance.now()))
    }
  }

  #granted(task) {
    this.#byLease.delete(task.lease)
    task.member = ''
    task.granted = false
    this.#held += task.weight
  }

  // Until a wake-up (the permit handed over, a check, resume(), a stop) or `ms`.
  #sleep(task, ms) {
    if (task.granted || task.recheck) return Promise.resolve()
    return new Promise((resolve) => {
      let timer
      const wake = () => {
        if (task.wake !== wake) return
        task.wake = undefined
        clearTimeout(timer)
        resolve()
      }
      task.wake = wake
      // A deadline wait keeps the process alive, as local mode's does.
      if (ms !== Number.POSITIVE_INFINITY) timer = setTimeout(wake, Math.max(0, Math.min(2 ** 31 - 1, ms)))
    })
  }

  // Leave the queue in Redis (best effort: a waiter we fail to remove lapses
  // after one lease, since we stop refreshing it).
  #leave(member, weight) {
    this.#busy++
    this.#script(this.#ids.leave, member, String(weight)).catch(() => {}).finally(() => this.#settled())
  }

  // `holder`: "lease id|weight".
  #release(holder) {
    this.#busy++
    this.#script(this.#ids.release, holder).catch(() => {}).finally(() => this.#settled())
  }

  // A release or leave: the shared arguments (the keyset's), then its own.
  #script(id, ...args) {
    return this.#client.evalWith(id, this.#keyset, args)
  }

  #settled() {
    this.#busy--
    if (this.#closed) this.#closeClient()
  }

  async #whenDown(err, fn, options) {
    switch (this.#onRedisDown) {
      case 'allow':
        this.#stats.allowedWhileDown++
        return fn(options?.signal ?? new TaskSignal())
      case 'local':
        this.#stats.fallbacks++
        // Sized as this instance's own concurrency: N processes may then run
        // up to N x concurrency between them while Redis is away.
        this.#local ??= new Limiter({
          concurrency: this.#concurrency,
          timeout: this.#timeout,
          rate: this.#rate,
          maxPending: this.#maxPending,
          queueTimeout: this.#queueTimeout ?? Number.POSITIVE_INFINITY,
        })
        return this.#local.run(fn, options)
      default:
        this.#stats.rejectedWhileDown++
        throw err
    }
  }

  async #runHolding(holder, weight, fn, signal, deadline, timeout) {
    this.#active++
    this.#stats.acquired++
    const started = performance.now()
    const controller = new AbortController()
    let settleEarly
    const early = new Promise((resolve, reject) => { settleEarly = reject })
    early.catch(() => {})
    const abort = (error) => {
      if (controller.signal.aborted) return
      controller.abort(error)
      settleEarly(error)
    }
    const onAbort = () => {
      this.#stats.aborted++
      abort(errorFor(codes.ABORTED, 'the task was aborted', signal.reason))
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    if (signal?.aborted) onAbort() // between the grant and here
    let timer
    if (deadline !== Number.POSITIVE_INFINITY) {
      timer = setTimeout(() => {
        this.#stats.timedOut++
        abort(errorFor(codes.TIMEOUT, `${this.#where}: the task timed out after ${timeout} ms`))
      }, Math.max(0, deadline - performance.now()))
    }
    const renewal = this.#client.startLeaseRenewal(holder)
    this.#renewals.set(renewal, () => {
      this.#stats.lostLeases++
      abort(errorFor(codes.LEASE_LOST, `the permit's lease in Redis was lost (${this.#where})`))
    })
    const work = (async () => fn(controller.signal))()
    this.#busy++
    // The permit is held until fn settles (an aborted fn may still be using
    // the upstream), then given back.
    work.then(() => this.#stats.completed++, () => this.#stats.rejected++).finally(() => {
      this.#run.record(performance.now() - started)
      this.#client.stopRenewal(renewal)
      this.#renewals.delete(renewal)
      this.#active--
      this.#held -= weight
      this.#notify()
      this.#script(this.#ids.release, holder).catch(() => {}).finally(() => this.#settled())
    })
    try {
      return await Promise.race([work, early])
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
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
      this.#script(this.#ids.release, id).then(
        () => { if (++successes < 2) setTimeout(attempt, 1000).unref() },
        () => setTimeout(attempt, 200).unref(),
      )
    }
    setTimeout(attempt, 0).unref()
  }

  /**
   * This process stops starting tasks: its waiters leave the Redis queue
   * (so they hold up no other process) and wait here; running tasks go on.
   */
  pause() {
    this.#paused = true
    for (const task of this.#waiting) task.wake?.()
  }

  /** This process starts tasks again: its waiters rejoin the Redis queue (at its back, by priority). */
  resume() {
    if (!this.#paused) return
    this.#paused = false
    for (const task of this.#waiting) task.wake?.()
  }

  /** Rejects this process's waiting tasks with ERR_ABORTED; they leave the Redis queue. Running tasks go on. */
  clear() {
    for (const task of [...this.#waiting]) this.#stopTask(task, STOP_CLEAR)
  }

  /**
   * Refuses new tasks (ERR_CLOSED), rejects this process's waiters with
   * ERR_CLOSED (they leave the Redis queue); resolves once its running
   * tasks finished, their permits are back and the connection is let go.
   */
  close() {
    if (this.#closing !== undefined) return this.#closing
    this.#closed = true
    this.#closing = new Promise((resolve) => { this.#closedResolve = resolve })
    for (const task of [...this.#waiting]) this.#stopTask(task, STOP_CLOSE)
    if (this.#subscription !== undefined) this.#client.unsubscribe(this.#channel, this.#subscription)
    const local = this.#local?.close()
    // After the stopped waiters have sent their leave (a few microtasks on).
    setImmediate(() => this.#closeClient())
    return local === undefined ? this.#closing : Promise.all([this.#closing, local]).then(() => {})
  }

  // Lets go of Redis once the permits of tasks still running are given back.
  #closeClient() {
    if (this.#active === 0 && this.#busy === 0 && !this.#clientClosed) {
      this.#clientClosed = true
      this.#lastRedisStats = this.#client.stats()
      this.#client.close()
      this.#closedResolve()
    }
  }

  /** Resolves when this process's tasks all finished and none waits. */
  onIdle() { return this.#when(() => this.#active === 0 && this.#pending === 0) }

  /** Resolves when none of this process's tasks waits. */
  onEmpty() { return this.#when(() => this.#pending === 0) }

  /** Resolves when fewer than `limit` of this process's tasks wait. */
  onSizeLessThan(limit) {
    if (typeof limit !== 'number' || !(limit > 0)) {
      return Promise.reject(invalid('limit must be a positive number'))
    }
    return this.#when(() => this.#pending < limit)
  }

  #when(ready) {
    if (ready()) return Promise.resolve()
    return new Promise((resolve) => this.#idleWaiters.push({ ready, resolve }))
  }

  #notify() {
    if (this.#idleWaiters.length === 0) return
    const kept = []
    for (const waiter of this.#idleWaiters) {
      if (waiter.ready()) waiter.resolve()
      else kept.push(waiter)
    }
    this.#idleWaiters = kept
  }

  // map()/mapIterable() are the local Limiter's (they call this.run()); by
  // default as many items in flight as the shared concurrency, at most
  // maxPending (more would only be refused with ERR_QUEUE_FULL), 16 with
  // only a rate.
  #mapOptions(options) {
    if (options === null || typeof options !== 'object' || options.concurrency !== undefined) return options
    const concurrency = Math.min(this.#rateOnly ? 16 : this.#concurrency, this.#maxPending)
    return { ...options, concurrency }
  }

  /** See Limiter#map: `fn(item, index, signal)` over `source` through run(), results in order. */
  map(source, fn, options = {}) {
    return super.map(source, fn, this.#mapOptions(options))
  }

  /** See Limiter#mapIterable. */
  mapIterable(source, fn, options = {}) {
    return super.mapIterable(source, fn, this.#mapOptions(options))
  }

  /**
   * This process's counters and wait/run percentiles (ms), the local
   * Limiter's fields (`permitsInUse`: the weight this process holds) plus
   * distributed ones and `redis` (the connection's counters).
   */
  stats() {
    return {
      active: this.#active,
      pending: this.#pending,
      permitsInUse: this.#held,
      completed: this.#stats.completed,
      rejected: this.#stats.rejected,
      timedOut: this.#stats.timedOut,
      aborted: this.#stats.aborted,
      queueFull: this.#stats.queueFull,
      waitP50: this.#wait.quantile(0.5),
      waitP90: this.#wait.quantile(0.9),
      waitP99: this.#wait.quantile(0.99),
      runP50: this.#run.quantile(0.5),
      runP90: this.#run.quantile(0.9),
      runP99: this.#run.quantile(0.99),
      acquired: this.#stats.acquired,
      fallbacks: this.#stats.fallbacks,
      lostLeases: this.#stats.lostLeases,
      allowedWhileDown: this.#stats.allowedWhileDown,
      rejectedWhileDown: this.#stats.rejectedWhileDown,
      redis: this.#lastRedisStats ?? this.#client.stats(),
    }
  }
}

module.exports = { RedisLimiter, DEFAULT_LEASE, MAX_RATE_LIMIT }
