'use strict'
// Distributed mode's shared JS plumbing: the `redis` option, and a thin
// wrapper over the native `RedisConnection` (src/js/redis.rs), whose Redis
// I/O runs on the addon's own tokio runtime. One multiplexed connection and
// one subscriber per process and URL, shared by every instance and thread,
// opened lazily and closed with the last user (src/redis_hub.rs).
const { RedisConnection } = require('./native.js')
const { BulkheadError, codes } = require('./errors.js')

/** Default deadline of one Redis command, connecting included (ms). */
const DEFAULT_COMMAND_TIMEOUT = 1000

function positive(value, name) {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new TypeError(`${name} must be a positive finite number (ms)`)
  }
  return value
}

/**
 * Normalizes the `redis` option: a URL string, or
 * `{ url, keyPrefix, connectTimeout, commandTimeout }`.
 */
function parseRedisOption(redis) {
  const opts = typeof redis === 'string' ? { url: redis } : redis
  if (opts === null || typeof opts !== 'object') {
    throw new TypeError('options.redis must be a redis:// URL or { url, keyPrefix, connectTimeout, commandTimeout }')
  }
  const { url, keyPrefix = 'bulkhead:', commandTimeout = DEFAULT_COMMAND_TIMEOUT } = opts
  if (typeof url !== 'string') throw new TypeError('options.redis.url must be a string')
  if (url.startsWith('rediss://')) {
    throw new TypeError('options.redis: rediss:// (TLS) is not supported by this build yet; use redis://')
  }
  if (!url.startsWith('redis://')) throw new TypeError('options.redis.url must start with redis://')
  if (typeof keyPrefix !== 'string') throw new TypeError('options.redis.keyPrefix must be a string')
  positive(commandTimeout, 'options.redis.commandTimeout')
  // The connect deadline is within the command deadline (a command that has
  // to connect first still answers within commandTimeout).
  const connectTimeout = opts.connectTimeout === undefined
    ? commandTimeout
    : positive(opts.connectTimeout, 'options.redis.connectTimeout')
  return { url, keyPrefix, connectTimeout, commandTimeout }
}

function check(reply) {
  if (reply instanceof Error) {
    // Made in Rust with its code; rethrow as a BulkheadError so users get one
    // class for every bulkhead failure.
    throw new BulkheadError(reply.code ?? codes.INTERNAL, reply.message)
  }
  return reply
}

/** A handle on the process's connections to one Redis URL. */
class RedisClient {
  #conn
  #scripts = new Map()

  constructor(options) {
    this.options = parseRedisOption(options)
    try {
      this.#conn = new RedisConnection(this.options.url)
    } catch (err) {
      throw new TypeError(`options.redis: ${err.message}`)
    }
  }

  /** One command; rejects with ERR_UNAVAILABLE past `commandTimeout`. */
  async command(...args) {
    this.#open()
    return check(await this.#conn.command(args.map(String), this.options.commandTimeout))
  }

  /** Registers a Lua script (once per client); returns its id. */
  script(source) {
    let id = this.#scripts.get(source)
    if (id === undefined) {
      id = this.#conn.registerScript(source)
      this.#scripts.set(source, id)
    }
    return id
  }

  /** Runs a script by EVALSHA (reloaded after NOSCRIPT). */
  async eval(id, keys, args) {
    this.#open()
    return check(await this.#conn.eval(id, keys, args.map(String), this.options.commandTimeout))
  }

  /** Renews from Rust; `onLost(id)` once if the lease is lost. */
  startRenewal(id, keys, args, intervalMs, leaseMs, onLost) {
    return this.#conn.startRenewal(id, keys, args.map(String), intervalMs, leaseMs,
      this.options.commandTimeout, onLost)
  }

  stopRenewal(renewalId) { this.#conn.stopRenewal(renewalId) }

  /** `onMessage(payload)`; `onMessage(null)` after a subscriber reconnect. */
  subscribe(channel, onMessage) {
    return this.#conn.subscribe(channel, (payload) => onMessage(payload))
  }

  unsubscribe(channel, id) { this.#conn.unsubscribe(channel, id) }

  /** Counters of this URL's connections, for the whole process. */
  stats() {
    const [roundTrips, unavailable, scriptReloads, connects, waitMicros, renewals, lostLeases] =
      this.#conn.stats()
    return { roundTrips, unavailable, scriptReloads, connects, redisWaitMs: waitMicros / 1000, renewals, lostLeases }
  }

  #closed = false

  #open() {
    if (this.#closed) throw new BulkheadError(codes.CLOSED, 'the redis connection is closed')
  }

  close() {
    this.#closed = true
    this.#conn.close()
  }

  /** Whether the process's Redis runtime thread is running (tests). */
  static runtimeRunning() { return RedisConnection.runtimeRunning() }
}

module.exports = { RedisClient, parseRedisOption, DEFAULT_COMMAND_TIMEOUT }
