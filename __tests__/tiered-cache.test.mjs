// TieredCache against a real redis-server, with several Node processes:
// coherence after writes, one load per key across the fleet, grace,
// a missed invalidation (bus killed), Redis paused and killed, bounds, options.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { fork } from 'node:child_process'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { existsSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { RedisServer, haveRedis } from './helpers/redis-server.mjs'

const require = createRequire(import.meta.url)
const { TieredCache } = require('../lib/tiered-cache.js')
const { RedisClient } = require('../lib/redis.js')
const { codes } = require('../lib/errors.js')

const skip = haveRedis ? false : 'redis-server is not installed'
const WORKER = fileURLToPath(new URL('./fixtures/tiered-cache-worker.mjs', import.meta.url))
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

/** A child process with a TieredCache; `call(op, fields)` resolves to its reply. */
async function worker(cfg, url = server.url, execPath = process.execPath) {
  const child = fork(WORKER, [JSON.stringify({ url, ...cfg })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execPath, execArgv: [] })
  const waiting = new Map()
  let next = 0
  await new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`worker exited (${code})`)))
    child.on('message', (m) => {
      if (m.ready) return resolve()
      const w = waiting.get(m.id)
      waiting.delete(m.id)
      if (m.error !== undefined) w.reject(Object.assign(new Error(m.error), { code: m.error }))
      else w.resolve(m.value)
    })
  })
  const call = (op, fields = {}) => new Promise((resolve, reject) => {
    const id = ++next
    waiting.set(id, { resolve, reject })
    child.send({ id, op, ...fields })
  })
  const close = async () => {
    const exited = new Promise((resolve) => child.once('exit', resolve))
    await call('close').catch(() => {})
    await exited
  }
  return { child, call, close }
}

/** Polls `fn` until it returns truthy (every 10 ms, at most `ms`). */
async function until(fn, ms = 5000, what = 'condition') {
  const end = Date.now() + ms
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

/** Waits until every worker's subscription is confirmed (an invalidation round trip). */
async function settled(workers) {
  // A write from a fresh instance reaches every subscribed worker.
  const probe = new TieredCache({ name: workers.name, redis: server.url, ttl: 1000 })
  try {
    const before = await Promise.all(workers.map((w) => w.call('stats')))
    await until(async () => {
      await probe.set('__probe', 1)
      const now = await Promise.all(workers.map((w) => w.call('stats')))
      return now.every((s, i) => s.invalidationsReceived > before[i].invalidationsReceived)
    }, 5000, 'subscriptions')
  } finally {
    probe.close()
  }
}

async function fleet(count, cfg) {
  const name = fresh()
  const workers = await Promise.all(Array.from({ length: count }, () => worker({ name, ...cfg })))
  workers.name = name
  await settled(workers)
  return workers
}

test('coherence: a set or delete in one process reaches the L1 of the other three', { skip, timeout: 30_000 }, async () => {
  const ws = await fleet(4, { ttl: 60_000 })
  try {
    const first = await Promise.all(ws.map((w) => w.call('fetch', { key: 'user:1' })))
    for (const v of first) assert.deepEqual(v, first[0], 'every process reads the one loaded value')
    for (const w of ws) assert.deepEqual(await w.call('get', { key: 'user:1' }), first[0], 'held in every L1')

    const before = await Promise.all(ws.map((w) => w.call('stats')))
    await ws[0].call('set', { key: 'user:1', value: { name: 'new' } })
    await until(async () => {
      const s = await Promise.all(ws.slice(1).map((w) => w.call('stats')))
      return s.every((x, i) => x.invalidationsReceived > before[i + 1].invalidationsReceived)
    }, 5000, 'invalidations')
    for (const w of ws) {
      const held = await w.call('get', { key: 'user:1' })
      assert.ok(held === null || held.name === 'new', `L1 never serves the old value after the invalidation: ${JSON.stringify(held)}`)
      assert.deepEqual(await w.call('fetch', { key: 'user:1' }), { name: 'new' })
    }
    const loads = await Promise.all(ws.map((w) => w.call('loads')))
    assert.equal(loads.reduce((a, l) => a + (l['user:1'] ?? 0), 0), 1, 'one load for the whole fleet')

    const mid = await Promise.all(ws.map((w) => w.call('stats')))
    await ws[2].call('delete', { key: 'user:1' })
    await until(async () => {
      const s = await Promise.all(ws.map((w, i) => (i === 2 ? null : w.call('stats'))))
      return s.every((x, i) => x === null || x.invalidationsReceived > mid[i].invalidationsReceived)
    }, 5000, 'invalidations')
    for (const w of ws) assert.equal(await w.call('get', { key: 'user:1' }), null, 'deleted from every L1')
    const after = await Promise.all(ws.map((w) => w.call('fetch', { key: 'user:1' })))
    for (const v of after) {
      assert.equal(v.key, 'user:1', 'a fresh load after the delete')
      assert.deepEqual(v, after[0])
    }
  } finally {
    await Promise.all(ws.map((w) => w.close()))
  }
})

test('one loader run per key across 4 processes x 100 callers', { skip, timeout: 60_000 }, async () => {
  const ws = await fleet(4, { ttl: 60_000, loadMs: 300 })
  try {
    const keys = ['a', 'b', 'c', 'd', 'e']
    const startAt = Date.now() + 300
    const results = await Promise.all(ws.map((w) => w.call('many', { keys, callers: 100, startAt })))
    const loads = await Promise.all(ws.map((w) => w.call('loads')))
    for (const key of keys) {
      assert.equal(loads.reduce((a, l) => a + (l[key] ?? 0), 0), 1, `key ${key}: one loader run in the fleet`)
    }
    // Every caller of a key, in every process, got the same value.
    for (const [i, key] of keys.entries()) {
      const seen = results.flatMap((r) => r.slice(i * 100, (i + 1) * 100))
      assert.equal(seen.length, 400)
      for (const v of seen) assert.deepEqual(v, seen[0])
      assert.equal(seen[0].key, key)
    }
    const stats = await Promise.all(ws.map((w) => w.call('stats')))
    const sum = (f) => stats.reduce((a, s) => a + s[f], 0)
    assert.equal(sum('loads'), 5)
    assert.equal(sum('loadsJoinedLocally'), 4 * 5 * 99, 'callers after the first in each process join locally')
    assert.equal(sum('loadsJoinedRemote') + sum('l2Hits'), 15, 'the other processes got the value from the leader')
  } finally {
    await Promise.all(ws.map((w) => w.close()))
  }
})

test('grace: a stale value is served while one refresh runs, and when the loader fails', { skip, timeout: 30_000 }, async () => {
  let runs = 0
  let gate
  let fail = false
  const cache = new TieredCache({
    name: fresh(), redis: server.url, ttl: 150, grace: 20_000,
    fetchMethod: async () => {
      runs++
      if (gate) await gate
      if (fail) throw new Error('upstream down')
      return runs
    },
  })
  try {
    assert.equal(await cache.fetch('k'), 1)
    assert.equal(await cache.fetch('k'), 1)
    assert.equal(runs, 1)
    await sleep(200) // past ttl, within grace
    let open
    gate = new Promise((resolve) => { open = resolve })
    assert.equal(await cache.fetch('k'), 1, 'stale while revalidating')
    assert.equal(await cache.fetch('k'), 1, 'still stale; the refresh is running')
    assert.equal(cache.get('k'), undefined, 'get() returns fresh values only')
    await until(() => runs === 2, 2000, 'the refresh to start')
    assert.equal(await cache.fetch('k'), 1, 'still stale while the refresh runs')
    assert.equal(runs, 2, 'one background refresh')
    open()
    gate = undefined
    await until(() => cache.stats().refreshes === 1 && cache.get('k') === 2, 2000, 'refresh')
    assert.equal(await cache.fetch('k'), 2)

    // Stale-if-error: the loader fails; the stale value is still served.
    await sleep(200)
    fail = true
    assert.equal(await cache.fetch('k'), 2, 'stale while revalidating (the refresh fails)')
    await until(() => cache.stats().loadErrors === 1, 2000, 'failed refresh')
    assert.equal(await cache.fetch('k', { forceRefresh: true }), 2, 'stale if error')
    assert.equal(cache.stats().staleIfError, 1)
    assert.equal(cache.stats().loadErrors, 2)
  } finally {
    cache.close()
  }
  // Past grace, the loader's error reaches the caller.
  const short = new TieredCache({
    name: fresh(), redis: server.url, ttl: 50, grace: 100,
    fetchMethod: async () => { if (fail) throw new Error('upstream down'); return 'v' },
  })
  try {
    fail = false
    assert.equal(await short.fetch('k'), 'v')
    await sleep(200)
    fail = true
    await assert.rejects(short.fetch('k'), /upstream down/)
  } finally {
    short.close()
  }
})

test('bus killed (CLIENT KILL TYPE pubsub), a write elsewhere, reconnect: no stale read after the reconnect', { skip, timeout: 30_000 }, async () => {
  const [a, b] = await fleet(2, { ttl: 60_000, l1Ttl: 10_000 })
  try {
    const v1 = await a.call('fetch', { key: 'k' })
    assert.deepEqual(await a.call('get', { key: 'k' }), v1, 'held in A\'s L1')
    const before = await a.call('stats')
    const killed = await admin.command('CLIENT', 'KILL', 'TYPE', 'pubsub')
    assert.ok(Number(killed) >= 2, 'both subscribers killed')
    await b.call('set', { key: 'k', value: 'v2' })
    // A missed the message (its subscriber was down); its L1 may still hold v1
    // until the reconnect, never after it.
    const reads = []
    await until(async () => {
      const s = await a.call('stats')
      if (s.busReconnects > before.busReconnects) return true
      reads.push(await a.call('get', { key: 'k' }))
      return false
    }, 5000, 'reconnect')
    const s = await a.call('stats')
    assert.equal(s.invalidationsReceived, before.invalidationsReceived, 'the write\'s message was missed')
    assert.equal(await a.call('get', { key: 'k' }), null, 'L1 dropped at the reconnect')
    assert.equal(await a.call('fetch', { key: 'k' }), 'v2')
    for (const r of reads) assert.ok(r === null || r === 'v2' || r.run === v1.run, 'only v1 (before the reconnect) or v2')
  } finally {
    await Promise.all([a.close(), b.close()])
  }
})

test('Redis paused (SIGSTOP): fetch serves L1, loads locally (deduplicated), never hangs; onRedisDown reject fails fast', { skip, timeout: 30_000 }, async (t) => {
  const own = await RedisServer.start()
  // Registered first, so the server is stopped however the test ends.
  t.after(() => own.stop())
  let runs = 0
  const cfg = {
    redis: { url: own.url, commandTimeout: 200 }, ttl: 60_000,
    fetchMethod: async (key) => { runs++; await sleep(20); return `v:${key}` },
  }
  const cache = new TieredCache({ name: 'paused', ...cfg })
  const strict = new TieredCache({ name: 'paused-strict', ...cfg, onRedisDown: 'reject' })
  t.after(() => { cache.close(); strict.close() })
  try {
    // A fetch can settle before the instance's bus subscription is
    // confirmed, and until then nothing fills L1: wait for 'warm' in L1.
    for (const c of [cache, strict]) {
      await until(async () => (await c.fetch('warm')) === 'v:warm' && c.get('warm') === 'v:warm', 2000, 'warm in L1')
    }
    runs = 0
    own.pause()
    const t0 = performance.now()
    let l1HitsBefore = cache.stats().l1Hits
    assert.equal(await cache.fetch('warm'), 'v:warm')
    assert.equal(cache.stats().l1Hits, l1HitsBefore + 1, 'L1 hit without Redis')
    assert.equal(runs, 0)
    l1HitsBefore = cache.stats().l1Hits
    const values = await Promise.all(Array.from({ length: 20 }, () => cache.fetch('cold')))
    const waited = performance.now() - t0
    assert.deepEqual(new Set(values), new Set(['v:cold']))
    assert.equal(runs, 1, 'one local load for 20 callers')
    assert.ok(waited < 200 * 5, `bounded by commandTimeout, not a hang (${waited.toFixed(0)} ms)`)
    const s = cache.stats()
    assert.ok(s.fallbacks >= 1, 'the fallback is counted')
    assert.equal(s.redisDown, true)
    // The 20 L2 reads time out one by one: a caller whose timeout came after
    // the local load finished finds its value in L1 instead of joining it.
    assert.equal(s.loadsJoinedLocally + s.l1Hits - l1HitsBefore, 19, 'the other 19 joined the load or found its value in L1')
    // The breaker is open: the next miss does not wait for Redis at all.
    assert.equal(await cache.fetch('cold2'), 'v:cold2')
    assert.equal(cache.stats().fallbacks, s.fallbacks, 'no new command tried while the breaker is open')

    assert.equal(await strict.fetch('warm'), 'v:warm', 'reject mode still serves L1')
    await assert.rejects(strict.fetch('other'), (err) => err.code === codes.UNAVAILABLE)
    const t1 = performance.now()
    await assert.rejects(strict.fetch('other2'), (err) => err.code === codes.UNAVAILABLE)
    assert.ok(performance.now() - t1 < 100, 'fails fast while the breaker is open')
    assert.ok(strict.stats().rejectedWhileDown >= 2)
    await assert.rejects(cache.set('k', 1), (err) => err.code === codes.UNAVAILABLE)
  } finally {
    own.resume()
  }
  // Redis is back: after the breaker's cooldown, the next call uses it again.
  await sleep(1100)
  await cache.set('back', 'yes')
  assert.equal(await cache.fetch('back'), 'yes')
  assert.equal(cache.stats().redisDown, false)
})

test('the breaker closes when Redis answers, even if the probing call\'s loader fails', { skip, timeout: 30_000 }, async (t) => {
  const own = await RedisServer.start()
  t.after(() => own.stop())
  const cache = new TieredCache({
    name: 'probe', redis: { url: own.url, commandTimeout: 200 }, ttl: 60_000,
    fetchMethod: async () => { throw new Error('loader failed') },
  })
  try {
    own.pause()
    await assert.rejects(cache.fetch('a'), /loader failed/) // a local load (Redis away)
    assert.equal(cache.stats().redisDown, true)
    own.resume()
    await sleep(1100) // the breaker's cooldown
    // This call probes Redis (it answers); its loader fails.
    await assert.rejects(cache.fetch('b', { forceRefresh: true }), /loader failed/)
    assert.equal(cache.stats().redisDown, false, 'a probe whose loader failed does not keep Redis skipped')
  } finally {
    own.resume()
    cache.close()
  }
})

test('Redis killed and restarted empty: local loads meanwhile, L1 dropped at the reconnect', { skip, timeout: 30_000 }, async (t) => {
  const own = await RedisServer.start()
  t.after(() => own.stop())
  let runs = 0
  const cache = new TieredCache({
    name: 'killed', redis: { url: own.url, commandTimeout: 200 }, ttl: 60_000,
    fetchMethod: async (key) => `v:${key}:${++runs}`,
  })
  try {
    await until(async () => (await cache.fetch('a')) === 'v:a:1', 2000, 'warm')
    await until(() => cache.get('a') !== undefined, 2000, 'L1 filled once the bus is confirmed')
    await own.kill()
    const t0 = performance.now()
    assert.equal(await cache.fetch('a'), 'v:a:1', 'L1 while Redis is gone')
    assert.equal(await cache.fetch('b'), 'v:b:2', 'loaded locally')
    assert.ok(performance.now() - t0 < 1000, 'no hang')
    assert.ok(cache.stats().fallbacks >= 1)
    const before = cache.stats().busReconnects
    await own.restart()
    await until(() => cache.stats().busReconnects > before, 10_000, 'bus reconnect')
    assert.equal(cache.get('a'), undefined, 'entries older than the reconnect are dropped')
    await sleep(1100) // the breaker's cooldown
    assert.equal(await cache.fetch('a'), 'v:a:3', 'reloaded (Redis came back empty)')
  } finally {
    cache.close()
  }
})

test('bounds: L1 stays within max and maxSize, every L2 key carries a TTL', { skip, timeout: 60_000 }, async () => {
  const name = fresh()
  const cache = new TieredCache({ name, redis: server.url, ttl: 30_000, grace: 5_000, max: 100, fetchMethod: async (k) => `v${k}` })
  const sized = new TieredCache({
    name: fresh(), redis: server.url, ttl: 30_000, maxSize: 1000, sizeCalculation: (v) => v.length,
    fetchMethod: async (k) => 'x'.repeat(1 + (Number(k) % 50)),
  })
  try {
    // L1 fills once the bus subscription is confirmed.
    await until(async () => { await cache.fetch('probe'); return cache.get('probe') !== undefined }, 2000, 'confirmed')
    for (let i = 0; i < 2000; i += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, j) => cache.fetch(i + j)))
      await Promise.all(Array.from({ length: 50 }, (_, j) => sized.fetch(i + j)))
      assert.ok(cache.size <= 100, `L1 size ${cache.size} <= max`)
      assert.ok(sized.stats().l1CalculatedSize <= 1000, 'L1 size within maxSize')
    }
    assert.equal(cache.size, 100, 'L1 full, not empty')
    let cursor = '0'
    let keys = 0
    do {
      const [next, batch] = await admin.command('SCAN', cursor, 'MATCH', `bulkhead:tiered:{${name}}:v:*`, 'COUNT', 1000)
      cursor = String(next)
      for (const key of batch) {
        const pttl = Number(await admin.command('PTTL', key))
        assert.ok(pttl > 0 && pttl <= 35_000, `${key} expires within ttl + grace (${pttl})`)
        keys++
      }
    } while (cursor !== '0')
    assert.equal(keys, 2001, 'every loaded key is in L2')
    await cache.clear()
    const [, left] = await admin.command('SCAN', '0', 'MATCH', `bulkhead:tiered:{${name}}:v:*`, 'COUNT', 10_000)
    assert.equal(left.length, 0, 'clear() empties L2')
    assert.equal(cache.size, 0)
  } finally {
    cache.close()
    sized.close()
  }
})

test('a caller leaving: its signal rejects it with ERR_ABORTED; the loader\'s signal fires when every caller left', { skip, timeout: 30_000 }, async () => {
  let loaderSignal
  const cache = new TieredCache({
    name: fresh(), redis: server.url, ttl: 10_000,
    fetchMethod: (key, stale, { signal }) => {
      loaderSignal = signal
      return new Promise(() => {})
    },
  })
  try {
    const c1 = new AbortController()
    const c2 = new AbortController()
    const p1 = cache.fetch('k', { signal: c1.signal })
    const p2 = cache.fetch('k', { signal: c2.signal })
    await until(() => loaderSignal !== undefined, 2000, 'loader')
    c1.abort()
    await assert.rejects(p1, (err) => err.code === codes.ABORTED)
    assert.equal(loaderSignal.aborted, false, 'one caller still waits')
    c2.abort()
    await assert.rejects(p2, (err) => err.code === codes.ABORTED)
    assert.equal(loaderSignal.aborted, true)
  } finally {
    cache.close()
  }
})

test('a cold key costs its loader three round trips (L2 read; lock with L2 re-check; write with the outcome), an L2 hit one', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  let runs = 0
  const a = new TieredCache({ name, redis: server.url, ttl: 60_000, fetchMethod: async (key) => { runs++; return `v:${key}` } })
  const b = new TieredCache({ name, redis: server.url, ttl: 60_000, fetchMethod: async () => { throw new Error('b must not load') } })
  try {
    // Subscriptions confirmed and the loads' channel subscribed before counting.
    await until(async () => (await a.fetch('warm')) === 'v:warm' && a.get('warm') !== undefined, 2000, 'a subscribed')
    await until(async () => (await b.fetch('warm')) === 'v:warm' && b.get('warm') !== undefined, 2000, 'b subscribed')
    const trips = () => a.stats().redis.roundTrips
    let before = trips()
    assert.equal(await a.fetch('cold'), 'v:cold')
    assert.equal(trips() - before, 3)
    assert.equal(runs, 2)
    before = trips()
    const l2Hits = b.stats().l2Hits
    assert.equal(await b.fetch('cold'), 'v:cold')
    assert.equal(trips() - before, 1, 'b reads it from L2')
    assert.equal(b.stats().l2Hits, l2Hits + 1)
  } finally {
    a.close()
    b.close()
  }
})

test('an instance made after another of its name is subscribed still fills its L1', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  const a = new TieredCache({ name, redis: server.url, ttl: 60_000, fetchMethod: async (key) => `v:${key}` })
  let b
  try {
    await until(async () => (await a.fetch('warm')) === 'v:warm' && a.get('warm') !== undefined, 2000, 'a subscribed')
    b = new TieredCache({ name, redis: server.url, ttl: 60_000, fetchMethod: async (key) => `v:${key}` })
    // Its bus joins a channel this process has subscribed already.
    await until(async () => (await b.fetch('warm')) === 'v:warm' && b.get('warm') !== undefined, 2000, 'b subscribed')
    assert.equal(a.get('warm'), 'v:warm', "b's subscription did not make a drop its L1")
    assert.equal(a.stats().busReconnects, 0)
  } finally {
    a.close()
    b?.close()
  }
})

test('a load whose callers all left still writes what it loaded to L2', { skip, timeout: 30_000 }, async () => {
  const name = fresh()
  let open
  const gate = new Promise((resolve) => { open = resolve })
  let started = false
  const a = new TieredCache({
    name, redis: server.url, ttl: 60_000,
    fetchMethod: async () => { started = true; await gate; return 'loaded' },
  })
  const b = new TieredCache({ name, redis: server.url, ttl: 60_000 })
  try {
    const controller = new AbortController()
    const pending = a.fetch('k', { signal: controller.signal })
    await until(() => started, 2000, 'the loader')
    controller.abort()
    await assert.rejects(pending, (err) => err.code === codes.ABORTED)
    open()
    // b only reads: a loader that finds nothing returns undefined (not cached).
    const fromL2 = () => b.fetch('k', { fetchMethod: async () => undefined })
    assert.equal(await until(async () => (await fromL2()) === 'loaded', 2000, 'the value in L2'), true)
  } finally {
    a.close()
    b.close()
  }
})

// A rolling deploy mixes Node majors: L2 values are JSON, which all read.
// Node 22 from scripts/fetch-node.sh's cache (`bash scripts/fetch-node.sh 22`).
const NODE_22 = join(process.env.BULKHEAD_NODE_CACHE ?? join(homedir(), '.cache/bulkhead/node'), '22/package/bin/node')
test('a Node 22 process and this Node read each other\'s values', {
  skip: skip || (existsSync(NODE_22) ? false : 'Node 22 not fetched (bash scripts/fetch-node.sh 22)'),
  timeout: 30_000,
}, async () => {
  const name = fresh()
  const old = await worker({ name, ttl: 60_000 }, server.url, NODE_22)
  const cur = await worker({ name, ttl: 60_000 })
  try {
    await old.call('set', { key: 'from22', value: { n: 22, list: [1, 'two'] } })
    await cur.call('set', { key: 'from24', value: { n: 24 } })
    assert.deepEqual(await cur.call('fetch', { key: 'from22' }), { n: 22, list: [1, 'two'] })
    assert.deepEqual(await old.call('fetch', { key: 'from24' }), { n: 24 })
    const loaded = await old.call('fetch', { key: 'loaded' })
    assert.deepEqual(await cur.call('fetch', { key: 'loaded' }), loaded)
    assert.equal((await cur.call('loads')).loaded, undefined, 'read from L2, not loaded again')
  } finally {
    await Promise.all([old.close(), cur.close()])
  }
})

test('bad options and keys are refused, naming the option', { skip, timeout: 10_000 }, async () => {
  const ok = { name: 'x', redis: server.url, ttl: 1000 }
  const invalid = (fn, re) => assert.throws(fn, (err) => err.code === codes.INVALID_ARG && re.test(err.message))
  invalid(() => new TieredCache({ ...ok, tll: 5 }), /unknown option `tll`.*did you mean `ttl`/)
  invalid(() => new TieredCache({ ...ok, ttl: undefined }), /options\.ttl is required/)
  invalid(() => new TieredCache({ ...ok, ttl: 0 }), /options\.ttl/)
  invalid(() => new TieredCache({ ...ok, grace: -1 }), /options\.grace/)
  invalid(() => new TieredCache({ ...ok, l1Ttl: 'x' }), /options\.l1Ttl/)
  invalid(() => new TieredCache({ ...ok, name: '' }), /options\.name/)
  invalid(() => new TieredCache({ ...ok, onRedisDown: 'allow' }), /options\.onRedisDown/)
  invalid(() => new TieredCache({ ...ok, serializer: {} }), /options\.serializer/)
  invalid(() => new TieredCache({ ...ok, fetchMethod: 1 }), /options\.fetchMethod/)
  invalid(() => new TieredCache({ name: 'x', ttl: 1 }), /options\.redis/)
  assert.throws(() => new TieredCache({ ...ok, redis: 'http://x' }), TypeError)
  assert.throws(() => new TieredCache({ ...ok, max: -1 }), TypeError)
  const cache = new TieredCache({ ...ok, fetchMethod: async () => 1 })
  try {
    await assert.rejects(cache.fetch({}), (err) => err instanceof TypeError && err.code === codes.INVALID_ARG)
    await assert.rejects(cache.fetch('k', { tll: 1 }), (err) => err.code === codes.INVALID_ARG && /did you mean `ttl`/.test(err.message))
    await assert.rejects(cache.fetch('k', { signal: 1 }), /options\.signal/)
    await assert.rejects(cache.set('k', 1, { ttl: -5 }), /options\.ttl/)
    assert.throws(() => cache.get(null), TypeError)
  } finally {
    cache.close()
  }
  await assert.rejects(cache.fetch('k'), (err) => err.code === codes.CLOSED)
})

test('a bulkhead:tiered-cache trace per fetch says where the value came from: load, l2, l1', { skip, timeout: 30_000 }, async () => {
  const { tracingChannel } = await import('node:diagnostics_channel')
  const name = fresh()
  assert.throws(() => new TieredCache({ name, redis: server.url, ttl: 60_000, label: 7 }), { name: 'TypeError', message: /options\.label/ })
  const a = new TieredCache({ name, redis: server.url, ttl: 60_000, label: 'users-a', fetchMethod: async (key) => `v:${key}` })
  const b = new TieredCache({ name, redis: server.url, ttl: 60_000, fetchMethod: async () => 'never' })
  // L1 is filled only once a's bus subscription is confirmed: wait for it,
  // so its second fetch of 'k' below is an L1 hit however loaded the machine.
  await until(async () => (await a.fetch('warm')) !== undefined && a.get('warm') !== undefined, 5000, 'a subscribed')
  const seen = []
  const handlers = { asyncEnd: (ctx) => seen.push([ctx.label, ctx.key, ctx.source, ctx.result]) }
  const channel = tracingChannel('bulkhead:tiered-cache')
  channel.subscribe(handlers)
  try {
    assert.equal(b.label, name, 'defaults to the name')
    assert.equal(await a.fetch('k'), 'v:k') // cold: loaded
    assert.equal(await b.fetch('k'), 'v:k') // another instance: from Redis
    assert.equal(await a.fetch('k'), 'v:k') // its own L1
    assert.deepEqual(seen, [['users-a', 'k', 'load', 'v:k'], [name, 'k', 'l2', 'v:k'], ['users-a', 'k', 'l1', 'v:k']])
  } finally {
    channel.unsubscribe(handlers)
    a.close()
    b.close()
  }
})
