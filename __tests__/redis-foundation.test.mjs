// Distributed mode's foundation against a real redis-server: the shared
// connection on the addon's runtime, per-command deadlines, EVALSHA with
// reload after SCRIPT FLUSH, no late replay, pub/sub, and the runtime closed
// with its last user.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { RedisServer, haveRedis } from './helpers/redis-server.mjs'

const require = createRequire(import.meta.url)
const { RedisClient, parseRedisOption } = require('../lib/redis.js')

const skip = haveRedis ? false : 'redis-server is not installed'
let server

before(async () => { if (!skip) server = await RedisServer.start() })
after(async () => { await server?.stop() })

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

test('bad redis options are TypeErrors naming the option', () => {
  assert.throws(() => parseRedisOption(42), { name: 'TypeError', message: /options\.redis/ })
  assert.throws(() => parseRedisOption('http://x'), { name: 'TypeError', message: /redis:\/\// })
  assert.throws(() => parseRedisOption('rediss://x:1/#insecure'), { name: 'TypeError', message: /#fragment.*rejectUnauthorized/ })
  assert.throws(() => parseRedisOption({ url: 'redis://x', commandTimeout: 0 }),
    { name: 'TypeError', message: /commandTimeout/ })
  assert.deepEqual(parseRedisOption('redis://h:1/2'),
    { url: 'redis://h:1/2', keyPrefix: 'bulkhead:', connectTimeout: 1000, commandTimeout: 1000 })
})

test('commands and replies travel through the shared connection', { skip }, async () => {
  const a = new RedisClient(server.url)
  const b = new RedisClient({ url: server.url })
  try {
    assert.equal(await a.command('SET', 'k', 'v'), 'OK')
    assert.equal(await b.command('GET', 'k'), 'v')
    assert.equal(await a.command('GET', 'missing'), null)
    assert.equal(await a.command('INCRBY', 'n', 5), 5)
    assert.deepEqual(await a.command('MGET', 'k', 'missing'), ['v', null])
    // Both instances share one connection: one connect for the process.
    assert.equal(a.stats().connects, 1)
    assert.equal(b.stats().connects, 1)
  } finally {
    a.close()
    b.close()
  }
})

test('a script runs by EVALSHA and is reloaded after SCRIPT FLUSH', { skip }, async () => {
  const c = new RedisClient(server.url)
  try {
    const id = c.script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert.equal(await c.eval(id, ['{s}:n'], [2]), 2)
    const before = c.stats()
    assert.equal(await c.eval(id, ['{s}:n'], [3]), 5)
    assert.equal(c.stats().roundTrips - before.roundTrips, 1, 'a loaded script is one round trip')
    await c.command('SCRIPT', 'FLUSH')
    const reloads = c.stats().scriptReloads
    assert.equal(await c.eval(id, ['{s}:n'], [1]), 6)
    assert.equal(c.stats().scriptReloads, reloads + 1)
    // A script error is an error with a code, not a crash.
    const bad = c.script("return redis.call('NOPE')")
    await assert.rejects(c.eval(bad, [], []), { code: 'ERR_INTERNAL' })
  } finally {
    c.close()
  }
})

test('a paused Redis is ERR_UNAVAILABLE within commandTimeout, and the connection is replaced after', { skip }, async () => {
  const c = new RedisClient({ url: server.url, commandTimeout: 300 })
  try {
    await c.command('SET', 'late', '0')
    server.pause()
    const started = performance.now()
    try {
      await assert.rejects(c.command('INCR', 'late'), { code: 'ERR_UNAVAILABLE' })
    } finally {
      server.resume()
    }
    const took = performance.now() - started
    assert.ok(took < 2000, `answered in ${took} ms`)
    // The timed-out connection was dropped, and a new one works. (The INCR
    // itself was already in Redis's socket buffer and runs on SIGCONT: the
    // client never re-sends it, and scripts refuse to act past a deadline
    // given in Redis time.)
    assert.equal(await c.command('PING'), 'PONG')
    assert.ok(c.stats().connects >= 2)
    assert.ok(c.stats().unavailable >= 1)
  } finally {
    c.close()
  }
})

test('an unreachable Redis is ERR_UNAVAILABLE within commandTimeout, never a hang', { skip }, async () => {
  const c = new RedisClient({ url: 'redis://127.0.0.1:1/0', commandTimeout: 200 })
  try {
    const started = performance.now()
    await assert.rejects(c.command('PING'), { code: 'ERR_UNAVAILABLE' })
    assert.ok(performance.now() - started < 2000)
  } finally {
    c.close()
  }
})

test('pub/sub delivers messages, and tells listeners after a resubscribe', { skip }, async () => {
  const c = new RedisClient(server.url)
  const got = []
  let notify
  const next = () => new Promise((resolve) => { notify = resolve })
  try {
    let wait = next()
    c.subscribe('{t}:wake', (m) => { got.push(m); notify?.() })
    // The subscriber connects lazily; publish until it has subscribed.
    for (let i = 0; i < 50 && got.length === 0; i++) {
      await c.command('PUBLISH', '{t}:wake', 'hello')
      await Promise.race([wait, sleep(100)])
    }
    assert.equal(got[0], 'hello')
    // Redis killed and restarted empty: the subscriber reconnects, listeners
    // get null (messages may have been missed), then messages again.
    got.length = 0
    wait = next()
    await server.restart()
    for (let i = 0; i < 100 && !got.includes(null); i++) await Promise.race([wait, sleep(100)])
    assert.ok(got.includes(null), 'listener told about the reconnect')
    for (let i = 0; i < 50 && !got.includes('again'); i++) {
      await c.command('PUBLISH', '{t}:wake', 'again').catch(() => {})
      await sleep(50)
    }
    assert.ok(got.includes('again'))
  } finally {
    c.close()
  }
})

test('a closed client rejects with ERR_CLOSED', { skip }, async () => {
  const c = new RedisClient(server.url)
  c.close()
  await assert.rejects(c.command('PING'), { code: 'ERR_CLOSED' })
  await assert.rejects(c.eval(c.script('return 1'), [], []), { code: 'ERR_CLOSED' })
})

test('the runtime stops with the last client and restarts with the next', { skip }, async () => {
  const a = new RedisClient(server.url)
  assert.equal(RedisClient.runtimeRunning(), true)
  a.close()
  assert.equal(RedisClient.runtimeRunning(), false)
  const b = new RedisClient(server.url)
  try {
    assert.equal(await b.command('PING'), 'PONG')
  } finally {
    b.close()
  }
  assert.equal(RedisClient.runtimeRunning(), false)
})
