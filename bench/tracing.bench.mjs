// The cost of the tracing channels (docs/observability.md, "Tracing
// channels"): each primitive's hot path with nobody subscribed, with a
// subscriber to all five events of its channel (no-op handlers), and with
// that subscriber plus an AsyncLocalStorage bound with `bindStore` (what an
// APM tracer does). Subjects run interleaved in one process; a "with" subject
// subscribes for the length of its run only. The before/after cost of the
// `hasSubscribers` check itself (nobody subscribed) is measured against the
// previous code in docs/observability.md. The limiter and pool rows also
// run with bulkhead/otel's and bulkhead/prometheus's duration histograms on
// (an SDK MeterProvider with a reader; a prom-client Registry), which record
// every task through the same channels.
import { createRequire } from 'node:module'
import { AsyncLocalStorage } from 'node:async_hooks'
import dc from 'node:diagnostics_channel'
import { fileURLToPath } from 'node:url'
import { compare, printTable, writeResults } from './harness.mjs'

const require = createRequire(import.meta.url)
const { pLimit, Limiter } = require('../lib/p-limit.js')
const { SingleFlight } = require('../lib/single-flight.js')
const { WorkerPool } = require('../lib/pool.js')

const { MeterProvider, PeriodicExportingMetricReader, InMemoryMetricExporter, AggregationTemporality } = require('@opentelemetry/sdk-metrics')
const promClient = require('prom-client')
const otel = require('../lib/otel.js')
const prometheus = require('../lib/prometheus.js')

const noop = () => {}
const handlers = { start: noop, end: noop, asyncStart: noop, asyncEnd: noop, error: noop }

/** `run(n)` while an exporter's histograms are on: `start()` returns its `close()`. */
function withMetrics(run, start) {
  return async (n) => {
    const stop = start()
    try {
      await run(n)
    } finally {
      await stop()
    }
  }
}

const startOtel = () => {
  const reader = new PeriodicExportingMetricReader({
    exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE),
    exportIntervalMillis: 3_600_000,
  })
  const meterProvider = new MeterProvider({ readers: [reader] })
  const handle = otel.instrument({ meterProvider })
  return async () => {
    handle.close()
    await meterProvider.shutdown()
  }
}

const startProm = () => {
  const handle = prometheus.instrument({ register: new promClient.Registry() })
  return () => handle.close()
}

/**
 * `run(n)` measured as is, with a subscriber, and with a subscriber and a
 * bound store; with `metrics`, also with each exporter's histograms on.
 */
function variants(name, run, { metrics = false } = {}) {
  const channel = dc.tracingChannel(name)
  const store = new AsyncLocalStorage()
  const toStore = (context) => context
  const exporters = metrics
    ? { 'otel histograms': withMetrics(run, startOtel), 'prometheus histograms': withMetrics(run, startProm) }
    : {}
  return {
    'no subscriber': run,
    'tracing subscriber': async (n) => {
      channel.subscribe(handlers)
      try {
        await run(n)
      } finally {
        channel.unsubscribe(handlers)
      }
    },
    'subscriber + bindStore': async (n) => {
      channel.subscribe(handlers)
      channel.start.bindStore(store, toStore)
      try {
        await run(n)
      } finally {
        channel.start.unbindStore(store)
        channel.unsubscribe(handlers)
      }
    },
    ...exporters,
  }
}

const task = async () => {}
const rows = []

// 200k trivial tasks queued at once, as in p-limit.bench.mjs.
for (const concurrency of [1, 100]) {
  rows.push(
    await compare(
      `pLimit: 200k tasks, concurrency ${concurrency}`,
      variants('bulkhead:limiter', async (n) => {
        const limit = pLimit(concurrency)
        const all = new Array(n)
        for (let i = 0; i < n; i++) all[i] = limit(task)
        await Promise.all(all)
      }, { metrics: true }),
      { iterations: 200_000, runs: 5 },
    ),
  )
  rows.push(
    await compare(
      `Limiter: 200k tasks, concurrency ${concurrency}`,
      variants('bulkhead:limiter', async (n) => {
        const limiter = new Limiter({ concurrency, maxPending: Infinity })
        const all = new Array(n)
        for (let i = 0; i < n; i++) all[i] = limiter.run(task)
        await Promise.all(all)
      }, { metrics: true }),
      { iterations: 200_000, runs: 5 },
    ),
  )
}

// SingleFlight: 100k calls over 1k keys in bursts of 10k (10 callers per key), as in single-flight.bench.mjs.
const keys = Array.from({ length: 1000 }, (_, i) => `user:${String(i).padStart(11, '0')}`)
const BURST = 10_000
rows.push(
  await compare(
    'SingleFlight: 100k calls, 1k keys, bursts of 10k',
    variants('bulkhead:single-flight', async (n) => {
      const group = new SingleFlight({ timeout: 10_000, detectRecursion: 'sync' })
      const load = () => Promise.resolve(1)
      for (let done = 0; done < n; done += BURST) {
        const all = new Array(BURST)
        for (let i = 0; i < BURST; i++) all[i] = group.do(keys[i % keys.length], load)
        await Promise.all(all)
      }
    }),
    { iterations: 100_000, runs: 5 },
  ),
)

// WorkerPool: a burst of tiny echo tasks, 2 threads, as in pool.bench.mjs (a).
const filename = fileURLToPath(new URL('./fixtures/pool-task.js', import.meta.url))
const pool = new WorkerPool({ filename, minThreads: 2, maxThreads: 2, maxQueue: Infinity })
await Promise.all(Array.from({ length: 200 }, (_, i) => pool.run(i)))
rows.push(
  await compare(
    'WorkerPool: 20k tiny echo tasks at once, 2 threads',
    variants('bulkhead:pool', async (n) => {
      const all = new Array(n)
      for (let i = 0; i < n; i++) all[i] = pool.run(i)
      await Promise.all(all)
    }, { metrics: true }),
    { iterations: 20_000, runs: 5 },
  ),
)
await pool.destroy()

printTable('Tracing channels: ns per call without and with a subscriber', rows, { baseline: 'no subscriber' })
writeResults('tracing', { rows })
