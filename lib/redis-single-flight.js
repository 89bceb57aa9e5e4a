'use strict'
// `new SingleFlight({ name, redis, timeout, maxKeys, lease, onRedisDown, serializer })`:
// concurrent `do(key, fn)` calls for one key in any process share one run of
// `fn`. At-least-once, not exactly-once: see docs/redis.md.
//
// Keys, all under the hash tag `{name}` (one Cluster slot):
//   P:l:<key>    the flight's lock: the leader's flight token, with a lease
//                (renewed from the addon's Rust runtime while fn runs)
//   P:v:<token>  the outcome of flight <token>, kept RESULT_TTL ms for the
//                flight's followers only (keyed by flight, never served to
//                a later flight of the key)
//   P:z:<token>  a forgotten flight still running (forget(key) moved its
//                lock here, lease and all): its followers keep waiting
//   P:done       pub/sub channel: "<token>\n<outcome>" when a flight settles,
//                "<token>\n" when its leader gave it up (take over)
// Within one process, callers of a key join one local promise first, so a
// process makes one Redis call per key per flight, not one per caller. A
// caller with a signal can leave; when this process's last caller leaves (or
// its deadline passes), a follower stops waiting and a leader aborts fn's
// signal and gives the flight up, so other processes' callers take over.
//
// RedisSingleFlight extends SingleFlight (so `instanceof` holds and the
// local wrap() serves both modes); the local base state stays empty.
const { randomUUID } = require('node:crypto')
const { RedisClient } = require('./redis.js')
const { BulkheadError, codes, checkOptions, typeError } = require('./errors.js')
const { SingleFlight } = require('./single-flight.js')
const { TaskSignal } = require('./task-signal.js')
const { singleFlightChannel, checkLabel } = require('./tracing.js')

// What distributed mode supports; anything else is an ERR_INVALID_ARG naming it.
const REDIS_FLIGHT_OPTIONS = new Set(['name', 'redis', 'timeout', 'maxKeys', 'lease', 'onRedisDown', 'serializer', 'label'])
const CALL_OPTIONS = new Set(['signal', 'timeout'])

/** Default flight deadline in this process (ms), as in local mode. */
const DEFAULT_TIMEOUT = 30_000
/** Default `maxKeys` (per process), as in local mode. */
const DEFAULT_MAX_KEYS = 10_000

const DEFAULT_LEASE = 30_000
const MAX_POLL = 1_000
/** How long a flight's outcome stays for its followers (ms). */
const RESULT_TTL = 10_000

// KEYS: lock. ARGV: token, lease. {1} leader, {0, holderToken} follower.
const JOIN = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1} end
return {0, redis.call('GET', KEYS[1]) or ''}
`
// JOIN for a group that reads one more key when it takes the lock (see
// LEAD_WITH): KEYS: lock, that key. ARGV: token, lease. {1, value, pttl} or
// {1} leader (the key's value and PTTL, read after the lock was taken, if it
// exists), {0, holderToken} follower.
const JOIN_PEEK = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local v = redis.call('GET', KEYS[2])
  if v then return {1, v, redis.call('PTTL', KEYS[2])} end
  return {1}
end
return {0, redis.call('GET', KEYS[1]) or ''}
`
// KEYS: lock, value of token, forgotten marker of token. ARGV: token.
// {2, outcome} done, {0} running, {1} the leader is gone without an outcome
// (take over).
const CHECK = `
local v = redis.call('GET', KEYS[2])
if v then return {2, v} end
if redis.call('GET', KEYS[1]) == ARGV[1] then return {0} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {0} end
return {1}
`
// KEYS: lock, value of token, forgotten marker. ARGV: token, outcome, ttl, channel.
const SETTLE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('DEL', KEYS[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[1] .. '\\n' .. ARGV[2])
return 1
`
// SETTLE with a write the leader's fn asked for (see LEAD_WITH), made first
// in the same script: KEYS: lock, value of token, forgotten marker, written
// key. ARGV: token, outcome, ttl, channel, written value, its PX, a channel
// and a message to publish with it.
const SETTLE_WRITE = `
redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6])
redis.call('PUBLISH', ARGV[7], ARGV[8])
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('DEL', KEYS[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[1] .. '\\n' .. ARGV[2])
return 1
`
// KEYS: lock. ARGV: token. Deletes the lock if it is still ours.
const UNLOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`
// KEYS: lock, forgotten marker. ARGV: token, channel. The leader gives the
// flight up without an outcome (its callers all left, or its deadline
// passed): the lock goes, and followers, told by an empty outcome, re-check
// and take over.
const ABANDON = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[2], ARGV[1] .. '\\n')
return 1
`
// KEYS: lock, forgotten marker. ARGV: token, lease. 0 = lost.
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 1
end
return 0
`
// KEYS: lock. ARGV: prefix of forgotten markers. forget(key): the key's
// running flight (if any) moves from the lock to a marker named by its token
// (same hash tag, so the same Cluster slot; the name is known only here),
// with the lock's remaining lease. The next do() takes the lock and starts a
// new flight; the old flight's followers still wait for its outcome.
const FORGET = `
local t = redis.call('GET', KEYS[1])
if not t then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 1 then ttl = 1 end
redis.call('SET', ARGV[1] .. t, '1', 'PX', ttl)
redis.call('DEL', KEYS[1])
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


function checkTimeout(value, name) {
  if (value === Number.POSITIVE_INFINITY) return value
  if (typeof value !== 'number' || !(value > 0)) {
    throw typeError(`${name} must be a positive number of milliseconds or Infinity`)
  }
  return value
}

function checkKey(key) {
  if (typeof key !== 'string') {
    throw typeError(`key must be a string with options.redis, got ${key === null ? 'null' : typeof key}`)
  }
}

function aborted(signal) {
  return new BulkheadError(codes.ABORTED, 'the call was aborted', { cause: signal.reason })
}

// A follower's wait ended because this process no longer wants the outcome.
const STOPPED = Symbol('stopped')

// Not a public API: `group[LEAD_WITH](peekKeyOf)` makes a leader's lock
// also read the key `peekKeyOf(key)` (one round trip instead of a read after
// the lock), and lets the leader's fn ask for one write that goes to Redis in
// the same script as the flight's outcome. Its fn is then called as
// `fn(signal, lead)`, `lead` being `{ peek, write }` when this process leads
// in Redis (undefined when it runs fn without Redis): `peek` is the join's
// reply (`[1, value, pttl]`, or `[1]` when the key does not exist), and fn may
// set `write` to `{ key, value, px, channel, message, written(), failed(err),
// orphaned() }`: written or failed when the settle's reply comes, orphaned
// when the flight was given up before it settled (the write is then the
// caller's to make). TieredCache's loads use it (lib/tiered-cache.js).
const LEAD_WITH = Symbol('bulkhead.leadWith')

/** This process's call for one key: its local callers share it. */
class Entry {
  constructor(key, timeout) {
    this.key = key
    this.timeout = timeout
    this.calls = 1 // callers that joined it in this process
    this.waiting = 0 // callers with a signal still waiting
    this.steady = 0 // callers without a signal (they cannot leave)
    this.done = false // ended: settled, timed out, or every caller left
    this.mapped = true // still what do(key) joins (not forgotten)
    this.outcome = undefined // Promise<{ ok, value, shared }>, never rejects
    this.settle = undefined
    this.timer = undefined
    this.controller = undefined // fn's signal when this process runs fn
    this.leading = undefined // { lock, token, renewal } while it leads in Redis
    this.trace = undefined // the first caller's bulkhead:single-flight context, when traced
    this.wake = undefined // ends a follower's wait
  }
}

/**
 * The distributed SingleFlight: what `new SingleFlight({ redis, ... })`
 * returns. See docs/redis.md. It extends SingleFlight, so `instanceof`
 * holds and the local `wrap()` (which only calls `do()`) serves both modes.
 */
class RedisSingleFlight extends SingleFlight {
  #client
  #prefix
  #channel
  #lease
  #timeout
  #maxKeys
  #onRedisDown
  #serializer
  #ids
  #local = new Map() // key -> Entry
  #live = 0 // entries not yet ended (forgotten ones too)
  #forgets = new Map() // key -> promise of its FORGET in Redis
  #followers = new Map() // token -> Set(wake(outcomeText|null))
  #peekKeyOf = undefined // LEAD_WITH
  #subscription = undefined
  #closed = false
  #name
  #label
  #lastRedisStats = undefined // the connection's counters when it was let go
  #stats = {
    flights: 0, calls: 0, shared: 0, timeouts: 0, aborts: 0, errors: 0,
    led: 0, followed: 0, joinedLocally: 0, takeovers: 0, fallbacks: 0, polled: 0,
  }

  /** @param {object} options see `SingleFlightOptions` (lib/single-flight.d.ts) and docs/redis.md */
  constructor(options) {
    super(options)
    checkOptions(options, REDIS_FLIGHT_OPTIONS, 'new SingleFlight({ redis }) options')
    const {
      name, redis, timeout = DEFAULT_TIMEOUT, maxKeys = DEFAULT_MAX_KEYS, lease = DEFAULT_LEASE,
      onRedisDown = 'local', serializer = JSON_SERIALIZER,
    } = options
    if (typeof name !== 'string' || name === '') {
      throw typeError('options.name must be a non-empty string (required with options.redis)')
    }
    if (onRedisDown !== 'local' && onRedisDown !== 'reject') {
      throw typeError("options.onRedisDown must be 'local' or 'reject'")
    }
    this.#name = name
    this.#label = checkLabel(options.label, name)
    this.#timeout = checkTimeout(timeout, 'options.timeout')
    if (maxKeys !== Number.POSITIVE_INFINITY && !(Number.isSafeInteger(maxKeys) && maxKeys >= 1)) {
      throw typeError('options.maxKeys must be a positive integer or Infinity')
    }
    if (serializer === null || typeof serializer !== 'object' ||
      typeof serializer.serialize !== 'function' || typeof serializer.deserialize !== 'function') {
      throw typeError('options.serializer must be { serialize(value): string, deserialize(string) }')
    }
    this.#client = new RedisClient(redis)
    const { commandTimeout, keyPrefix } = this.#client.options
    if (!(typeof lease === 'number' && Number.isFinite(lease) && lease >= 3 * commandTimeout)) {
      this.#client.close()
      throw typeError(`options.lease must be a number of milliseconds of at least 3 x commandTimeout (${3 * commandTimeout})`)
    }
    this.#prefix = `${keyPrefix}flight:{${name}}`
    this.#channel = `${this.#prefix}:done`
    this.#lease = lease
    this.#maxKeys = maxKeys
    this.#onRedisDown = onRedisDown
    this.#serializer = serializer
    this.#ids = {
      join: this.#client.script(JOIN),
      check: this.#client.script(CHECK),
      settle: this.#client.script(SETTLE),
      renew: this.#client.script(RENEW),
      unlock: this.#client.script(UNLOCK),
      abandon: this.#client.script(ABANDON),
      forget: this.#client.script(FORGET),
    }
  }

  /** Not a public API: see LEAD_WITH above. */
  [LEAD_WITH](peekKeyOf) {
    this.#peekKeyOf = peekKeyOf
    this.#ids.joinPeek = this.#client.script(JOIN_PEEK)
    this.#ids.settleWrite = this.#client.script(SETTLE_WRITE)
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

  /** Runs `fn(signal)` once for every caller of `key` in any process while it is in progress. */
  do(key, fn, options) {
    if (singleFlightChannel.hasSubscribers) return this.#traced(key, fn, options, false)
    return this.#call(key, fn, options, false, undefined)
  }

  /** Like `do`, resolving to `{ value, shared }`. */
  doShared(key, fn, options) {
    if (singleFlightChannel.hasSubscribers) return this.#traced(key, fn, options, true)
    return this.#call(key, fn, options, true, undefined)
  }

  /** The shared group's name. */
  get name() { return this.#name }

  /** The label naming this group in metrics and traces: `options.label`, else the name. */
  get label() { return this.#label }

  // A `bulkhead:single-flight` trace around one call (docs/observability.md):
  // `joined` when the call joined a flight already in progress here or led
  // by another process, `leader` when this call's process ran fn for it.
  #traced(key, fn, options, withShared) {
    const context = { label: this.#label, name: this.#name, key, joined: false, leader: false }
    return singleFlightChannel.tracePromise(this.#call, context, this, key, fn, options, withShared, context)
  }

  /**
   * The next call for `key` (in any process) starts a new flight; callers of
   * the one in progress, here and elsewhere, still get its outcome. Returns
   * whether this process had a call for `key` in progress. Redis is told at
   * once; this process's next call for `key` waits for that.
   */
  forget(key) {
    checkKey(key)
    if (this.#closed) return false
    const entry = this.#local.get(key)
    if (entry !== undefined) {
      entry.mapped = false
      this.#local.delete(key)
    }
    const sent = this.#client.eval(this.#ids.forget, [`${this.#prefix}:l:${key}`], [`${this.#prefix}:z:`])
      .catch(() => {}) // Redis away: nothing to move (the lock lapses with its lease)
    this.#forgets.set(key, sent)
    sent.then(() => { if (this.#forgets.get(key) === sent) this.#forgets.delete(key) })
    return entry !== undefined
  }

  /** Whether this process has a call for `key` in progress. */
  inFlight(key) {
    checkKey(key)
    return this.#local.has(key)
  }

  /** Keys this process has a call in progress for. */
  get size() {
    return this.#local.size
  }

  #call(key, fn, options, withShared, trace) {
    checkKey(key)
    if (typeof fn !== 'function') throw typeError('fn must be a function')
    let signal
    let timeout = this.#timeout
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') throw typeError('options must be an object')
      checkOptions(options, CALL_OPTIONS, 'group.do() options')
      signal = options.signal
      if (signal != null && !(signal instanceof AbortSignal)) throw typeError('options.signal must be an AbortSignal')
      if (options.timeout !== undefined) timeout = checkTimeout(options.timeout, 'options.timeout')
    }
    if (this.#closed) return Promise.reject(new BulkheadError(codes.CLOSED, 'the group is closed'))
    if (signal != null && signal.aborted) {
      this.#stats.aborts++
      return Promise.reject(aborted(signal))
    }
    let entry = this.#local.get(key)
    if (entry !== undefined) {
      if (trace !== undefined) trace.joined = true
      this.#stats.joinedLocally++
      this.#stats.calls++
      this.#stats.shared++
      entry.calls++
      return this.#wait(entry, signal, withShared)
    }
    if (this.#live >= this.#maxKeys) {
      return Promise.reject(new BulkheadError(codes.QUEUE_FULL,
        `${this.#live} flights are in progress in this process (maxKeys: ${this.#maxKeys})`))
    }
    entry = new Entry(key, timeout)
    entry.trace = trace
    entry.outcome = new Promise((resolve) => { entry.settle = resolve })
    this.#local.set(key, entry)
    this.#live++
    this.#stats.flights++
    this.#stats.calls++
    const promise = this.#wait(entry, signal, withShared)
    if (timeout !== Number.POSITIVE_INFINITY) {
      entry.timer = setTimeout(() => this.#expire(entry), Math.min(2 ** 31 - 1, timeout))
    }
    this.#flight(entry, key, fn).then(
      (outcome) => { if (outcome !== undefined) this.#finish(entry, outcome) },
      (err) => this.#finish(entry, { ok: false, value: err }),
    )
    return promise
  }

  // A caller's promise: the entry's outcome; a caller with a signal leaves
  // when it fires.
  #wait(entry, signal, withShared) {
    const settled = (outcome) => {
      if (!outcome.ok) throw outcome.value
      return withShared ? { value: outcome.value, shared: entry.calls > 1 || outcome.shared === true } : outcome.value
    }
    if (signal == null) {
      entry.steady++
      return entry.outcome.then(settled)
    }
    entry.waiting++
    return new Promise((resolve, reject) => {
      let left = false
      const onAbort = () => {
        left = true
        this.#stats.aborts++
        reject(aborted(signal))
        if (--entry.waiting === 0 && entry.steady === 0) this.#abandon(entry)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      entry.outcome.then((outcome) => {
        signal.removeEventListener('abort', onAbort)
        if (left) return
        entry.waiting--
        try {
          resolve(settled(outcome))
        } catch (err) {
          reject(err)
        }
      })
    })
  }

  // The entry ends with `outcome` for its callers.
  #finish(entry, outcome) {
    if (entry.done) return
    this.#end(entry)
    if (!outcome.ok) this.#stats.errors++
    entry.settle(outcome)
  }

  #end(entry) {
    entry.done = true
    this.#live--
    clearTimeout(entry.timer)
    if (entry.mapped && this.#local.get(entry.key) === entry) this.#local.delete(entry.key)
    entry.mapped = false
    entry.wake?.()
  }

  // The deadline passed: its callers reject with ERR_TIMEOUT, this process's
  // key is free, and, if it leads, fn's signal fires and other processes
  // take over.
  #expire(entry) {
    if (entry.done) return
    this.#stats.timeouts++
    const err = new BulkheadError(codes.TIMEOUT,
      `the flight for key ${entry.key} did not settle within ${entry.timeout} ms`)
    this.#end(entry)
    entry.settle({ ok: false, value: err })
    this.#giveUp(entry, err)
  }

  // Every caller of the entry left: nobody here wants the outcome.
  #abandon(entry) {
    if (entry.done) return
    this.#end(entry)
    entry.settle({ ok: false, value: new BulkheadError(codes.ABORTED, 'every caller of this flight left') })
    this.#giveUp(entry, new BulkheadError(codes.ABORTED, 'every caller of this flight left'))
  }

  // A leader stops fn and gives the flight up in Redis (followers elsewhere
  // take over); a follower just stops waiting (#end woke it).
  #giveUp(entry, reason) {
    entry.controller?.abort(reason)
    entry.controller = undefined
    const leading = entry.leading
    if (leading === undefined) return
    entry.leading = undefined
    this.#client.stopRenewal(leading.renewal)
    this.#client.eval(this.#ids.abandon, [leading.lock, `${this.#prefix}:z:${leading.token}`],
      [leading.token, this.#channel]).catch(() => {
      // Redis away: followers see the lock lapse with its lease.
    })
  }

  // This process's part of the flight: lead it (run fn) or follow another
  // process's; take over if that leader dies. Resolves to the outcome, or
  // undefined once the entry ended without one.
  async #flight(entry, key, fn) {
    const forgetting = this.#forgets.get(key)
    if (forgetting !== undefined) await forgetting
    const lock = `${this.#prefix}:l:${key}`
    this.#subscribe()
    for (;;) {
      if (entry.done) return undefined
      const token = randomUUID()
      let reply
      try {
        reply = this.#peekKeyOf === undefined
          ? await this.#client.eval(this.#ids.join, [lock], [token, this.#lease])
          : await this.#client.eval(this.#ids.joinPeek, [lock, this.#peekKeyOf(key)], [token, this.#lease])
      } catch (err) {
        if (err?.code === codes.UNAVAILABLE) this.#cleanUp(lock, token)
        if (err?.code !== codes.UNAVAILABLE || this.#onRedisDown === 'reject') throw err
        this.#stats.fallbacks++
        if (entry.trace !== undefined) entry.trace.leader = true
        // Dedupe within this process only (its callers share this entry).
        return this.#runFn(entry, fn)
      }
      if (entry.done) {
        // Nobody here wants it any more: give back a lock just taken.
        if (reply[0] === 1) {
          this.#client.eval(this.#ids.abandon, [lock, `${this.#prefix}:z:${token}`], [token, this.#channel])
            .catch(() => {})
        }
        return undefined
      }
      if (entry.trace !== undefined) {
        entry.trace.leader = reply[0] === 1
        entry.trace.joined = reply[0] !== 1
      }
      if (reply[0] === 1) return this.#lead(entry, lock, token, fn, reply)
      const leader = reply[1]
      if (leader === '') continue
      const result = await this.#follow(entry, lock, leader)
      if (result === STOPPED) return undefined
      if (result !== undefined) return result
      this.#stats.takeovers++ // the leader died or gave up: try to lead
    }
  }

  // Runs fn with the entry's signal (and `lead`, see LEAD_WITH); resolves
  // to its outcome.
  async #runFn(entry, fn, lead) {
    const signal = new TaskSignal()
    entry.controller = signal
    try {
      return { ok: true, value: await (lead === undefined ? fn(signal) : fn(signal, lead)) }
    } catch (err) {
      return { ok: false, value: err }
    } finally {
      if (entry.controller === signal) entry.controller = undefined
    }
  }

  async #lead(entry, lock, token, fn, joinReply) {
    this.#stats.led++
    const renewal = this.#client.startRenewal(this.#ids.renew, [lock, `${this.#prefix}:z:${token}`],
      [token, this.#lease], this.#lease / 3, this.#lease, () => {})
    entry.leading = { lock, token, renewal }
    const lead = this.#peekKeyOf === undefined ? undefined : { peek: joinReply, write: undefined }
    const outcome = await this.#runFn(entry, fn, lead)
    const write = lead?.write
    if (entry.leading === undefined) {
      write?.orphaned()
      return undefined // given up (#giveUp)
    }
    entry.leading = undefined
    this.#client.stopRenewal(renewal)
    let text
    try {
      text = encodeOutcome(this.#serializer, outcome.ok, outcome.value)
    } catch (err) {
      // The serializer cannot carry the value: the other processes get its
      // error, this one still gets the value.
      text = encodeOutcome(this.#serializer, false, err)
    }
    const keys = [lock, `${this.#prefix}:v:${token}`, `${this.#prefix}:z:${token}`]
    const args = [token, text, RESULT_TTL, this.#channel]
    try {
      if (write === undefined) {
        await this.#client.eval(this.#ids.settle, keys, args)
      } else {
        keys.push(write.key)
        args.push(write.value, write.px, write.channel, write.message)
        await this.#client.eval(this.#ids.settleWrite, keys, args)
        write.written()
      }
    } catch (err) {
      // Followers see the lock lapse and take over (at-least-once).
      write?.failed(err)
    }
    return outcome
  }

  // Resolves to { ok, value, shared } when flight `token` settles, undefined
  // when its leader is gone without an outcome, STOPPED when the entry ended.
  async #follow(entry, lock, token) {
    this.#stats.followed++
    const valueKey = `${this.#prefix}:v:${token}`
    const marker = `${this.#prefix}:z:${token}`
    let set = this.#followers.get(token)
    if (set === undefined) this.#followers.set(token, set = new Set())
    try {
      for (;;) {
        // Listen before checking: the settle may be published while the
        // check is on its way, and its message may reach this thread before
        // the check's reply is handled (they come on different connections,
        // and may be delivered in one batch). Listening only after the reply
        // lost such messages, and the follower slept until the poll below
        // (measured: fetches of ~1 s in every cold-burst run of
        // bench/tiered-cache.bench.mjs).
        let wake
        const woken = new Promise((resolve) => {
          wake = resolve
        })
        const stop = () => wake(null)
        const poll = () => {
          this.#stats.polled++
          stop()
        }
        let timer
        set.add(wake)
        try {
          const reply = await this.#client.eval(this.#ids.check, [lock, valueKey, marker], [token])
          if (entry.done) return STOPPED
          if (reply[0] === 2) return { ...decodeOutcome(this.#serializer, reply[1]), shared: true }
          if (reply[0] === 1) return undefined
          timer = setTimeout(poll, Math.min(MAX_POLL, this.#lease / 3))
          entry.wake = stop
          const text = await woken
          if (entry.done) return STOPPED
          // An empty outcome: the leader gave up; re-check (and take over).
          if (text) return { ...decodeOutcome(this.#serializer, text), shared: true }
        } finally {
          clearTimeout(timer)
          set.delete(wake)
          if (entry.wake === stop) entry.wake = undefined
        }
      }
    } finally {
      if (set.size === 0 && this.#followers.get(token) === set) this.#followers.delete(token)
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

  /**
   * This process's counters (the local group's fields, plus `led`,
   * `followed`, `joinedLocally`, `takeovers`, `fallbacks`, `polled`), `inFlight`, and
   * `redis` (the connection's counters).
   */
  stats() {
    return { ...this.#stats, inFlight: this.#local.size, redis: this.#lastRedisStats ?? this.#client.stats() }
  }

  /** Lets go of the Redis connection; later calls reject with ERR_CLOSED. */
  close() {
    if (this.#closed) return
    this.#closed = true
    if (this.#subscription !== undefined) this.#client.unsubscribe(this.#channel, this.#subscription)
    this.#lastRedisStats = this.#client.stats()
    this.#client.close()
  }
}

module.exports = { RedisSingleFlight, JSON_SERIALIZER, LEAD_WITH }
