// SingleFlight on Redis (distributed mode) against a real redis-server, with
// several Node processes: one run per flight, takeover after a leader dies,
// errors shared, Redis down.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { existsSync } from 'node:fs'
import { RedisServer, haveRedis } from './helpers/redis-server.mjs'

const require = createRequire(import.meta.url)
const { SingleFlight } = require('../lib/single-flight.js')
const { RedisClient } = require('../lib/redis.js')

const skip = haveRedis ? false : 'redis-server is not installed'
const WORKER = fileURLToPath(new URL('./fixtures/redis-flight-worker.mjs', import.meta.url))
let server
let admin
let n = 0
const fresh = () => `f${process.pid}-${++n}`
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

before(async () => {
  if (skip) return
  server = await RedisServer.start()
  admin = new RedisClient(server.url)
})
after(async () => {
  admin?.close()
  await server?.stop()
})

function worker(cfg, node = process.execPath) {
  const child = spawn(node, [WORKER, JSON.stringify({ url: server.url, ...cfg })],
    { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines = []
  let onLine
  let buf = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (d) => {
    buf += d
    let i
    while ((i = buf.indexOf('\n')) >= 0) { lines.push(buf.slice(0, i)); buf = buf.slice(i + 1); onLine?.() }
  })
  const done = new Promise((resolve) => child.on('exit', () => {
    const last = lines.findLast((l) => l.startsWith('{'))
    resolve(last ? JSON.parse(last) : null)
  }))
  const waitFor = async (text) => { while (!lines.includes(text)) await new Promise((resolve) => { onLine = resolve }) }
  return { child, lines, done, waitFor }
}

test('4 processes x 50 callers: fn runs once per flight and every caller gets its value', { skip, timeout: 60_000 }, async () => {
  const name = fresh()
  const startAt = Date.now() + 1500
  const runs = Array.from({ length: 4 }, () => worker({ name, key: 'hot', callers: 50, runMs: 800, startAt }))
  const results = await Promise.all(runs.map((r) => r.done))
  const values = results.flatMap((r) => r.values)
  for (const r of results) assert.deepEqual(r.errors, [])
  assert.equal(values.length, 200)
  assert.equal(Number(await admin.command('GET', `${name}:runs`)), 1, 'fn ran once')
  assert.equal(new Set(values.map((v) => JSON.stringify(v))).size, 1, 'every caller got the same value')
  // Nothing is left but the finished flight's short-lived outcome.
  assert.equal(await admin.command('EXISTS', `bulkhead:flight:{${name}}:l:hot`), 0)
})

test('leader killed mid-flight: a waiting process takes over within the lease', { skip, timeout: 60_000 }, async () => {
  const name = fresh()
  const redis = { url: server.url, commandTimeout: 300 }
  const lease = 1200
  const leader = worker({ name, key: 'k', callers: 3, runMs: 60_000, lease, redis })
  await leader.waitFor('leading')
  const follower = worker({ name, key: 'k', callers: 5, runMs: 50, lease, redis })
  await sleep(200)
  leader.child.kill('SIGKILL')
  const result = await follower.done
  assert.deepEqual(result.errors, [])
  assert.equal(result.values.length, 5)
  assert.equal(new Set(result.values.map((v) => v.by)).size, 1)
  assert.equal(result.values[0].run, 2, 'the follower ran its own fn once after the leader died')
})

test('an error is shared with the followers, with its code, and not kept', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const a = new SingleFlight({ name, redis: server.url })
  const b = new SingleFlight({ name, redis: server.url })
  try {
    let runs = 0
    const fail = async () => {
      runs++
      await sleep(100)
      throw Object.assign(new Error('upstream said no'), { code: 'E_UPSTREAM' })
    }
    const first = a.do('x', fail)
    await sleep(30)
    const second = b.do('x', fail)
    await Promise.all([
      assert.rejects(first, { message: 'upstream said no' }),
      assert.rejects(second, { message: 'upstream said no', code: 'E_UPSTREAM' }),
    ])
    assert.equal(runs, 1)
    // The next call is a new flight.
    assert.equal(await b.do('x', async () => 'fresh'), 'fresh')
  } finally {
    a.close()
    b.close()
  }
})

test("Redis down: 'local' dedupes within the process, 'reject' is ERR_UNAVAILABLE", { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const redis = { url: server.url, commandTimeout: 250 }
  const local = new SingleFlight({ name, redis })
  const reject = new SingleFlight({ name, redis, onRedisDown: 'reject' })
  try {
    server.pause()
    try {
      let runs = 0
      const fn = async () => { runs++; await sleep(50); return 'v' }
      const values = await Promise.all([local.do('k', fn), local.do('k', fn), local.do('k', fn)])
      assert.deepEqual(values, ['v', 'v', 'v'])
      assert.equal(runs, 1)
      assert.equal(local.stats().fallbacks, 1)
      await assert.rejects(reject.do('k', fn), { code: 'ERR_UNAVAILABLE' })
    } finally {
      server.resume()
    }
    assert.equal(await reject.do('k', async () => 'up'), 'up')
  } finally {
    local.close()
    reject.close()
  }
})

test('a custom serializer carries values JSON cannot', { skip }, async () => {
  const name = fresh()
  const serializer = {
    serialize: (v) => JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? { $big: String(x) } : x)),
    deserialize: (s) => JSON.parse(s, (_, x) => (x && x.$big !== undefined ? BigInt(x.$big) : x)),
  }
  const a = new SingleFlight({ name, redis: server.url, serializer })
  const b = new SingleFlight({ name, redis: server.url, serializer })
  try {
    const first = a.do('big', async () => { await sleep(100); return { n: 2n ** 70n } })
    await sleep(30)
    const second = b.do('big', async () => ({ n: 0n }))
    assert.deepEqual(await second, { n: 2n ** 70n })
    assert.deepEqual(await first, { n: 2n ** 70n })
  } finally {
    a.close()
    b.close()
  }
})

// A rolling deploy mixes Node majors: values cross in JSON, which all read.
const NODE_22 = '/tmp/nodes/22/package/bin/node'
const NODE_26 = '/tmp/nodes/26/package/bin/node'
test('a flight led by Node 26 is shared with a Node 22 process', {
  skip: skip || (!existsSync(NODE_22) || !existsSync(NODE_26) ? 'Node 22 and 26 binaries not present' : false),
  timeout: 60_000,
}, async () => {
  const name = fresh()
  const leader = worker({ name, key: 'mixed', callers: 2, runMs: 1500 }, NODE_26)
  await leader.waitFor('leading')
  const follower = worker({ name, key: 'mixed', callers: 2, runMs: 10 }, NODE_22)
  const [a, b] = await Promise.all([leader.done, follower.done])
  assert.deepEqual(a.errors, [])
  assert.deepEqual(b.errors, [])
  assert.deepEqual(b.values, a.values)
  assert.equal(Number(await admin.command('GET', `${name}:runs`)), 1)
})

// ---- The local SingleFlight's API in distributed mode ----------------------

const never = () => new Promise(() => {})
function deferred() {
  let resolve
  const promise = new Promise((r) => { resolve = r })
  return { promise, resolve }
}
const lockKey = (name, key) => `bulkhead:flight:{${name}}:l:${key}`
async function until(check, what) {
  for (let i = 0; i < 500; i++) {
    if (await check()) return
    await sleep(10)
  }
  assert.fail(`timed out waiting for: ${what}`)
}

test('a distributed group is instanceof SingleFlight; unknown options get the option meant', { skip }, async () => {
  const name = fresh()
  const group = new SingleFlight({ name, redis: server.url })
  try {
    assert.ok(group instanceof SingleFlight)
    const local = new SingleFlight()
    const members = Object.getOwnPropertyNames(SingleFlight.prototype).filter((m) => m !== 'constructor')
    for (const member of members) assert.ok(member in group, `has ${member}`)
    void local
    // wrap() (the local class's) calls the distributed do().
    const load = group.wrap(async (id) => `user ${id}`)
    assert.equal(await load('7'), 'user 7')
    assert.throws(() => new SingleFlight({ name, redis: server.url, maxKey: 3 }), {
      code: 'ERR_INVALID_ARG',
      message: /unknown option `maxKey` in new SingleFlight\(\{ redis \}\) options: did you mean `maxKeys`\?/,
    })
    assert.throws(() => group.do('k', async () => 1, { signl: AbortSignal.timeout(5) }),
      { code: 'ERR_INVALID_ARG', message: /did you mean `signal`/ })
    assert.throws(() => group.do(1, async () => 1), { name: 'TypeError', code: 'ERR_INVALID_ARG', message: /key must be a string/ })
    assert.throws(() => new SingleFlight({ name, redis: server.url, timeout: -1 }), { code: 'ERR_INVALID_ARG', message: /options\.timeout/ })
    assert.throws(() => new SingleFlight({ name, redis: server.url, maxKeys: 0 }), { code: 'ERR_INVALID_ARG', message: /options\.maxKeys/ })
  } finally {
    group.close()
  }
})

test('a follower whose signal fires stops waiting; the flight goes on for the others', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const a = new SingleFlight({ name, redis: server.url })
  const b = new SingleFlight({ name, redis: server.url })
  try {
    const gate = deferred()
    let runs = 0
    let leaderSignal
    const led = a.do('k', (signal) => { runs++; leaderSignal = signal; return gate.promise })
    await until(async () => await admin.command('EXISTS', lockKey(name, 'k')) === 1, 'the leader took the lock')
    const ac = new AbortController()
    const leaving = b.do('k', async () => { runs++; return 'b ran' }, { signal: ac.signal })
    const staying = b.do('k', async () => { runs++; return 'b ran' })
    await sleep(100)
    ac.abort(new Error('client went away'))
    await assert.rejects(leaving, (err) => err.code === 'ERR_ABORTED' && err.cause.message === 'client went away')
    assert.equal(b.inFlight('k'), true, 'the caller without a signal still waits')
    gate.resolve('shared value')
    assert.equal(await led, 'shared value')
    assert.equal(await staying, 'shared value')
    assert.equal(runs, 1)
    assert.equal(leaderSignal.aborted, false)
    assert.equal(b.stats().aborts, 1)
  } finally {
    a.close()
    b.close()
  }
})

test('every caller of a follower process leaving stops its wait (no poll, no key held)', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const a = new SingleFlight({ name, redis: server.url })
  const b = new SingleFlight({ name, redis: server.url })
  try {
    const gate = deferred()
    const led = a.do('k', () => gate.promise)
    await until(async () => await admin.command('EXISTS', lockKey(name, 'k')) === 1, 'the leader took the lock')
    const ac = new AbortController()
    const follower = b.do('k', async () => 'b ran', { signal: ac.signal })
    await sleep(100)
    ac.abort()
    await assert.rejects(follower, { code: 'ERR_ABORTED' })
    assert.equal(b.inFlight('k'), false)
    assert.equal(b.size, 0)
    const trips = b.stats().redis.roundTrips
    await sleep(1500) // longer than the backstop poll
    assert.equal(b.stats().redis.roundTrips, trips, 'the left follower no longer polls')
    gate.resolve('v')
    assert.equal(await led, 'v')
  } finally {
    a.close()
    b.close()
  }
})

test('the leader process\'s last caller leaving aborts fn\'s signal; another process takes over at once', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const a = new SingleFlight({ name, redis: server.url })
  const b = new SingleFlight({ name, redis: server.url })
  try {
    let leaderSignal
    const ac = new AbortController()
    const other = new AbortController()
    const led = a.do('k', (signal) => { leaderSignal = signal; return never() }, { signal: ac.signal })
    const alsoLed = a.do('k', async () => 'unused', { signal: other.signal })
    await until(async () => await admin.command('EXISTS', lockKey(name, 'k')) === 1, 'the leader took the lock')
    const started = performance.now()
    const followed = b.do('k', async () => 'taken over')
    await sleep(100)
    ac.abort()
    await assert.rejects(led, { code: 'ERR_ABORTED' })
    assert.equal(leaderSignal.aborted, false, 'one caller is left: fn goes on')
    other.abort()
    await assert.rejects(alsoLed, { code: 'ERR_ABORTED' })
    assert.equal(leaderSignal.aborted, true)
    assert.equal(leaderSignal.reason.code, 'ERR_ABORTED')
    assert.equal(leaderSignal.reason.message, 'every caller of this flight left')
    // The leader gave the flight up in Redis: the follower leads now,
    // without waiting for the lease (30 s) to lapse.
    assert.equal(await followed, 'taken over')
    assert.ok(performance.now() - started < 5000)
    assert.equal(b.stats().takeovers, 1)
    assert.equal(a.inFlight('k'), false)
  } finally {
    a.close()
    b.close()
  }
})

test('forget(key): the next call in any process starts a new flight; the old flight\'s followers still get its value', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const a = new SingleFlight({ name, redis: server.url })
  const b = new SingleFlight({ name, redis: server.url })
  const c = new SingleFlight({ name, redis: server.url })
  try {
    const gate = deferred()
    let runs = 0
    const first = a.do('k', () => { runs++; return gate.promise })
    await until(async () => await admin.command('EXISTS', lockKey(name, 'k')) === 1, 'the leader took the lock')
    const follower = b.do('k', async () => { runs++; return 'b ran' })
    await sleep(100)
    assert.equal(a.forget('k'), true)
    assert.equal(a.inFlight('k'), false)
    assert.equal(b.forget('missing'), false)
    const second = a.do('k', async () => { runs++; await sleep(200); return 'second' })
    await sleep(50)
    const third = c.do('k', async () => { runs++; return 'c ran' })
    assert.equal(await second, 'second')
    assert.equal(await third, 'second', 'a call after forget joins the new flight')
    gate.resolve('first')
    assert.equal(await first, 'first')
    assert.equal(await follower, 'first', 'the old flight\'s follower got the old flight\'s value')
    assert.equal(runs, 2)
    await until(async () => (await admin.command('KEYS', `bulkhead:flight:{${name}}:[lz]:*`)).length === 0, 'no lock or marker left')
  } finally {
    a.close()
    b.close()
    c.close()
  }
})

test('maxKeys bounds the keys in flight in this process (ERR_QUEUE_FULL); joining is always allowed', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const group = new SingleFlight({ name, redis: server.url, maxKeys: 2 })
  try {
    const gate = deferred()
    const calls = [group.do('a', () => gate.promise), group.do('b', () => gate.promise)]
    await assert.rejects(group.do('c', async () => 'c'), { code: 'ERR_QUEUE_FULL', message: /maxKeys: 2/ })
    calls.push(group.do('a', async () => 'joined'))
    assert.equal(group.size, 2)
    gate.resolve('v')
    assert.deepEqual(await Promise.all(calls), ['v', 'v', 'v'])
    assert.equal(await group.do('c', async () => 'c'), 'c')
  } finally {
    group.close()
  }
})

test('a flight deadline rejects this process\'s callers with ERR_TIMEOUT; a leader\'s fn is told and others take over', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const a = new SingleFlight({ name, redis: server.url, timeout: 400 })
  const b = new SingleFlight({ name, redis: server.url, timeout: 5000 })
  try {
    let leaderSignal
    const led = a.do('k', (signal) => { leaderSignal = signal; return never() })
    await until(async () => await admin.command('EXISTS', lockKey(name, 'k')) === 1, 'the leader took the lock')
    const followed = b.do('k', async () => 'taken over')
    await assert.rejects(led, { code: 'ERR_TIMEOUT', message: 'the flight for key k did not settle within 400 ms' })
    assert.equal(leaderSignal.reason.code, 'ERR_TIMEOUT')
    assert.equal(await followed, 'taken over')
    assert.equal(a.stats().timeouts, 1)
    // A follower's own deadline.
    const gate = deferred()
    const led2 = b.do('k2', () => gate.promise)
    await until(async () => await admin.command('EXISTS', lockKey(name, 'k2')) === 1, 'the leader took the lock')
    await assert.rejects(a.do('k2', async () => 'no', { timeout: 200 }), { code: 'ERR_TIMEOUT' })
    gate.resolve('done')
    assert.equal(await led2, 'done')
  } finally {
    a.close()
    b.close()
  }
})

test('the flight deadline defaults to 30 s in distributed mode', { skip, timeout: 60_000 }, async () => {
  const group = new SingleFlight({ name: fresh(), redis: server.url })
  try {
    let leaderSignal
    const started = performance.now()
    await assert.rejects(group.do('k', (signal) => { leaderSignal = signal; return never() }),
      { code: 'ERR_TIMEOUT', message: /did not settle within 30000 ms/ })
    assert.ok(performance.now() - started >= 29_900)
    assert.equal(leaderSignal.aborted, true)
  } finally {
    group.close()
  }
})

test('label names the group in traces: a bulkhead:single-flight trace per call says who led and who joined', { skip, timeout: 30_000 }, async () => {
  const { tracingChannel } = await import('node:diagnostics_channel')
  const name = fresh()
  assert.throws(() => new SingleFlight({ name, redis: server.url, label: '' }), { name: 'RangeError', message: /options\.label/ })
  const a = new SingleFlight({ name, redis: server.url, label: 'users' })
  const b = new SingleFlight({ name, redis: server.url })
  const ended = []
  const handlers = { asyncEnd: (ctx) => ended.push({ label: ctx.label, name: ctx.name, key: ctx.key, joined: ctx.joined, leader: ctx.leader }) }
  const channel = tracingChannel('bulkhead:single-flight')
  channel.subscribe(handlers)
  try {
    assert.equal(a.label, 'users')
    assert.equal(b.label, name, 'defaults to the name')
    let release
    const gate = new Promise((resolve) => { release = resolve })
    const lead = a.do('k', () => gate)
    const joinHere = a.do('k', () => 'never')
    await sleep(50) // a's flight holds the lock in Redis
    const joinThere = b.do('k', () => 'never') // another instance: follows through Redis
    await sleep(50)
    release('v')
    assert.deepEqual(await Promise.all([lead, joinHere, joinThere]), ['v', 'v', 'v'])
    const byRole = (e) => `${e.label}:${e.leader ? 'leader' : e.joined ? 'joined' : 'none'}`
    assert.deepEqual(ended.map(byRole).sort(), [`${name}:joined`, 'users:joined', 'users:leader'])
    assert.ok(ended.every((e) => e.key === 'k' && e.name === name))
  } finally {
    channel.unsubscribe(handlers)
    await a.close()
    await b.close()
  }
})

// A follower listens for the settle message before it checks the flight:
// when the leader settles while the check is on its way, the message can be
// handled before the check's reply (two connections, one batch of
// deliveries). Listening only after the reply lost such messages, and the
// follower slept until its backstop poll (1 s). Sweeps the leader's settle
// across the follower's join and check; `polled` counts backstop polls.
test('a settle published while a follower checks the flight wakes it (no backstop poll)', { skip, timeout: 120_000 }, async () => {
  const name = fresh()
  const a = new SingleFlight({ name, redis: server.url })
  const b = new SingleFlight({ name, redis: server.url })
  try {
    for (let i = 0; i < 300; i++) {
      let release
      const led = a.do(`k${i}`, () => new Promise((resolve) => { release = resolve }))
      await until(async () => release !== undefined && await admin.command('EXISTS', lockKey(name, `k${i}`)) === 1, 'the leader runs fn')
      const followed = b.do(`k${i}`, async () => 'not this one')
      for (let j = 0; j < i % 12; j++) await new Promise((resolve) => setImmediate(resolve))
      release(i)
      assert.equal(await led, i)
      assert.equal(await followed, i)
    }
    assert.equal(b.stats().followed, 300)
    assert.equal(b.stats().polled, 0, 'a follower waited for the backstop poll: a settle message was lost')
  } finally {
    a.close()
    b.close()
  }
})
