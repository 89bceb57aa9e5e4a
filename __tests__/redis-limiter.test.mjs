// Limiter on Redis (distributed mode) against a real redis-server, with
// several Node processes: the bound, weights, priorities, leases of killed
// and blocked holders, Redis paused / flushed / restarted, waiters leaving.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { RedisServer, haveRedis } from './helpers/redis-server.mjs'

const require = createRequire(import.meta.url)
const { Limiter } = require('../lib/p-limit.js')
const { RedisClient } = require('../lib/redis.js')

const skip = haveRedis ? false : 'redis-server is not installed'
const WORKER = fileURLToPath(new URL('./fixtures/redis-limiter-worker.mjs', import.meta.url))
let server
let admin
let n = 0
const fresh = () => `t${process.pid}-${++n}`
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

// Starts a worker process; `lines` collects its stdout lines, `done` its last
// JSON line when it exits.
function worker(cfg) {
  const child = spawn(process.execPath, [WORKER, JSON.stringify({ url: server.url, ...cfg })],
    { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines = []
  let onLine
  child.stdout.setEncoding('utf8')
  let buf = ''
  child.stdout.on('data', (d) => {
    buf += d
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i))
      buf = buf.slice(i + 1)
      onLine?.()
    }
  })
  const done = new Promise((resolve) => child.on('exit', () => {
    const last = lines.findLast((l) => l.startsWith('{'))
    resolve(last ? JSON.parse(last) : null)
  }))
  const waitLines = async (count) => {
    while (lines.length < count) await new Promise((resolve) => { onLine = resolve })
  }
  return { child, lines, done, waitLines }
}

test('the limit holds across 4 processes, checked by an observer outside the limiter', { skip, timeout: 60_000 }, async () => {
  const name = fresh()
  const runs = Array.from({ length: 4 }, () => worker({ name, concurrency: 3, tasks: 15, holdMs: 15 }))
  const results = await Promise.all(runs.map((r) => r.done))
  for (const r of results) assert.deepEqual(r.errors, [])
  assert.equal(results.reduce((s, r) => s + r.ok, 0), 60)
  const max = Number(await admin.command('GET', `${name}:obs:max`))
  assert.ok(max <= 3, `at most 3 at once, saw ${max}`)
  assert.ok(max >= 2, `the limit was used, saw ${max}`)
  assert.equal(Number(await admin.command('GET', `${name}:obs:cur`)), 0)
  // Nothing is left held or queued.
  assert.equal(await admin.command('ZCARD', `bulkhead:limiter:{${name}}:h`), 0)
  assert.equal(await admin.command('ZCARD', `bulkhead:limiter:{${name}}:q`), 0)
})

test('a task that waits costs two round trips: the release hands its permit over, no re-acquire, no poll', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  // Two instances on one name, as two processes would be (they share this
  // process's connection, so its round-trip counter sees both).
  const a = new Limiter({ name, redis: server.url, concurrency: 2 })
  const b = new Limiter({ name, redis: server.url, concurrency: 2 })
  try {
    await Promise.all([a.run(() => {}), b.run(() => {})]) // subscribed, scripts loaded
    const before = a.stats().redis.roundTrips
    let running = 0
    let peak = 0
    const task = async () => {
      peak = Math.max(peak, ++running)
      await new Promise((resolve) => setImmediate(resolve))
      running--
    }
    const caller = async (limiter) => { for (let i = 0; i < 25; i++) await limiter.run(task) }
    await Promise.all([a, b, a, b, a, b, a, b].map(caller)) // 8 callers, 200 tasks, 2 permits
    const perTask = (a.stats().redis.roundTrips - before) / 200
    assert.equal(peak, 2)
    assert.ok(a.stats().waitP90 > 0, 'tasks did wait')
    // Acquire + release; a little slack for re-checks, none for a 1 s poll per wait.
    assert.ok(perTask <= 2.05, `round trips per task: ${perTask}`)
  } finally {
    await a.close()
    await b.close()
  }
})

test('weights count across processes', { skip, timeout: 60_000 }, async () => {
  const name = fresh()
  const runs = [
    worker({ name, concurrency: 4, tasks: 8, holdMs: 15, weight: 3 }),
    worker({ name, concurrency: 4, tasks: 8, holdMs: 15, weight: 2 }),
    worker({ name, concurrency: 4, tasks: 8, holdMs: 15, weight: 1 }),
  ]
  const results = await Promise.all(runs.map((r) => r.done))
  for (const r of results) assert.deepEqual(r.errors, [])
  const max = Number(await admin.command('GET', `${name}:obs:max`))
  assert.ok(max <= 4, `total weight at most 4 at once, saw ${max}`)
})

test('waiters start in priority order, then arrival order, across instances', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const a = new Limiter({ name, redis: server.url, concurrency: 1, lease: 3000 })
  const b = new Limiter({ name, redis: server.url, concurrency: 1, lease: 3000 })
  const order = []
  let release
  const holding = a.run(() => new Promise((resolve) => { release = resolve }))
  while (a.activeCount === 0) await sleep(5)
  const q = `bulkhead:limiter:{${name}}:q`
  const queued = async (count) => { while (await admin.command('ZCARD', q) < count) await sleep(5) }
  const runs = []
  runs.push(a.run(async () => order.push('a-low-1'), { priority: 0 })); await queued(1)
  runs.push(b.run(async () => order.push('b-low-2'), { priority: 0 })); await queued(2)
  runs.push(b.run(async () => order.push('b-high'), { priority: 5 })); await queued(3)
  runs.push(a.run(async () => order.push('a-mid'), { priority: 2 })); await queued(4)
  release()
  await holding
  await Promise.all(runs)
  assert.deepEqual(order, ['b-high', 'a-mid', 'a-low-1', 'b-low-2'])
  a.close()
  b.close()
})

test('the rate bound holds over every window across processes', { skip, timeout: 60_000 }, async () => {
  const name = fresh()
  const rate = { limit: 4, interval: 500 }
  const runs = [worker({ name, rate, tasks: 8, holdMs: 1 }), worker({ name, rate, tasks: 8, holdMs: 1 })]
  const results = await Promise.all(runs.map((r) => r.done))
  for (const r of results) assert.deepEqual(r.errors, [])
  const times = (await admin.command('LRANGE', `${name}:obs:times`, 0, -1)).map(Number).sort((a, b) => a - b)
  assert.equal(times.length, 16)
  // The observer stamps a start with Redis's clock one round trip after the
  // limiter granted it, so a gap can look shorter by that latency (up to
  // ~150 ms on this loaded 2-core machine); the limiter's own bound is exact.
  for (let i = 0; i + rate.limit < times.length; i++) {
    const gap = times[i + rate.limit] - times[i]
    assert.ok(gap >= rate.interval - 150, `starts ${i} and ${i + rate.limit} only ${gap} ms apart`)
  }
  assert.ok(times.at(-1) - times[0] >= 3 * rate.interval - 150)
})

test('permits of a process killed with SIGKILL come back within the lease', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const lease = 1500
  const redis = { url: server.url, commandTimeout: 300 }
  const holder = worker({ name, concurrency: 2, mode: 'hold', tasks: 2, lease, redis })
  await holder.waitLines(2)
  const killedAt = performance.now()
  holder.child.kill('SIGKILL')
  await holder.done
  const limiter = new Limiter({ name, redis, concurrency: 2, lease })
  try {
    await Promise.all([limiter.run(() => 1), limiter.run(() => 2)])
    const took = performance.now() - killedAt
    assert.ok(took <= lease + 1500, `permits back after ${took} ms (lease ${lease})`)
  } finally {
    limiter.close()
  }
})

test('a holder whose event loop is blocked for 3x the lease keeps its permit (renewed from Rust)', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const redis = { url: server.url, commandTimeout: 200 }
  const lease = 600
  const holder = worker({ name, concurrency: 1, mode: 'block', blockMs: 3 * lease, lease, redis })
  await holder.waitLines(1)
  const limiter = new Limiter({ name, redis, concurrency: 1, lease })
  try {
    // While the holder's loop is blocked, the permit stays taken.
    await assert.rejects(limiter.run(() => 'stolen', { timeout: 2 * lease }), { code: 'ERR_TIMEOUT' })
    const result = await holder.done
    assert.deepEqual(result, { aborted: false, reason: null })
    assert.equal(await limiter.run(() => 'after'), 'after')
  } finally {
    limiter.close()
  }
})

test('a lost lease aborts the task signal with ERR_LEASE_LOST', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const redis = { url: server.url, commandTimeout: 200 }
  const limiter = new Limiter({ name, redis, concurrency: 1, lease: 600 })
  try {
    let seen
    const run = limiter.run((signal) => new Promise((resolve) => {
      signal.addEventListener('abort', () => { seen = signal.reason.code; resolve('done') })
    }))
    while (limiter.activeCount === 0) await sleep(5)
    // Someone deletes the permits (as a Redis restart would).
    await admin.command('DEL', `bulkhead:limiter:{${name}}:h`)
    await assert.rejects(run, { code: 'ERR_LEASE_LOST' })
    assert.equal(seen, 'ERR_LEASE_LOST')
    assert.ok(limiter.stats().lostLeases >= 1)
  } finally {
    limiter.close()
  }
})

test('a running task keeps a script alive until its lease is lost; a settled one leaves nothing holding the process', { skip, timeout: 30_000 }, () => {
  const child = fileURLToPath(new URL('./fixtures/redis-lease-child.mjs', import.meta.url))
  for (const [mode, expected] of [['lost', 'ERR_LEASE_LOST'], ['done', 'done']]) {
    const result = spawnSync(process.execPath, [child, server.url, fresh(), mode], { encoding: 'utf8', timeout: 20_000 })
    assert.equal(result.status, 0, `${mode}: exit ${result.status} ${result.signal ?? ''} ${result.stderr}`)
    assert.equal(result.stdout.trim(), expected, mode)
  }
})

test('a waiter that aborts or times out leaves the Redis queue', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const limiter = new Limiter({ name, redis: server.url, concurrency: 1, lease: 3000 })
  const q = `bulkhead:limiter:{${name}}:q`
  try {
    let release
    const holding = limiter.run(() => new Promise((resolve) => { release = resolve }))
    while (limiter.activeCount === 0) await sleep(5)
    const ac = new AbortController()
    const aborted = limiter.run(() => 'no', { signal: ac.signal })
    const timed = limiter.run(() => 'no', { timeout: 200 })
    const later = limiter.run(() => 'yes')
    while (await admin.command('ZCARD', q) < 3) await sleep(5)
    ac.abort()
    await assert.rejects(aborted, { code: 'ERR_ABORTED' })
    await assert.rejects(timed, { code: 'ERR_TIMEOUT' })
    let left = 3
    for (let i = 0; i < 100 && left !== 1; i++) { left = await admin.command('ZCARD', q); await sleep(10) }
    assert.equal(left, 1, 'only the waiter still waiting is queued')
    release()
    await holding
    assert.equal(await later, 'yes')
  } finally {
    limiter.close()
  }
})

test('closing an instance takes its waiters out of the Redis queue', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const holder = new Limiter({ name, redis: server.url, concurrency: 1, lease: 3000 })
  const other = new Limiter({ name, redis: server.url, concurrency: 1, lease: 3000 })
  const q = `bulkhead:limiter:{${name}}:q`
  try {
    let release
    const holding = holder.run(() => new Promise((resolve) => { release = resolve }))
    while (holder.activeCount === 0) await sleep(5)
    const waiting = [other.run(() => 1), other.run(() => 2)]
    while (await admin.command('ZCARD', q) < 2) await sleep(5)
    other.close()
    for (const w of waiting) await assert.rejects(w, { code: 'ERR_CLOSED' })
    let left = 2
    for (let i = 0; i < 100 && left !== 0; i++) { left = await admin.command('ZCARD', q); await sleep(10) }
    assert.equal(left, 0)
    release()
    await holding
  } finally {
    holder.close()
    other.close()
  }
})

test('SCRIPT FLUSH does not break the limiter', { skip }, async () => {
  const name = fresh()
  const limiter = new Limiter({ name, redis: server.url, concurrency: 1 })
  try {
    assert.equal(await limiter.run(() => 1), 1)
    await admin.command('SCRIPT', 'FLUSH')
    assert.equal(await limiter.run(() => 2), 2)
  } finally {
    limiter.close()
  }
})

test('Redis paused: reject / allow / local answer within commandTimeout, and it recovers', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const redis = { url: server.url, commandTimeout: 250 }
  const reject = new Limiter({ name, redis, concurrency: 1 })
  const allow = new Limiter({ name, redis, concurrency: 1, onRedisDown: 'allow' })
  const local = new Limiter({ name, redis, concurrency: 1, onRedisDown: 'local' })
  try {
    assert.equal(await reject.run(() => 'up'), 'up')
    server.pause()
    try {
      const started = performance.now()
      await assert.rejects(reject.run(() => 'no'), { code: 'ERR_UNAVAILABLE' })
      assert.ok(performance.now() - started < 2000)
      assert.equal(await allow.run(() => 'allowed'), 'allowed')
      assert.equal(await local.run(() => 'local'), 'local')
      assert.equal(local.stats().fallbacks, 1)
      assert.equal(allow.stats().allowedWhileDown, 1)
    } finally {
      server.resume()
    }
    assert.equal(await reject.run(() => 'again'), 'again')
  } finally {
    reject.close(); allow.close(); local.close()
  }
})

test('Redis killed, then restarted empty: ERR_UNAVAILABLE while down, working after', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const redis = { url: server.url, commandTimeout: 250 }
  const limiter = new Limiter({ name, redis, concurrency: 2 })
  try {
    assert.equal(await limiter.run(() => 1), 1)
    await server.kill()
    await assert.rejects(limiter.run(() => 2), { code: 'ERR_UNAVAILABLE' })
    await server.restart()
    assert.equal(await limiter.run(() => 3), 3)
  } finally {
    limiter.close()
  }
})

test('distributed options are checked', { skip }, () => {
  assert.throws(() => new Limiter({ redis: server.url, concurrency: 1 }),
    { name: 'TypeError', code: 'ERR_INVALID_ARG', message: /options\.name/ })
  assert.throws(() => new Limiter({ name: 'x', redis: server.url }), { name: 'TypeError', message: /concurrency/ })
  assert.throws(() => new Limiter({ name: 'x', redis: server.url, concurrency: 1, onRedisDown: 'maybe' }),
    { name: 'TypeError', message: /onRedisDown/ })
  assert.throws(() => new Limiter({ name: 'x', redis: server.url, concurrency: 1, lease: 10 }),
    { name: 'TypeError', message: /lease/ })
  assert.throws(() => new Limiter({ name: 'x', redis: server.url, concurrency: 1, maxPending: 0 }),
    { code: 'ERR_INVALID_ARG', message: /options\.maxPending .*queueTimeout: 0/ })
  assert.throws(() => new Limiter({ name: 'x', redis: server.url, concurrency: 1, queueTimeout: -1 }),
    { code: 'ERR_INVALID_ARG', message: /options\.queueTimeout/ })
  assert.throws(() => new Limiter({ name: 'x', redis: server.url, rate: { limit: 100_001, interval: 1000 } }),
    { code: 'ERR_INVALID_ARG', message: /options\.rate\.limit must be an integer from 1 to 100000/ })
})

// ---- The local Limiter's API in distributed mode ---------------------------

const q = (name) => `bulkhead:limiter:{${name}}:q`
async function queued(name, count) {
  for (let i = 0; i < 500; i++) {
    if (await admin.command('ZCARD', q(name)) === count) return
    await sleep(10)
  }
  assert.equal(await admin.command('ZCARD', q(name)), count, `${count} waiters in the Redis queue`)
}
function deferred() {
  let resolve
  const promise = new Promise((r) => { resolve = r })
  return { promise, resolve }
}
// Holds the one permit of `limiter` until the returned gate is resolved.
async function hold(limiter) {
  const gate = deferred()
  const running = limiter.run(() => gate.promise)
  while (limiter.activeCount === 0) await sleep(5)
  return { release: () => gate.resolve('held'), running }
}

test('a distributed limiter is instanceof Limiter and has every public member of the local one', { skip }, async () => {
  const local = new Limiter({ concurrency: 1 })
  const name = fresh()
  const limiter = new Limiter({ name, redis: server.url, concurrency: 2 })
  try {
    assert.ok(limiter instanceof Limiter)
    const members = (o) => Object.getOwnPropertyNames(Object.getPrototypeOf(o)).filter((m) => m !== 'constructor')
    for (const member of members(local)) {
      assert.ok(member in limiter, `has ${member}`)
      // Each works (or, for the concurrency setter, refuses clearly): none
      // falls through to the local class's private state.
      const d = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(local), member)
      if (d.get) assert.doesNotThrow(() => limiter[member], member)
    }
    assert.equal(limiter.name, name)
    assert.equal(limiter.concurrency, 2)
    assert.equal(limiter.nativeSlots, 0)
    assert.throws(() => { limiter.concurrency = 3 }, { code: 'ERR_INVALID_ARG', message: /cannot be changed in distributed mode/ })
    assert.equal(limiter.concurrency, 2)
  } finally {
    await limiter.close()
    await local.close()
  }
})

test('unknown options are ERR_INVALID_ARG with the option meant, in distributed mode too', { skip }, async () => {
  const name = fresh()
  assert.throws(() => new Limiter({ name, redis: server.url, concurrency: 1, queueTimout: 5 }), {
    code: 'ERR_INVALID_ARG',
    message: /unknown option `queueTimout` in new Limiter\(\{ redis \}\) options: did you mean `queueTimeout`\?/,
  })
  assert.throws(() => new Limiter({ name, redis: server.url, concurrency: 1, maxPendng: 5 }),
    { code: 'ERR_INVALID_ARG', message: /did you mean `maxPending`/ })
  const limiter = new Limiter({ name, redis: server.url, concurrency: 1 })
  try {
    await assert.rejects(limiter.run(() => 1, { wieght: 1 }), { code: 'ERR_INVALID_ARG', message: /did you mean `weight`/ })
    await assert.rejects(limiter.map([1], (x) => x, { setle: true }), { code: 'ERR_INVALID_ARG', message: /did you mean `settle`/ })
  } finally {
    await limiter.close()
  }
})

test('maxPending bounds this process\'s waiters: one more is ERR_QUEUE_FULL naming the limiter', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const limiter = new Limiter({ name, redis: server.url, concurrency: 1, maxPending: 2 })
  try {
    const held = await hold(limiter)
    const waiting = [limiter.run(() => 'a'), limiter.run(() => 'b')]
    assert.equal(limiter.pendingCount, 2)
    await assert.rejects(limiter.run(() => 'c'), {
      code: 'ERR_QUEUE_FULL',
      message: `Limiter "${name}" (redis): the queue is full (maxPending: 2 in this process)`,
    })
    assert.equal(limiter.stats().queueFull, 1)
    await queued(name, 2)
    held.release()
    assert.deepEqual(await Promise.all(waiting), ['a', 'b'])
  } finally {
    await limiter.close()
  }
})

test('maxPending defaults to 1024 per process; clear() takes every waiter out of the Redis queue', { skip, timeout: 60_000 }, async () => {
  const name = fresh()
  const limiter = new Limiter({ name, redis: server.url, concurrency: 1 })
  try {
    const held = await hold(limiter)
    const waiting = Array.from({ length: 1024 }, (_, i) => limiter.run(() => i))
    await assert.rejects(limiter.run(() => 'one too many'), { code: 'ERR_QUEUE_FULL', message: /maxPending: 1024/ })
    await queued(name, 1024)
    limiter.clear()
    assert.equal(limiter.pendingCount, 0, 'cleared waiters are rejected at once')
    const outcomes = await Promise.allSettled(waiting)
    assert.ok(outcomes.every((o) => o.status === 'rejected' && o.reason.code === 'ERR_ABORTED' &&
      o.reason.message === 'the task was cleared from the queue'))
    await queued(name, 0)
    // The hash keeps only its arrival counter ('#').
    assert.deepEqual(await admin.command('HKEYS', `bulkhead:limiter:{${name}}:m`), ['#'], 'no waiter metadata left')
    held.release()
    assert.equal(await held.running, 'held')
    // The limiter still works after clear().
    assert.equal(await limiter.run(() => 'after'), 'after')
  } finally {
    await limiter.close()
  }
})

test('queueTimeout: a task still waiting rejects with ERR_TIMEOUT naming the limiter, and leaves the Redis queue', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const limiter = new Limiter({ name, redis: server.url, concurrency: 1, queueTimeout: 300 })
  try {
    const held = await hold(limiter)
    const started = performance.now()
    const late = limiter.run(() => 'late')
    await queued(name, 1)
    await assert.rejects(late, {
      code: 'ERR_TIMEOUT',
      message: `Limiter "${name}" (redis): the task waited 300 ms for a permit (queueTimeout) and was dropped`,
    })
    assert.ok(performance.now() - started >= 290)
    await queued(name, 0)
    // The running task is not bound by it; a per-run queueTimeout overrides.
    await sleep(100)
    const patient = limiter.run(() => 'patient', { queueTimeout: Infinity })
    await sleep(400)
    held.release()
    assert.equal(await held.running, 'held')
    assert.equal(await patient, 'patient')
    assert.equal(limiter.stats().timedOut, 1)
  } finally {
    await limiter.close()
  }
})

test('queueTimeout defaults to 30 s in distributed mode', { skip, timeout: 60_000 }, async () => {
  const name = fresh()
  const limiter = new Limiter({ name, redis: server.url, concurrency: 1 })
  try {
    const held = await hold(limiter)
    const started = performance.now()
    await assert.rejects(limiter.run(() => 'late'), { code: 'ERR_TIMEOUT', message: /waited 30000 ms for a permit \(queueTimeout\)/ })
    assert.ok(performance.now() - started >= 29_900)
    await queued(name, 0)
    held.release()
    await held.running
  } finally {
    await limiter.close()
  }
})

test('pause() stops this process starting tasks; its waiters leave the Redis queue so other processes go on', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const paused = new Limiter({ name, redis: server.url, concurrency: 1 })
  const other = new Limiter({ name, redis: server.url, concurrency: 1 })
  try {
    const held = await hold(other)
    const order = []
    const first = paused.run(() => order.push('paused-1'))
    await queued(name, 1)
    paused.pause()
    assert.equal(paused.isPaused, true)
    await queued(name, 0) // out of the Redis queue while paused
    const later = paused.run(() => order.push('paused-2'))
    assert.equal(paused.pendingCount, 2)
    const otherTask = other.run(() => order.push('other'))
    await queued(name, 1) // only the other process's waiter
    held.release()
    await otherTask
    await sleep(200)
    assert.deepEqual(order, ['other'], 'nothing started in the paused process')
    paused.resume()
    assert.equal(paused.isPaused, false)
    await Promise.all([first, later])
    assert.deepEqual(order, ['other', 'paused-1', 'paused-2'])
  } finally {
    await paused.close()
    await other.close()
  }
})

test('onIdle(), onEmpty(), onSizeLessThan() follow this process\'s tasks', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const limiter = new Limiter({ name, redis: server.url, concurrency: 1 })
  try {
    await limiter.onIdle() // idle at once
    const held = await hold(limiter)
    const waiting = [limiter.run(() => 1), limiter.run(() => 2)]
    let idle = false
    let empty = false
    let belowTwo = false
    limiter.onIdle().then(() => { idle = true })
    limiter.onEmpty().then(() => { empty = true })
    limiter.onSizeLessThan(2).then(() => { belowTwo = true })
    await assert.rejects(limiter.onSizeLessThan(0), { code: 'ERR_INVALID_ARG' })
    await sleep(100)
    assert.deepEqual([idle, empty, belowTwo], [false, false, false])
    held.release()
    await Promise.all(waiting)
    await limiter.onIdle()
    assert.deepEqual([idle, empty, belowTwo], [true, true, true])
    assert.equal(limiter.activeCount + limiter.pendingCount, 0)
  } finally {
    await limiter.close()
  }
})

test('map() and mapIterable() run through the shared limit, results in input order', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const a = new Limiter({ name, redis: server.url, concurrency: 2 })
  const b = new Limiter({ name, redis: server.url, concurrency: 2 })
  try {
    let running = 0
    let most = 0
    const work = async (x, _i, signal) => {
      assert.ok(signal instanceof AbortSignal)
      running++
      most = Math.max(most, running)
      await sleep(20)
      running--
      return x * 10
    }
    const [fromA, fromB] = await Promise.all([a.map([1, 2, 3, 4, 5], work), b.map([6, 7, 8], work)])
    assert.deepEqual(fromA, [10, 20, 30, 40, 50])
    assert.deepEqual(fromB, [60, 70, 80])
    assert.ok(most <= 2, `at most 2 at once across both instances, saw ${most}`)
    const seen = []
    for await (const v of a.mapIterable((async function* () { yield 1; yield 2; yield 3 })(), work)) seen.push(v)
    assert.deepEqual(seen, [10, 20, 30])
    const settled = await a.map([1, 2], async (x) => { if (x === 2) throw new Error('two'); return x }, { settle: true })
    assert.equal(settled[0].value, 1)
    assert.equal(settled[1].reason.message, 'two')
  } finally {
    await a.close()
    await b.close()
  }
})

test('close() resolves once running tasks finished and their permits are back in Redis', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const limiter = new Limiter({ name, redis: server.url, concurrency: 1 })
  const held = await hold(limiter)
  let closed = false
  const closing = limiter.close().then(() => { closed = true })
  assert.equal(limiter.close(), limiter.close(), 'close() is idempotent')
  await assert.rejects(limiter.run(() => 1), { code: 'ERR_CLOSED' })
  await sleep(100)
  assert.equal(closed, false)
  held.release()
  await closing
  assert.equal(await admin.command('ZCARD', `bulkhead:limiter:{${name}}:h`), 0)
  const stats = limiter.stats()
  assert.equal(stats.completed, 1)
  assert.equal(stats.acquired, 1)
  assert.ok(stats.runP50 >= 50, `runP50 ${stats.runP50}`)
})

test('label names the instance in traces: a bulkhead:limiter trace per task, with its wait time', { skip, timeout: 30_000 }, async () => {
  const { tracingChannel } = await import('node:diagnostics_channel')
  const name = fresh()
  assert.throws(() => new Limiter({ name, redis: server.url, concurrency: 1, label: 3 }),
    { name: 'TypeError', message: /options\.label must be a string/ })
  const plain = new Limiter({ name, redis: server.url, concurrency: 1 })
  const limiter = new Limiter({ name, redis: server.url, concurrency: 1, label: 'upstream-a' })
  const seen = []
  const handlers = {
    start: (ctx) => seen.push(['start', ctx.label, ctx.name, ctx.priority, ctx.weight]),
    asyncStart: (ctx) => seen.push(['asyncStart', typeof ctx.waitTime, ctx.result]),
    error: (ctx) => seen.push(['error', ctx.error.message]),
  }
  const channel = tracingChannel('bulkhead:limiter')
  channel.subscribe(handlers)
  try {
    assert.equal(plain.label, name, 'defaults to the name')
    assert.equal(limiter.label, 'upstream-a')
    assert.equal(await limiter.run(() => 'ok', { priority: 2 }), 'ok')
    await assert.rejects(limiter.run(() => { throw new Error('boom') }), /boom/)
    assert.deepEqual(seen, [
      ['start', 'upstream-a', name, 2, 1],
      ['asyncStart', 'number', 'ok'],
      ['start', 'upstream-a', name, 0, 1],
      ['error', 'boom'],
      ['asyncStart', 'number', undefined],
    ])
  } finally {
    channel.unsubscribe(handlers)
    await limiter.close()
    await plain.close()
  }
})
