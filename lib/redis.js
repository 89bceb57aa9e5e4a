'use strict'
// Distributed mode's shared JS plumbing: the `redis` option, and a thin
// wrapper over the native `RedisConnection` (src/js/redis.rs), whose Redis
// I/O runs on the addon's own tokio runtime. One multiplexed connection and
// one subscriber per process, URL and TLS settings, shared by every instance
// and thread, opened lazily and closed with the last user (src/redis_hub.rs).
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

const TLS_KEYS = ['ca', 'cert', 'key', 'rejectUnauthorized']

/** A PEM string from a string or a Buffer/Uint8Array, as Node's tls takes them. */
function pem(value, name) {
  let text
  if (typeof value === 'string') text = value
  else if (ArrayBuffer.isView(value)) {
    text = Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8')
  } else throw new TypeError(`${name} must be a PEM string or Buffer`)
  if (!text.includes('-----BEGIN ')) throw new TypeError(`${name} must be PEM (-----BEGIN ...)`)
  return text
}

/**
 * Normalizes `redis.tls`: `{ ca, cert, key, rejectUnauthorized }` with
 * Node's tls option names; PEM strings or Buffers (`ca` also an array of
 * them). Only with a rediss:// URL.
 */
function parseTls(tls, url) {
  if (tls === undefined) return undefined
  if (tls === null || typeof tls !== 'object' || Array.isArray(tls)) {
    throw new TypeError('options.redis.tls must be an object { ca, cert, key, rejectUnauthorized }')
  }
  if (!url.startsWith('rediss://')) {
    throw new TypeError('options.redis.tls needs a rediss:// URL (redis:// is plain TCP)')
  }
  for (const key of Object.keys(tls)) {
    if (key === 'servername') {
      throw new TypeError('options.redis.tls.servername is not supported: the certificate is checked against the host name in the URL, so connect by that name')
    }
    if (!TLS_KEYS.includes(key)) {
      throw new TypeError(`options.redis.tls.${key} is not supported (supported: ${TLS_KEYS.join(', ')})`)
    }
  }
  const out = {}
  if (tls.ca !== undefined) {
    const list = Array.isArray(tls.ca) ? tls.ca : [tls.ca]
    if (list.length === 0) throw new TypeError('options.redis.tls.ca must not be empty')
    out.ca = list.map((c) => pem(c, 'options.redis.tls.ca')).join('\n')
  }
  if (tls.cert !== undefined) out.cert = pem(tls.cert, 'options.redis.tls.cert')
  if (tls.key !== undefined) out.key = pem(tls.key, 'options.redis.tls.key')
  if ((out.cert === undefined) !== (out.key === undefined)) {
    throw new TypeError('options.redis.tls.cert and options.redis.tls.key must be given together')
  }
  if (tls.rejectUnauthorized !== undefined) {
    if (typeof tls.rejectUnauthorized !== 'boolean') {
      throw new TypeError('options.redis.tls.rejectUnauthorized must be a boolean')
    }
    out.rejectUnauthorized = tls.rejectUnauthorized
  }
  return out
}

/**
 * Normalizes the `redis` option: a URL string (`redis://`, or `rediss://`
 * for TLS), or `{ url, keyPrefix, connectTimeout, commandTimeout, tls }`.
 */
function parseRedisOption(redis) {
  const opts = typeof redis === 'string' ? { url: redis } : redis
  if (opts === null || typeof opts !== 'object') {
    throw new TypeError('options.redis must be a redis:// or rediss:// URL or { url, keyPrefix, connectTimeout, commandTimeout, tls }')
  }
  const { url, keyPrefix = 'bulkhead:', commandTimeout = DEFAULT_COMMAND_TIMEOUT } = opts
  if (typeof url !== 'string') throw new TypeError('options.redis.url must be a string')
  if (!url.startsWith('redis://') && !url.startsWith('rediss://')) {
    throw new TypeError('options.redis.url must start with redis:// or rediss:// (TLS)')
  }
  if (url.includes('#')) {
    throw new TypeError('options.redis.url must not have a #fragment (to skip certificate checks in tests, use tls: { rejectUnauthorized: false })')
  }
  if (typeof keyPrefix !== 'string') throw new TypeError('options.redis.keyPrefix must be a string')
  positive(commandTimeout, 'options.redis.commandTimeout')
  // The connect deadline is within the command deadline (a command that has
  // to connect first still answers within commandTimeout).
  const connectTimeout = opts.connectTimeout === undefined
    ? commandTimeout
    : positive(opts.connectTimeout, 'options.redis.connectTimeout')
  const tls = parseTls(opts.tls, url)
  return tls === undefined
    ? { url, keyPrefix, connectTimeout, commandTimeout }
    : { url, keyPrefix, connectTimeout, commandTimeout, tls }
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
// A lease renewed from Rust is work in progress, as a timer is: while this
// process holds one whose loss JS must hear about (a distributed Limiter's
// running task), one referenced timer keeps the event loop alive. Without
// it, a task whose function awaits only its signal would let the process
// end (the renewal's callback into JS is weak) before the lease is lost.
let leasesHeld = 0
let keepAlive

function leaseTaken() {
  if (leasesHeld++ === 0) keepAlive = setInterval(() => {}, 0x7fffffff)
}

function leaseGiven() {
  if (--leasesHeld === 0) {
    clearInterval(keepAlive)
    keepAlive = undefined
  }
}

class RedisClient {
  #leases = new Set() // renewal ids of startLeaseRenewal, until stopRenewal or close()
  #conn
  #scripts = new Map()

  constructor(options) {
    this.options = parseRedisOption(options)
    try {
      // Connections are shared per URL *and* TLS settings (src/redis_hub.rs).
      this.#conn = new RedisConnection(this.options.url, this.options.tls, this.options.connectTimeout)
    } catch (err) {
      throw new TypeError(err.message.startsWith('options.redis') ? err.message : `options.redis: ${err.message}`)
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

  /**
   * Registers keys and leading arguments that every `evalWith` call repeats
   * (converted once, not per call); returns the keyset id.
   */
  keyset(keys, args) {
    return this.#conn.registerKeyset(keys, args.map(String))
  }

  /** Runs a script with a keyset's keys and arguments, then `args`. */
  async evalWith(id, keyset, args) {
    this.#open()
    return check(await this.#conn.evalWith(id, keyset, args, this.options.commandTimeout))
  }

  /**
   * How `startLeaseRenewal` renews: script `id` with `keys` and
   * `[lease, leaseMs]` every `intervalMs`; `onLost(renewalId)` once for a
   * lease that is lost.
   */
  configureRenewal(id, keys, intervalMs, leaseMs, onLost) {
    this.#conn.configureRenewal(id, keys, intervalMs, leaseMs, this.options.commandTimeout, (renewalId) => {
      // Rust stopped renewing it: it no longer keeps the process alive.
      if (this.#leases.delete(renewalId)) leaseGiven()
      onLost(renewalId)
    })
  }

  /**
   * Renews `lease` from Rust as configured; returns the renewal id for
   * `stopRenewal`. Until then, the process is kept alive (see heldLeases).
   */
  startLeaseRenewal(lease) {
    const id = this.#conn.startLeaseRenewal(lease)
    this.#leases.add(id)
    leaseTaken()
    return id
  }

  /** Renews from Rust; `onLost(id)` once if the lease is lost. */
  startRenewal(id, keys, args, intervalMs, leaseMs, onLost) {
    return this.#conn.startRenewal(id, keys, args.map(String), intervalMs, leaseMs,
      this.options.commandTimeout, onLost)
  }

  stopRenewal(renewalId) {
    this.#conn.stopRenewal(renewalId)
    if (this.#leases.delete(renewalId)) leaseGiven()
  }

  /** `onMessage(payload)`; `onMessage(null)` once the subscription is confirmed and after a reconnect (messages before it were missed). */
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
    this.#conn.close() // stops every renewal
    for (let n = this.#leases.size; n > 0; n--) leaseGiven()
    this.#leases.clear()
  }

  /** Whether the process's Redis runtime thread is running (tests). */
  static runtimeRunning() { return RedisConnection.runtimeRunning() }
}

module.exports = { RedisClient, parseRedisOption, DEFAULT_COMMAND_TIMEOUT }
