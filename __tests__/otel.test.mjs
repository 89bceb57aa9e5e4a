// bulkhead/otel: the observable instruments, read through the OpenTelemetry
// SDK (a MeterProvider with an in-memory exporter), follow what the
// instances do; instances are held weakly; the entry point without its
// optional peer dependency fails with an error that names it.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { setImmediate as tick } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'
import v8 from 'node:v8'
import vm from 'node:vm'
import {
  MeterProvider,
  PeriodicExportingMetricReader,
  InMemoryMetricExporter,
  AggregationTemporality,
  DataPointType,
} from '@opentelemetry/sdk-metrics'
import { metrics } from '@opentelemetry/api'
import { instrument } from 'bulkhead/otel'
import { Limiter, LRUCache, SingleFlight, WorkerPool } from 'bulkhead'
import { bareApp } from './helpers/bare-app.mjs'

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc')
const fixture = (name) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url))

/** A MeterProvider with an in-memory exporter, bulkhead instrumented on it. */
function setup(options = {}, temporality = AggregationTemporality.CUMULATIVE) {
  const exporter = new InMemoryMetricExporter(temporality)
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 })
  const meterProvider = new MeterProvider({ readers: [reader] })
  const handle = instrument({ meterProvider, ...options })
  after(() => meterProvider.shutdown())
  /** Collects now; returns every data point `{ name, unit, type, attributes, value }`. */
  async function collect() {
    exporter.reset()
    await reader.forceFlush()
    const points = []
    for (const resource of exporter.getMetrics()) {
      for (const scope of resource.scopeMetrics) {
        assert.equal(scope.scope.name, 'bulkhead')
        for (const m of scope.metrics) {
          for (const p of m.dataPoints) {
            points.push({ name: m.descriptor.name, unit: m.descriptor.unit, type: m.dataPointType, monotonic: m.isMonotonic, attributes: p.attributes, value: p.value })
          }
        }
      }
    }
    return points
  }
  return { handle, collect, meterProvider }
}

/** The value of `name` for the series with exactly these attributes (undefined if none). */
function valueOf(points, name, attributes) {
  const want = JSON.stringify(Object.entries(attributes).sort())
  const found = points.filter((p) => p.name === name && JSON.stringify(Object.entries(p.attributes).sort()) === want)
  assert.ok(found.length <= 1, `${name} has ${found.length} points with ${want}`)
  return found[0]?.value
}

function deferred() {
  let resolve
  const promise = new Promise((r) => { resolve = r })
  return { promise, resolve }
}

const { collect } = setup()

test('a limiter reports active, pending, refused, failed, timed-out and completed tasks, and wait/run percentiles in seconds', async () => {
  const limiter = new Limiter({ name: 'otel-limiter', concurrency: 1, maxPending: 1 })
  const attrs = { 'bulkhead.primitive': 'limiter', 'bulkhead.name': 'otel-limiter' }
  const gate = deferred()
  const first = limiter.run(() => gate.promise)
  const second = limiter.run(() => 'second')
  await assert.rejects(limiter.run(() => 'third'), { code: 'ERR_QUEUE_FULL' })

  let points = await collect()
  assert.equal(valueOf(points, 'bulkhead.limiter.active', attrs), 1)
  assert.equal(valueOf(points, 'bulkhead.limiter.pending', attrs), 1)
  assert.equal(valueOf(points, 'bulkhead.limiter.permits', attrs), 1)
  assert.equal(valueOf(points, 'bulkhead.limiter.queue_full', attrs), 1)
  assert.equal(valueOf(points, 'bulkhead.limiter.completed', attrs), 0)
  const active = points.find((p) => p.name === 'bulkhead.limiter.active')
  assert.equal(active.unit, '{task}')
  assert.equal(active.type, DataPointType.SUM)
  assert.equal(active.monotonic, false, 'active is an up-down counter')
  const queueFull = points.find((p) => p.name === 'bulkhead.limiter.queue_full')
  assert.equal(queueFull.monotonic, true, 'queue_full is a counter')

  gate.resolve('first')
  assert.equal(await first, 'first')
  assert.equal(await second, 'second')
  await assert.rejects(limiter.run(() => { throw new Error('boom') }), /boom/)
  // A task that stops when its signal fires gives its permit back at the timeout.
  const untilAborted = (signal) => new Promise((resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
  await assert.rejects(limiter.run(untilAborted, { timeout: 20 }), { code: 'ERR_TIMEOUT' })

  points = await collect()
  const stats = limiter.stats()
  assert.equal(valueOf(points, 'bulkhead.limiter.active', attrs), 0)
  assert.equal(valueOf(points, 'bulkhead.limiter.pending', attrs), 0)
  assert.equal(valueOf(points, 'bulkhead.limiter.completed', attrs), 2)
  assert.equal(valueOf(points, 'bulkhead.limiter.failed', attrs), 1)
  assert.equal(valueOf(points, 'bulkhead.limiter.timeouts', attrs), 1)
  assert.equal(valueOf(points, 'bulkhead.limiter.aborted', attrs), 0)
  for (const [metric, fields] of [['wait_time', ['waitP50', 'waitP90', 'waitP99']], ['run_time', ['runP50', 'runP90', 'runP99']]]) {
    const name = `bulkhead.limiter.${metric}`
    const quantiles = [0.5, 0.9, 0.99].map((q) => valueOf(points, name, { ...attrs, 'bulkhead.quantile': q }))
    assert.deepEqual(quantiles, fields.map((f) => stats[f] / 1000), `${name} is stats().${fields} in seconds`)
    assert.ok(quantiles[0] <= quantiles[1] && quantiles[1] <= quantiles[2])
    const point = points.find((p) => p.name === name)
    assert.equal(point.unit, 's')
    assert.equal(point.type, DataPointType.GAUGE)
  }
  // The first task ran until the gate opened, after two more calls: some time, however short.
  assert.ok(valueOf(points, 'bulkhead.limiter.run_time', { ...attrs, 'bulkhead.quantile': 0.99 }) > 0)
  await limiter.close()
})

test('a cache reports hits, misses, evictions, size and, when named, its bytes; two handles of one named cache count once', async () => {
  const cache = new LRUCache({ name: 'otel-cache', max: 2 })
  const again = new LRUCache({ name: 'otel-cache', max: 2 })
  const attrs = { 'bulkhead.primitive': 'cache', 'bulkhead.name': 'otel-cache' }
  cache.set('a', 'x'.repeat(100))
  cache.set('b', 'y')
  again.set('c', 'z')
  assert.equal(cache.get('c'), 'z')
  assert.equal(cache.get('a'), undefined)
  const points = await collect()
  assert.equal(valueOf(points, 'bulkhead.cache.hits', attrs), 1)
  assert.equal(valueOf(points, 'bulkhead.cache.misses', attrs), 1)
  assert.equal(valueOf(points, 'bulkhead.cache.evictions', attrs), 1)
  assert.equal(valueOf(points, 'bulkhead.cache.size', attrs), 2)
  assert.equal(valueOf(points, 'bulkhead.cache.bytes', attrs), cache.calculatedSize)
  assert.ok(cache.calculatedSize > 0)
  assert.equal(points.find((p) => p.name === 'bulkhead.cache.bytes').unit, 'By')
  assert.equal(valueOf(points, 'bulkhead.cache.calculated_size', attrs), undefined, 'a named cache reports bytes, not calculated_size')
  again.close()
  cache.close()
})

test('unlabelled instances of a primitive are one series: counts add up, percentiles take the largest', async () => {
  const sized = new LRUCache({ max: 10, maxSize: 100, sizeCalculation: (v) => v.length })
  const plain = new LRUCache({ max: 10 })
  sized.set('a', 'abcd')
  sized.get('a')
  plain.set('b', 'x')
  plain.get('b')
  plain.get('nope')
  const attrs = { 'bulkhead.primitive': 'cache' }
  const points = await collect()
  assert.equal(valueOf(points, 'bulkhead.cache.hits', attrs), 2)
  assert.equal(valueOf(points, 'bulkhead.cache.misses', attrs), 1)
  assert.equal(valueOf(points, 'bulkhead.cache.size', attrs), 2)
  // Only the cache with maxSize has a calculated size; it is in sizeCalculation's units.
  assert.equal(valueOf(points, 'bulkhead.cache.calculated_size', attrs), 4)
  assert.equal(valueOf(points, 'bulkhead.cache.bytes', attrs), undefined)

  // Two unnamed limiters: run times are one series, the larger of each percentile.
  const quick = new Limiter({ concurrency: 1 })
  const slow = new Limiter({ concurrency: 1 })
  await quick.run(() => 1)
  await slow.run(() => new Promise((resolve) => setTimeout(resolve, 15)))
  const limiterPoints = await collect()
  const p99 = valueOf(limiterPoints, 'bulkhead.limiter.run_time', { 'bulkhead.primitive': 'limiter', 'bulkhead.quantile': 0.99 })
  assert.equal(p99, Math.max(quick.stats().runP99, slow.stats().runP99) / 1000)
  assert.ok(slow.stats().runP99 > quick.stats().runP99)
  assert.equal(valueOf(limiterPoints, 'bulkhead.limiter.completed', { 'bulkhead.primitive': 'limiter' }), 2)
})

test('single-flight groups report flights, shared calls, timeouts and flights in progress', async () => {
  const group = new SingleFlight()
  const slow = new SingleFlight({ timeout: 20 })
  const attrs = { 'bulkhead.primitive': 'single_flight' }
  const gate = deferred()
  const calls = [group.do('k', () => gate.promise), group.do('k', () => 'never runs')]
  const stuck = slow.do('s', () => new Promise(() => {}))
  let points = await collect()
  assert.equal(valueOf(points, 'bulkhead.single_flight.in_flight', attrs), 2)
  assert.equal(valueOf(points, 'bulkhead.single_flight.flights', attrs), 2)
  assert.equal(valueOf(points, 'bulkhead.single_flight.calls', attrs), 3)
  assert.equal(valueOf(points, 'bulkhead.single_flight.shared', attrs), 1)
  gate.resolve(7)
  assert.deepEqual(await Promise.all(calls), [7, 7])
  await assert.rejects(stuck, { code: 'ERR_TIMEOUT' })
  points = await collect()
  assert.equal(valueOf(points, 'bulkhead.single_flight.in_flight', attrs), 0)
  assert.equal(valueOf(points, 'bulkhead.single_flight.timeouts', attrs), 1)
  assert.equal(valueOf(points, 'bulkhead.single_flight.errors', attrs), 0)
})

test('a pool reports utilization, workers, queue, completed and failed tasks, and run-time percentiles', async () => {
  const pool = new WorkerPool({ filename: fixture('pool-echo.js'), minThreads: 1, maxThreads: 1 })
  const attrs = { 'bulkhead.primitive': 'pool' }
  try {
    const spins = [pool.run(20, { name: 'spin' }), pool.run(20, { name: 'spin' }), pool.run(1)]
    let points = await collect()
    assert.equal(valueOf(points, 'bulkhead.pool.queued', attrs) + valueOf(points, 'bulkhead.pool.running', attrs), 3 - pool.completed)
    await Promise.all(spins)
    await assert.rejects(pool.run('no', { name: 'throwTyped' }), { code: 'E_TASK' })
    points = await collect()
    assert.equal(valueOf(points, 'bulkhead.pool.completed', attrs), 4)
    assert.equal(valueOf(points, 'bulkhead.pool.failed', attrs), 1)
    assert.equal(valueOf(points, 'bulkhead.pool.queued', attrs), 0)
    assert.equal(valueOf(points, 'bulkhead.pool.running', attrs), 0)
    assert.equal(valueOf(points, 'bulkhead.pool.workers', attrs), 1)
    const utilization = valueOf(points, 'bulkhead.pool.utilization', attrs)
    assert.ok(utilization > 0 && utilization <= 1, `utilization ${utilization}`)
    assert.equal(points.find((p) => p.name === 'bulkhead.pool.utilization').unit, '1')
    const p99 = valueOf(points, 'bulkhead.pool.run_time', { ...attrs, 'bulkhead.quantile': 0.99 })
    // Two tasks spun 20 ms each: the slowest run lasted at least that.
    assert.ok(p99 >= 0.019, `run_time p99 ${p99} s`)
  } finally {
    await pool.destroy()
  }
})

// With cumulative temporality, @opentelemetry/sdk-metrics keeps exporting the
// last value of a series its callback no longer observes
// (open-telemetry/opentelemetry-js#4096); a delta reader exports what the
// callback observed in that collection only, so it shows what bulkhead reports.
test('an instance that is garbage-collected disappears from the metrics', async () => {
  const { collect } = setup({}, AggregationTemporality.DELTA)
  const attrs = { 'bulkhead.primitive': 'limiter', 'bulkhead.name': 'otel-gc' }
  await (async () => {
    const limiter = new Limiter({ name: 'otel-gc', concurrency: 1 })
    await limiter.run(() => 1)
    assert.equal(valueOf(await collect(), 'bulkhead.limiter.completed', attrs), 1)
    // Still alive, nothing new: a delta of 0, reported.
    assert.equal(valueOf(await collect(), 'bulkhead.limiter.completed', attrs), 0)
    assert.equal(limiter.activeCount, 0)
  })()
  let gone = false
  for (let i = 0; i < 20 && !gone; i++) {
    await tick()
    gc()
    gone = valueOf(await collect(), 'bulkhead.limiter.completed', attrs) === undefined
  }
  assert.ok(gone, 'the collected limiter is still reported')
})

test('duration histograms: every started task\'s wait and run time, in seconds, with bucket boundaries; refused tasks are not recorded', async () => {
  // Made before instrument() (this file's collect() instruments at load):
  // the histograms come from the tracing channels, so they cover it too.
  const { collect: collectOwn, handle } = setup()
  const limiter = new Limiter({ label: 'otel-hist', concurrency: 1, maxPending: 4 })
  const attrs = { 'bulkhead.primitive': 'limiter', 'bulkhead.name': 'otel-hist' }
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
  const runs = Array.from({ length: 5 }, (_, i) => limiter.run(async () => {
    await sleep(20)
    if (i === 4) throw new Error('the last task fails')
    return i
  }))
  await assert.rejects(limiter.run(() => 1), { code: 'ERR_QUEUE_FULL' })
  await Promise.allSettled(runs)
  const points = await collectOwn()
  const wait = points.find((p) => p.name === 'bulkhead.limiter.wait.duration' && p.attributes['bulkhead.name'] === 'otel-hist')
  const run = points.find((p) => p.name === 'bulkhead.limiter.run.duration' && p.attributes['bulkhead.name'] === 'otel-hist')
  assert.ok(wait && run, 'both histograms have a series for the label')
  assert.deepEqual(wait.attributes, attrs)
  assert.equal(wait.type, DataPointType.HISTOGRAM)
  assert.equal(wait.unit, 's')
  assert.equal(wait.value.count, 5, 'five tasks started (the refused one is not recorded)')
  assert.equal(run.value.count, 5, 'the failed task is recorded too')
  // Each task ran at least 20 ms; the k-th waited for k tasks before it.
  assert.ok(run.value.min >= 0.019 && run.value.sum >= 5 * 0.019, `run min ${run.value.min}, sum ${run.value.sum}`)
  assert.ok(wait.value.sum >= (0 + 1 + 2 + 3 + 4) * 0.019, `wait sum ${wait.value.sum}`)
  assert.ok(wait.value.min < 0.019, 'the first task did not wait')
  assert.deepEqual(run.value.buckets.boundaries.slice(0, 4), [0.0001, 0.00025, 0.0005, 0.001])
  assert.equal(run.value.buckets.boundaries.at(-1), 60)
  assert.equal(run.value.buckets.counts.reduce((a, b) => a + b), 5)

  // The pool's histograms come from its own wait and run times.
  const pool = new WorkerPool({ filename: fixture('pool-echo.js'), minThreads: 1, maxThreads: 1, label: 'otel-hist-pool' })
  try {
    await Promise.all([pool.run(20, { name: 'spin' }), pool.run(20, { name: 'spin' })])
    const after = await collectOwn()
    const poolRun = after.find((p) => p.name === 'bulkhead.pool.run.duration' && p.attributes['bulkhead.name'] === 'otel-hist-pool')
    assert.equal(poolRun?.value.count, 2)
    assert.ok(poolRun.value.min >= 0.019, `pool run min ${poolRun.value.min}`)
    const poolWait = after.find((p) => p.name === 'bulkhead.pool.wait.duration' && p.attributes['bulkhead.name'] === 'otel-hist-pool')
    assert.equal(poolWait?.value.count, 2)
  } finally {
    await pool.destroy()
  }

  // close() stops recording.
  handle.close()
  await limiter.run(() => 1)
  const closed = await collectOwn()
  const still = closed.find((p) => p.name === 'bulkhead.limiter.run.duration' && p.attributes['bulkhead.name'] === 'otel-hist')
  assert.equal(still?.value.count ?? 5, 5, 'no recording after close()')
})

test('histograms: false records no histogram', async () => {
  const { collect: collectOwn } = setup({ histograms: false })
  const limiter = new Limiter({ label: 'otel-nohist', concurrency: 1 })
  await limiter.run(() => 1)
  const points = await collectOwn()
  assert.ok(points.some((p) => p.name === 'bulkhead.limiter.completed'), 'the other instruments are there')
  assert.deepEqual(points.filter((p) => p.name.endsWith('.duration')), [])
})

test('prefix renames every instrument; close() stops observing', async () => {
  const { handle, collect: collectOwn } = setup({ prefix: 'svc.bulkhead' }, AggregationTemporality.DELTA)
  const limiter = new Limiter({ name: 'otel-prefix', concurrency: 1 })
  await limiter.run(() => 1)
  let points = await collectOwn()
  assert.ok(points.length > 0)
  assert.ok(points.every((p) => p.name.startsWith('svc.bulkhead.')), 'every name carries the prefix')
  assert.equal(valueOf(points, 'svc.bulkhead.limiter.completed', { 'bulkhead.primitive': 'limiter', 'bulkhead.name': 'otel-prefix' }), 1)
  handle.close()
  handle.close()
  points = await collectOwn()
  assert.deepEqual(points, [])
})

test('without a meterProvider, the global one is used', async () => {
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 })
  const meterProvider = new MeterProvider({ readers: [reader] })
  assert.ok(metrics.setGlobalMeterProvider(meterProvider))
  try {
    const handle = instrument()
    const cache = new LRUCache({ name: 'otel-global', max: 1 })
    cache.get('x')
    await reader.forceFlush()
    const names = exporter.getMetrics().flatMap((r) => r.scopeMetrics.flatMap((s) => s.metrics.map((m) => m.descriptor.name)))
    assert.ok(names.includes('bulkhead.cache.misses'), names.join(', '))
    handle.close()
    cache.close()
  } finally {
    metrics.disable()
    await meterProvider.shutdown()
  }
})

test('bad options throw a TypeError that names the option', () => {
  assert.throws(() => instrument(null), { name: 'TypeError', code: 'ERR_INVALID_ARG', message: /options must be an object/ })
  assert.throws(() => instrument({ meterProvider: {} }), { name: 'TypeError', message: /options\.meterProvider/ })
  for (const prefix of ['', '1abc', 'a b', 7]) {
    assert.throws(() => instrument({ meterProvider: new MeterProvider(), prefix }), { name: 'TypeError', message: /options\.prefix/ })
  }
  assert.throws(() => instrument({ meterProvider: new MeterProvider(), histograms: 'yes' }), { name: 'TypeError', message: /options\.histograms must be a boolean/ })
})

test('require and import of bulkhead/otel give the same function', async () => {
  const require = createRequire(import.meta.url)
  assert.equal(require('bulkhead/otel').instrument, instrument)
})

test('without @opentelemetry/api installed, bulkhead/otel throws an error naming it, and bulkhead still loads', (t) => {
  const app = bareApp()
  t.after(app.remove)
  const run = (args) => spawnSync(process.execPath, args, { cwd: app.dir, encoding: 'utf8', timeout: 30_000 })
  const ok = run(['-e', "require('bulkhead'); require('bulkhead/pool'); console.log('core ok')"])
  assert.equal(ok.status, 0, ok.stderr)
  assert.equal(ok.stdout.trim(), 'core ok')
  const script = "try { require('bulkhead/otel') } catch (e) { console.log(e.code + ' | ' + e.message + ' | ' + e.cause.code) }"
  const cjs = run(['-e', script])
  assert.equal(cjs.status, 0, cjs.stderr)
  assert.equal(cjs.stdout.trim(), 'MODULE_NOT_FOUND | bulkhead/otel needs the optional peer dependency @opentelemetry/api, which is not installed: npm install @opentelemetry/api | MODULE_NOT_FOUND')
  const esm = run(['--input-type=module', '-e', "await import('bulkhead/otel')"])
  assert.notEqual(esm.status, 0)
  assert.match(esm.stderr, /bulkhead\/otel needs the optional peer dependency @opentelemetry\/api/)
})

test('the console-exporter example of docs/observability.md prints the instruments it says', () => {
  // The readme test runs the block from a scratch app and checks that it
  // exits cleanly; its output is the exporter's dump, checked here.
  const markdown = readFileSync(new URL('../docs/observability.md', import.meta.url), 'utf8')
  const marker = markdown.indexOf('<!-- unchecked-output:')
  assert.ok(marker > 0 && marker < markdown.indexOf('## Prometheus'), 'the OpenTelemetry example is marked')
  const start = markdown.indexOf('```js\n', marker) + 6
  const code = markdown.slice(start, markdown.indexOf('\n```\n', start))
  const root = fileURLToPath(new URL('..', import.meta.url))
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', code], { cwd: root, encoding: 'utf8', timeout: 30_000 })
  assert.equal(result.status, 0, result.stderr)
  const instruments = new Map()
  for (const chunk of result.stdout.split(/^\{$/m)) {
    const name = /name: '([^']+)'/.exec(chunk)?.[1]
    if (name !== undefined) instruments.set(name, chunk)
  }
  const valueFor = (instrument, attributes) => {
    const chunk = instruments.get(instrument)
    assert.ok(chunk, `${instrument} was not printed`)
    const m = new RegExp(`attributes: ${attributes.replace(/[{}.]/g, '\\$&')},[^}]*?value: ([\\d.]+)`).exec(chunk)
    return m === null ? undefined : Number(m[1])
  }
  assert.equal(valueFor('bulkhead.limiter.completed', "{ 'bulkhead.primitive': 'limiter', 'bulkhead.name': 'db' }"), 5)
  assert.equal(valueFor('bulkhead.cache.hits', "{ 'bulkhead.primitive': 'cache', 'bulkhead.name': 'users' }"), 1)
  assert.equal(valueFor('bulkhead.cache.misses', "{ 'bulkhead.primitive': 'cache', 'bulkhead.name': 'users' }"), 5)
  assert.equal(valueFor('bulkhead.cache.size', "{ 'bulkhead.primitive': 'cache', 'bulkhead.name': 'users' }"), 3)
})
