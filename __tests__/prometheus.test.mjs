// bulkhead/prometheus: the prom-client metrics, scraped with
// `register.metrics()` and parsed from the text format, follow what the
// instances do; instances are held weakly; the entry point without its
// optional peer dependency fails with an error that names it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { setImmediate as tick } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'
import v8 from 'node:v8'
import vm from 'node:vm'
import client from 'prom-client'
import { instrument } from 'bulkhead/prometheus'
import { Limiter, LRUCache, SingleFlight, WorkerPool, TieredCache } from 'bulkhead'
import { bareApp } from './helpers/bare-app.mjs'
import { RedisServer, haveRedis } from './helpers/redis-server.mjs'

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc')
const fixture = (name) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url))

/**
 * Parses the Prometheus text format: `{ samples: Map<'name{labels}', number>, types: Map<name, type> }`.
 * Label sets are written sorted by label name, so a key does not depend on their order.
 */
function parse(text) {
  const samples = new Map()
  const types = new Map()
  for (const line of text.split('\n')) {
    if (line === '') continue
    const type = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (type) {
      types.set(type[1], type[2])
      continue
    }
    if (line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    assert.ok(m, `not a sample line: ${line}`)
    const labels = m[2] ? [...m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => `${k}="${v}"`).sort() : []
    samples.set(`${m[1]}{${labels.join(',')}}`, Number(m[3]))
  }
  return { samples, types }
}

async function scrape(register) {
  return parse(await register.metrics())
}

/** The key of a sample: `name{a="x",b="y"}`, labels sorted. */
function key(name, labels = {}) {
  return `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(',')}}`
}

function deferred() {
  let resolve
  const promise = new Promise((r) => { resolve = r })
  return { promise, resolve }
}

const register = new client.Registry()
instrument({ register })

test('a limiter is scraped with active, pending, refused, failed, timed-out and completed tasks and wait/run quantiles in seconds', async () => {
  const limiter = new Limiter({ name: 'prom-limiter', concurrency: 1, maxPending: 1 })
  const name = { name: 'prom-limiter' }
  const gate = deferred()
  const first = limiter.run(() => gate.promise)
  const second = limiter.run(() => 2)
  await assert.rejects(limiter.run(() => 3), { code: 'ERR_QUEUE_FULL' })
  const scraped = await scrape(register)
  let samples = scraped.samples
  const types = scraped.types
  assert.equal(samples.get(key('bulkhead_limiter_active', name)), 1)
  assert.equal(samples.get(key('bulkhead_limiter_pending', name)), 1)
  assert.equal(samples.get(key('bulkhead_limiter_queue_full_total', name)), 1)
  assert.equal(types.get('bulkhead_limiter_active'), 'gauge')
  assert.equal(types.get('bulkhead_limiter_queue_full_total'), 'counter')
  assert.equal(types.get('bulkhead_limiter_wait_time_seconds'), 'gauge')

  gate.resolve(1)
  await Promise.all([first, second])
  await assert.rejects(limiter.run(() => { throw new Error('boom') }), /boom/)
  const untilAborted = (signal) => new Promise((resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
  await assert.rejects(limiter.run(untilAborted, { timeout: 20 }), { code: 'ERR_TIMEOUT' })
  ;({ samples } = await scrape(register))
  const stats = limiter.stats()
  assert.equal(samples.get(key('bulkhead_limiter_active', name)), 0)
  assert.equal(samples.get(key('bulkhead_limiter_completed_total', name)), 2)
  assert.equal(samples.get(key('bulkhead_limiter_failed_total', name)), 1)
  assert.equal(samples.get(key('bulkhead_limiter_timeouts_total', name)), 1)
  assert.deepEqual(
    ['0.5', '0.9', '0.99'].map((quantile) => samples.get(key('bulkhead_limiter_wait_time_seconds', { ...name, quantile }))),
    [stats.waitP50, stats.waitP90, stats.waitP99].map((ms) => ms / 1000),
  )
  assert.deepEqual(
    ['0.5', '0.9', '0.99'].map((quantile) => samples.get(key('bulkhead_limiter_run_time_seconds', { ...name, quantile }))),
    [stats.runP50, stats.runP90, stats.runP99].map((ms) => ms / 1000),
  )
  assert.ok(stats.runP99 > 0)
  await limiter.close()
})

test('duration histograms: _bucket, _sum and _count per label for every started task; histograms: false has none', async () => {
  const limiter = new Limiter({ label: 'prom-hist', concurrency: 1, maxPending: 2 })
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
  const runs = [0, 1, 2].map(() => limiter.run(() => sleep(20)))
  await assert.rejects(limiter.run(() => 1), { code: 'ERR_QUEUE_FULL' })
  await Promise.all(runs)
  const { samples, types } = await scrape(register)
  const name = { name: 'prom-hist' }
  assert.equal(types.get('bulkhead_limiter_wait_duration_seconds'), 'histogram')
  assert.equal(types.get('bulkhead_limiter_run_duration_seconds'), 'histogram')
  assert.equal(samples.get(key('bulkhead_limiter_run_duration_seconds_count', name)), 3, 'the refused task is not recorded')
  assert.equal(samples.get(key('bulkhead_limiter_wait_duration_seconds_count', name)), 3)
  assert.ok(samples.get(key('bulkhead_limiter_run_duration_seconds_sum', name)) >= 3 * 0.019)
  assert.ok(samples.get(key('bulkhead_limiter_wait_duration_seconds_sum', name)) >= (0 + 1 + 2) * 0.019)
  // Every run took 20 ms or more: none falls in the buckets up to 10 ms.
  assert.equal(samples.get(key('bulkhead_limiter_run_duration_seconds_bucket', { ...name, le: '0.01' })), 0)
  assert.equal(samples.get(key('bulkhead_limiter_run_duration_seconds_bucket', { ...name, le: '+Inf' })), 3)
  assert.equal(samples.get(key('bulkhead_limiter_run_duration_seconds_bucket', { ...name, le: '0.0001' })), 0)

  const quiet = new client.Registry()
  const handle = instrument({ register: quiet, prefix: 'quiet', histograms: false })
  await limiter.run(() => 1)
  const scraped = await scrape(quiet)
  assert.ok(scraped.types.has('quiet_limiter_completed_total'))
  assert.deepEqual([...scraped.types.keys()].filter((n) => n.includes('duration')), [])
  handle.close()
})

test('caches, single-flight groups and pools are scraped; unnamed instances add up', async () => {
  const named = new LRUCache({ name: 'prom-cache', max: 1 })
  named.set('a', 'x')
  named.set('b', 'y')
  named.get('b')
  const local = new LRUCache({ max: 10 })
  const other = new LRUCache({ max: 10 })
  local.set('a', 1)
  local.get('a')
  other.get('a')
  other.get('b')
  const group = new SingleFlight()
  const gate = deferred()
  const calls = [group.do('k', () => gate.promise), group.do('k', () => 0)]
  const pool = new WorkerPool({ filename: fixture('pool-echo.js'), minThreads: 1, maxThreads: 1 })
  try {
    await pool.run(5, { name: 'spin' })
    const scraped = await scrape(register)
    let samples = scraped.samples
    const types = scraped.types
    assert.equal(samples.get(key('bulkhead_cache_hits_total', { name: 'prom-cache' })), 1)
    assert.equal(samples.get(key('bulkhead_cache_evictions_total', { name: 'prom-cache' })), 1)
    assert.equal(samples.get(key('bulkhead_cache_size', { name: 'prom-cache' })), 1)
    assert.equal(samples.get(key('bulkhead_cache_bytes', { name: 'prom-cache' })), named.calculatedSize)
    assert.equal(samples.get(key('bulkhead_cache_hits_total')), 1)
    assert.equal(samples.get(key('bulkhead_cache_misses_total')), 2)
    assert.equal(samples.get(key('bulkhead_cache_size')), 1)
    assert.equal(samples.get(key('bulkhead_single_flight_in_flight')), 1)
    assert.equal(samples.get(key('bulkhead_single_flight_shared_total')), 1)
    assert.equal(samples.get(key('bulkhead_pool_completed_total')), 1)
    assert.equal(samples.get(key('bulkhead_pool_workers')), 1)
    const utilization = samples.get(key('bulkhead_pool_utilization_ratio'))
    assert.ok(utilization > 0 && utilization <= 1, `utilization ${utilization}`)
    assert.ok(samples.get(key('bulkhead_pool_run_time_seconds', { quantile: '0.99' })) >= 0.004)
    assert.equal(types.get('bulkhead_pool_utilization_ratio'), 'gauge')
    gate.resolve(1)
    await Promise.all(calls)
    ;({ samples } = await scrape(register))
    assert.equal(samples.get(key('bulkhead_single_flight_in_flight')), 0)
    assert.equal(samples.get(key('bulkhead_single_flight_flights_total')), 1)
  } finally {
    await pool.destroy()
    named.close()
  }
})

test('Redis-backed limiters and groups are scraped with this process\'s counts', { skip: !haveRedis && 'no redis-server' }, async (t) => {
  const server = await RedisServer.start()
  t.after(() => server.stop())
  const limiter = new Limiter({ name: 'prom-redis', concurrency: 1, redis: server.url })
  const group = new SingleFlight({ name: 'prom-redis-group', redis: server.url })
  try {
    assert.equal(await limiter.run(() => 1), 1)
    assert.equal(await limiter.run(() => 2), 2)
    const gate = deferred()
    const calls = [group.do('k', () => gate.promise), group.do('k', () => 0)]
    let { samples } = await scrape(register)
    assert.equal(samples.get(key('bulkhead_limiter_completed_total', { name: 'prom-redis' })), 2)
    assert.equal(samples.get(key('bulkhead_limiter_active', { name: 'prom-redis' })), 0)
    assert.equal(group.stats().inFlight, 1)
    assert.equal(samples.get(key('bulkhead_single_flight_in_flight', { name: 'prom-redis-group' })), 1)
    gate.resolve(5)
    assert.deepEqual(await Promise.all(calls), [5, 5])
    ;({ samples } = await scrape(register))
    assert.equal(samples.get(key('bulkhead_single_flight_in_flight', { name: 'prom-redis-group' })), 0)
  } finally {
    await limiter.close()
    group.close()
  }
})

test('a TieredCache is scraped with its tiers, loads and invalidations; its L1 and load groups carry its label', { skip: !haveRedis && 'no redis-server' }, async (t) => {
  const server = await RedisServer.start()
  t.after(() => server.stop())
  let loads = 0
  const options = { name: 'prom-tiered', redis: server.url, ttl: 60_000, fetchMethod: async (k) => `v:${k}:${++loads}` }
  const a = new TieredCache({ ...options, label: 'users' })
  const b = new TieredCache({ ...options, label: 'users-b' })
  t.after(() => { a.close(); b.close() })
  await a.fetch('x') // a miss in both tiers: loaded once
  await a.fetch('x') // from L1 (once the bus is confirmed) or L2
  await b.fetch('x') // from L2 (b's L1 is empty)
  await b.fetch('y')
  await b.set('x', 'new') // tells a to drop x
  const { samples, types } = await scrape(register)
  const users = { name: 'users' }
  const get = (metric, labels = users) => samples.get(key(`bulkhead_tiered_cache_${metric}`, labels))
  assert.equal(types.get('bulkhead_tiered_cache_l1_hits_total'), 'counter')
  assert.equal(get('misses_total'), 1)
  assert.equal(get('loads_total'), 1)
  assert.equal(get('l1_hits_total') + get('l2_hits_total'), 1, "a's second fetch was a hit in one tier")
  assert.equal(get('l2_hits_total', { name: 'users-b' }), 1, 'b read x from Redis')
  assert.equal(get('loads_total', { name: 'users-b' }), 1, 'b loaded y')
  const sent = b.stats().invalidationsSent
  assert.ok(sent >= 1, 'the write was published')
  assert.equal(get('invalidations_sent_total', { name: 'users-b' }), sent)
  assert.equal(get('redis_down'), 0)
  // (L1 is filled only once the instance's bus subscription is confirmed.)
  assert.equal(get('l1_size'), a.size)
  assert.equal(get('l1_size', { name: 'users-b' }), b.size)
  // The inner L1 cache is a cache series of its own label, not an unlabelled one.
  assert.equal(samples.get(key('bulkhead_cache_size', users)), get('l1_size'))
  assert.ok(samples.has(key('bulkhead_single_flight_flights_total', users)), 'the load group is labelled too')
})

test('a garbage-collected instance is no longer scraped', async () => {
  const sample = key('bulkhead_cache_misses_total', { name: 'prom-gc' })
  ;(() => {
    const cache = new LRUCache({ name: 'prom-gc', max: 1 })
    cache.get('x')
  })()
  assert.equal((await scrape(register)).samples.get(sample), 1)
  let gone = false
  for (let i = 0; i < 20 && !gone; i++) {
    await tick()
    gc()
    gone = !(await scrape(register)).samples.has(sample)
  }
  assert.ok(gone, 'the collected cache is still scraped')
})

test('one scrape reads each instance once, and sees what happened since the last scrape', async () => {
  const own = new client.Registry()
  const { metrics } = instrument({ register: own, prefix: 'once' })
  const limiter = new Limiter({ name: 'prom-once', concurrency: 1 })
  let reads = 0
  const stats = limiter.stats.bind(limiter)
  limiter.stats = () => {
    reads++
    return stats()
  }
  await own.metrics()
  assert.equal(reads, 1, `${metrics.length} metrics, one stats() call`)
  await limiter.run(() => 1)
  const { samples } = await scrape(own)
  assert.equal(reads, 2)
  assert.equal(samples.get(key('once_limiter_completed_total', { name: 'prom-once' })), 1)
})

test('prefix renames every metric; close() unregisters them; a second instrument() on one registry throws', async () => {
  const own = new client.Registry()
  const handle = instrument({ register: own, prefix: 'svc_bulkhead' })
  const names = own.getMetricsAsArray().map((m) => m.name)
  assert.equal(names.length, handle.metrics.length)
  assert.ok(names.every((n) => n.startsWith('svc_bulkhead_')), names.join(', '))
  assert.throws(() => instrument({ register: own, prefix: 'svc_bulkhead' }), /already been registered/)
  assert.equal(own.getMetricsAsArray().length, handle.metrics.length, 'the failed call left nothing behind')
  handle.close()
  handle.close()
  assert.deepEqual(own.getMetricsAsArray(), [])
  assert.equal(await own.metrics(), '\n')
})

test('without a register, prom-client\'s global registry is used', async () => {
  const handle = instrument()
  try {
    assert.ok(client.register.getSingleMetric('bulkhead_limiter_active'))
  } finally {
    handle.close()
  }
  assert.equal(client.register.getSingleMetric('bulkhead_limiter_active'), undefined)
})

test('bad options throw a TypeError that names the option', () => {
  assert.throws(() => instrument(null), { name: 'TypeError', code: 'ERR_INVALID_ARG', message: /options must be an object/ })
  assert.throws(() => instrument({ register: {} }), { name: 'TypeError', message: /options\.register/ })
  for (const prefix of ['', '1abc', 'a.b', 'a-b', null]) {
    assert.throws(() => instrument({ register: new client.Registry(), prefix }), { name: 'TypeError', message: /options\.prefix/ })
  }
  assert.throws(() => instrument({ register: new client.Registry(), histograms: 1 }), { name: 'TypeError', message: /options\.histograms must be a boolean/ })
})

test('require and import of bulkhead/prometheus give the same function', () => {
  const require = createRequire(import.meta.url)
  assert.equal(require('bulkhead/prometheus').instrument, instrument)
})

test('only instances made after a metrics entry point is loaded are tracked (until then construction pays nothing); histograms cover all', () => {
  const code = `
    const { Limiter } = require('bulkhead')
    const before = new Limiter({ name: 'made-before', concurrency: 1 })
    const client = require('prom-client')
    require('bulkhead/prometheus').instrument()
    const after = new Limiter({ name: 'made-after', concurrency: 1 })
    Promise.all([before.run(() => 1), after.run(() => 1)]).then(() => client.register.metrics()).then((text) => {
      const gauges = (name) => text.includes('bulkhead_limiter_completed_total{name="' + name + '"}')
      const histograms = (name) => text.includes('bulkhead_limiter_run_duration_seconds_count{name="' + name + '"} 1')
      console.log(gauges('made-before'), gauges('made-after'), histograms('made-before'), histograms('made-after'))
    })`
  const root = fileURLToPath(new URL('..', import.meta.url))
  const result = spawnSync(process.execPath, ['-e', code], { cwd: root, encoding: 'utf8', timeout: 30_000 })
  assert.equal(result.status, 0, result.stderr)
  // The histograms come from the tracing channels, so they cover both.
  assert.equal(result.stdout.trim(), 'false true true true')
})

test('without prom-client installed, bulkhead/prometheus throws an error naming it', (t) => {
  const app = bareApp()
  t.after(app.remove)
  const run = (args) => spawnSync(process.execPath, args, { cwd: app.dir, encoding: 'utf8', timeout: 30_000 })
  const cjs = run(['-e', "try { require('bulkhead/prometheus') } catch (e) { console.log(e.code + ' | ' + e.message) }"])
  assert.equal(cjs.status, 0, cjs.stderr)
  assert.equal(cjs.stdout.trim(), 'MODULE_NOT_FOUND | bulkhead/prometheus needs the optional peer dependency prom-client, which is not installed: npm install prom-client')
  const esm = run(['--input-type=module', '-e', "await import('bulkhead/prometheus')"])
  assert.notEqual(esm.status, 0)
  assert.match(esm.stderr, /bulkhead\/prometheus needs the optional peer dependency prom-client/)
})
