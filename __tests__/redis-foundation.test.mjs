// Distributed mode's foundation against a real redis-server: the shared
// connection on the addon's runtime, per-command deadlines, EVALSHA with
// reload after SCRIPT FLUSH, no late replay, pub/sub, and the runtime closed
// with its last user; TLS (rediss://) with a private CA and mutual TLS
// against redis-servers serving TLS only, with certificates made by openssl.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RedisServer, haveRedis, haveOpenssl, makeCertificates } from './helpers/redis-server.mjs'

const require = createRequire(import.meta.url)
const { RedisClient, parseRedisOption } = require('../lib/redis.js')
const { Limiter } = require('../lib/p-limit.js')
const { SingleFlight } = require('../lib/single-flight.js')

const skip = haveRedis ? false : 'redis-server is not installed'
let server

before(async () => { if (!skip) server = await RedisServer.start() })
after(async () => { await server?.stop() })

// TLS servers, started here so the tests can be skipped with the reason when
// openssl is missing or redis-server was built without TLS.
const tls = await (async () => {
  if (skip) return { skip }
  if (!haveOpenssl) return { skip: 'openssl is not installed (needed to make test certificates)' }
  const dir = mkdtempSync(join(tmpdir(), 'bulkhead-tls-'))
  try {
    const files = makeCertificates(dir)
    const pem = Object.fromEntries(Object.entries(files).map(([k, path]) => [k, readFileSync(path, 'utf8')]))
    const serverTls = { cert: files.serverCert, key: files.serverKey, ca: files.ca }
    let plain
    try {
      plain = await RedisServer.start({ tls: serverTls })
    } catch (err) {
      rmSync(dir, { recursive: true, force: true })
      return { skip: `redis-server does not serve TLS here (${err.message})` }
    }
    const mutual = await RedisServer.start({
      tls: { ...serverTls, authClients: true, clientCert: files.clientCert, clientKey: files.clientKey },
    })
    return { skip: false, dir, pem, plain, mutual }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
})()
after(async () => {
  await tls.plain?.stop()
  await tls.mutual?.stop()
  if (tls.dir) rmSync(tls.dir, { recursive: true, force: true })
})

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

test('pub/sub tells listeners when their subscription is confirmed, delivers messages, and tells them after a resubscribe', { skip }, async () => {
  const c = new RedisClient(server.url)
  const got = []
  let notify
  const next = () => new Promise((resolve) => { notify = resolve })
  try {
    let wait = next()
    c.subscribe('{t}:wake', (m) => { got.push(m); notify?.() })
    // The subscriber connects lazily; once Redis confirmed the subscription
    // the listener hears null (anything published before was missed), and
    // from then on every message.
    for (let i = 0; i < 50 && got.length === 0; i++) await Promise.race([wait, sleep(100)])
    assert.deepEqual(got, [null], 'told once subscribed, before any message')
    wait = next()
    await c.command('PUBLISH', '{t}:wake', 'hello')
    for (let i = 0; i < 50 && got.length === 1; i++) await Promise.race([wait, sleep(100)])
    assert.deepEqual(got, [null, 'hello'])
    // A second channel on the connected subscriber is confirmed the same way.
    const second = []
    c.subscribe('{t}:other', (m) => second.push(m))
    for (let i = 0; i < 50 && second.length === 0; i++) await sleep(20)
    assert.deepEqual(second, [null])
    await c.command('PUBLISH', '{t}:other', 'two')
    for (let i = 0; i < 50 && second.length === 1; i++) await sleep(20)
    assert.deepEqual(second, [null, 'two'])
    // A second listener of a channel that is subscribed already is told
    // alone; the first is not told again (it would drop what it holds).
    const late = []
    c.subscribe('{t}:wake', (m) => late.push(m))
    for (let i = 0; i < 50 && late.length === 0; i++) await sleep(20)
    assert.deepEqual(late, [null], 'the late listener is told once subscribed')
    await c.command('PUBLISH', '{t}:wake', 'both')
    for (let i = 0; i < 50 && late.length === 1; i++) await sleep(20)
    assert.deepEqual(late, [null, 'both'])
    assert.deepEqual(got, [null, 'hello', 'both'], 'the first listener is not told null again')
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

test('connectTimeout bounds opening a connection, within commandTimeout', async () => {
  // A server that accepts the TCP connection and never answers: the client's
  // connection set-up waits on it.
  const { createServer } = await import('node:net')
  const sockets = new Set()
  const silent = createServer((socket) => { sockets.add(socket); socket.on('error', () => {}) })
  await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve))
  const url = `redis://127.0.0.1:${silent.address().port}`
  const fast = new RedisClient({ url, commandTimeout: 5000, connectTimeout: 100 })
  const slow = new RedisClient({ url: `${url}/1`, commandTimeout: 300 })
  try {
    await assert.rejects(fast.command('PING'), (err) => {
      assert.equal(err.code, 'ERR_UNAVAILABLE')
      assert.match(err.message, /connect.*no connection within 100 ms/)
      return true
    })
    // Without connectTimeout, the command's deadline bounds connecting.
    await assert.rejects(slow.command('PING'), (err) => {
      assert.equal(err.code, 'ERR_UNAVAILABLE')
      assert.match(err.message, /within 300 ms/)
      return true
    })
  } finally {
    fast.close()
    slow.close()
    for (const socket of sockets) socket.destroy()
    silent.close()
  }
})

test('a closed client rejects with ERR_CLOSED', { skip }, async () => {
  const c = new RedisClient(server.url)
  c.close()
  await assert.rejects(c.command('PING'), { code: 'ERR_CLOSED' })
  await assert.rejects(c.eval(c.script('return 1'), [], []), { code: 'ERR_CLOSED' })
})

test('the runtime stops with the last client and restarts with the next', { skip }, async () => {
  // A command of an earlier test that outlived its deadline (a connect to a
  // silent server) holds the runtime until its task ends: wait for that
  // first, bounded, so what follows is about this test's clients alone.
  for (let waited = 0; RedisClient.runtimeRunning(); waited += 10) {
    assert.ok(waited < 10_000, 'an earlier test left the Redis runtime running for 10 s')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
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

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'

test('bad tls options are TypeErrors naming the option', () => {
  const tlsError = (tlsOption, message, url = 'rediss://h:1/0') =>
    assert.throws(() => parseRedisOption({ url, tls: tlsOption }), { name: 'TypeError', message })
  tlsError({ ca: PEM }, /options\.redis\.tls needs a rediss:\/\/ URL/, 'redis://h:1/0')
  tlsError('yes', /options\.redis\.tls must be an object/)
  tlsError({ ca: 42 }, /options\.redis\.tls\.ca must be a PEM string or Buffer/)
  tlsError({ ca: [] }, /options\.redis\.tls\.ca must not be empty/)
  tlsError({ ca: 'not pem' }, /options\.redis\.tls\.ca must be PEM/)
  tlsError({ cert: PEM }, /options\.redis\.tls\.cert and options\.redis\.tls\.key must be given together/)
  tlsError({ rejectUnauthorized: 'no' }, /options\.redis\.tls\.rejectUnauthorized must be a boolean/)
  tlsError({ servername: 'cache' }, /options\.redis\.tls\.servername is not supported/)
  tlsError({ passphrase: 'x' }, /options\.redis\.tls\.passphrase is not supported/)
  // Strings, Buffers and arrays of them, as Node's tls takes them.
  assert.deepEqual(parseRedisOption({ url: 'rediss://h:1/0', tls: { ca: [PEM, Buffer.from(PEM)], rejectUnauthorized: true } }).tls,
    { ca: `${PEM}\n${PEM}`, rejectUnauthorized: true })
  assert.equal(parseRedisOption('rediss://h:1/0').tls, undefined)
})

test('TLS material that does not parse fails the constructor, not the first command', { skip: tls.skip }, () => {
  const { pem } = tls
  const url = tls.plain.url
  assert.throws(() => new RedisClient({ url, tls: { ca: PEM } }),
    { name: 'TypeError', message: /options\.redis\.tls\.ca/ })
  assert.throws(() => new RedisClient({ url, tls: { ca: pem.ca, cert: pem.clientCert, key: PEM.replaceAll('CERTIFICATE', 'PRIVATE KEY') } }),
    { name: 'TypeError', message: /options\.redis\.tls\.key/ })
  // A key that is not the certificate's (the server's key with the client's
  // certificate).
  assert.throws(() => new RedisClient({ url, tls: { ca: pem.ca, cert: pem.clientCert, key: pem.serverKey } }),
    { name: 'TypeError', message: /options\.redis\.tls\.key must be the private key of options\.redis\.tls\.cert/ })
})

test('rediss:// with the CA given: commands work over TLS, on one shared connection', { skip: tls.skip }, async () => {
  const options = { url: tls.plain.url, tls: { ca: tls.pem.ca } }
  const a = new RedisClient(options)
  const b = new RedisClient({ ...options, tls: { ca: Buffer.from(tls.pem.ca) } })
  try {
    assert.equal(await a.command('SET', 'tls:k', 'v'), 'OK')
    assert.equal(await b.command('GET', 'tls:k'), 'v')
    // The same URL and TLS settings (a string and a Buffer of the same PEM)
    // share the process's connection.
    assert.equal(b.stats().connects, 1)
    assert.equal(a.stats().roundTrips, 2)
  } finally {
    a.close()
    b.close()
  }
})

test('a server certificate not signed by the trusted CA is ERR_UNAVAILABLE within commandTimeout', { skip: tls.skip }, async () => {
  // The bundled public roots (no ca) and another private CA both refuse the
  // test CA's server certificate, each promptly and not as a hang.
  for (const tlsOption of [undefined, { ca: tls.pem.otherCa }]) {
    const c = new RedisClient({ url: tls.plain.url, commandTimeout: 500, tls: tlsOption })
    try {
      const started = performance.now()
      await assert.rejects(c.command('PING'), { code: 'ERR_UNAVAILABLE', message: /UnknownIssuer|certificate/ })
      const took = performance.now() - started
      assert.ok(took < 2000, `answered in ${took} ms`)
    } finally {
      c.close()
    }
  }
})

test('instances with different TLS settings do not share a connection', { skip: tls.skip }, async () => {
  // If the second shared the first's (trusted) connection, its PING would
  // succeed.
  const trusted = new RedisClient({ url: tls.plain.url, tls: { ca: tls.pem.ca } })
  const untrusted = new RedisClient({ url: tls.plain.url, commandTimeout: 500, tls: { ca: tls.pem.otherCa } })
  try {
    assert.equal(await trusted.command('PING'), 'PONG')
    await assert.rejects(untrusted.command('PING'), { code: 'ERR_UNAVAILABLE' })
    assert.equal(await trusted.command('PING'), 'PONG')
    assert.equal(untrusted.stats().roundTrips, 0)
  } finally {
    trusted.close()
    untrusted.close()
  }
})

test('rejectUnauthorized: false connects without checking the certificate (testing only)', { skip: tls.skip }, async () => {
  const c = new RedisClient({ url: tls.plain.url, tls: { rejectUnauthorized: false } })
  try {
    assert.equal(await c.command('PING'), 'PONG')
  } finally {
    c.close()
  }
})

test('mutual TLS: works with the client certificate, and fails clearly without it', { skip: tls.skip }, async () => {
  const { pem, mutual } = tls
  const withCert = new RedisClient({ url: mutual.url, tls: { ca: pem.ca, cert: pem.clientCert, key: Buffer.from(pem.clientKey) } })
  const without = new RedisClient({ url: mutual.url, commandTimeout: 500, tls: { ca: pem.ca } })
  try {
    assert.equal(await withCert.command('SET', 'mtls', '1'), 'OK')
    assert.equal(await withCert.command('GET', 'mtls'), '1')
    const started = performance.now()
    await assert.rejects(without.command('PING'), { code: 'ERR_UNAVAILABLE', message: /CertificateRequired|certificate/ })
    assert.ok(performance.now() - started < 2000)
  } finally {
    withCert.close()
    without.close()
  }
})

test('a Limiter shares its limit over rediss:// with mutual TLS', { skip: tls.skip, timeout: 30_000 }, async () => {
  const redis = { url: tls.mutual.url, tls: { ca: tls.pem.ca, cert: tls.pem.clientCert, key: tls.pem.clientKey } }
  const name = `tls-limit-${process.pid}`
  const a = new Limiter({ name, redis, concurrency: 1, lease: 3000 })
  const b = new Limiter({ name, redis, concurrency: 1, lease: 3000 })
  let active = 0
  let most = 0
  const task = (v) => async () => {
    active++
    most = Math.max(most, active)
    await sleep(20)
    active--
    return v
  }
  try {
    const results = await Promise.all([1, 2, 3, 4, 5, 6].map((v) => (v % 2 ? a : b).run(task(v))))
    assert.deepEqual(results, [1, 2, 3, 4, 5, 6])
    assert.equal(most, 1, 'one task at a time across both instances')
    assert.equal(a.stats().acquired + b.stats().acquired, 6)
  } finally {
    a.close()
    b.close()
  }
})

test('a SingleFlight runs one flight over rediss:// and shares its value', { skip: tls.skip, timeout: 30_000 }, async () => {
  const redis = { url: tls.plain.url, tls: { ca: tls.pem.ca } }
  const name = `tls-flight-${process.pid}`
  const a = new SingleFlight({ name, redis })
  const b = new SingleFlight({ name, redis })
  let runs = 0
  const load = async () => {
    runs++
    await sleep(200)
    return { user: 7 }
  }
  try {
    const [x, y] = await Promise.all([a.do('user:7', load), b.do('user:7', load)])
    assert.deepEqual(x, { user: 7 })
    assert.deepEqual(y, { user: 7 })
    assert.equal(runs, 1)
    assert.equal(a.stats().led + b.stats().led, 1)
    assert.equal(a.stats().followed + b.stats().followed, 1)
  } finally {
    a.close()
    b.close()
  }
})
