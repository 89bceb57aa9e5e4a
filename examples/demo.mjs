// `npm run demo`: the production traps that bulkhead exists for, each shown
// happening the naive way and removed the bulkhead way, measured on the spot.
//
//   npm run demo              full run (about a minute on 2 cores)
//   npm run demo -- --quick   smaller sizes (what the test runs)
//   npm run demo -- --json    the same results as JSON
//   npm run demo -- --only=redis-shared-quota   only the scenarios named (ids, comma-separated)
//   npm run demo -- --svg[=dir]   also draw the trap table as dir/demo-traps.svg (default docs/charts/)
//
// Every dependency is simulated in this file (a database with a connection
// cap, a session service, a flaky upstream), so nothing outside the process
// is needed, except for the last scenario (examples/redis-quota.mjs): it
// starts a redis-server when one is installed and is reported as skipped,
// with the install hint, when none is. Run with --expose-gc (the npm script
// does) for heap figures.
import { AsyncLocalStorage } from 'node:async_hooks'
import { setMaxListeners } from 'node:events'
import { mkdirSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { demoChart } from '../bench/svg.mjs'
import { scenario as redisQuota } from './redis-quota.mjs'
import { scenario as redisTiered } from './redis-tiered.mjs'

const require = createRequire(import.meta.url)
const args = new Set(process.argv.slice(2))
const quick = args.has('--quick')
const json = args.has('--json')
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length).split(',')
const svgArg = process.argv.find((a) => a === '--svg' || a.startsWith('--svg='))
const svgDir = svgArg && (svgArg === '--svg' ? fileURLToPath(new URL('../docs/charts/', import.meta.url)) : path.resolve(svgArg.slice('--svg='.length)))
const native = require('../lib/native.js')

const primitives = {
  LRUCache: require('bulkhead/lru-cache').LRUCache,
  pLimit: require('bulkhead/p-limit').pLimit,
  Limiter: require('bulkhead/p-limit').Limiter,
  WorkerPool: require('bulkhead/pool').WorkerPool,
  SingleFlight: require('bulkhead/single-flight').SingleFlight,
}
const { LRUCache, pLimit, Limiter, WorkerPool, SingleFlight } = primitives
const hashTask = new URL('./tasks/hash.mjs', import.meta.url)

// --- small tools -----------------------------------------------------------

const MB = 1024 * 1024

async function settledHeap() {
  if (!global.gc) return process.memoryUsage().heapUsed
  for (let i = 0; i < 3; i++) {
    global.gc()
    await sleep(5)
  }
  return process.memoryUsage().heapUsed
}

/**
 * How many of `refs`' targets are still reachable after forced GCs. Each GC
 * runs in its own macrotask: a WeakRef created or read in the current job
 * keeps its target until the job ends. Without --expose-gc nothing can be
 * forced, so the count is what survived so far.
 */
async function survivors(refs) {
  await settledHeap()
  await sleep(10)
  await settledHeap()
  let alive = 0
  for (const ref of refs) if (ref.deref() !== undefined) alive++
  return alive
}

function mb(bytes) {
  return `${(bytes / MB).toFixed(1)} MB`
}

function ms(n) {
  return `${n.toFixed(n < 10 ? 1 : 0)} ms`
}

/** A fake database that refuses connections beyond its cap. */
function fakeDatabase({ maxConnections, latencyMs }) {
  const db = { active: 0, peak: 0, calls: 0, failures: 0 }
  db.get = async (id) => {
    db.calls++
    if (db.active >= maxConnections) {
      db.failures++
      throw new Error('too many connections')
    }
    db.active++
    db.peak = Math.max(db.peak, db.active)
    try {
      await sleep(latencyMs)
      return { id }
    } finally {
      db.active--
    }
  }
  return db
}

/** Synchronous CPU work of about `ms` milliseconds (the same as the pool task). */
function burnCpu(ms) {
  const end = performance.now() + ms
  let x = 0
  while (performance.now() < end) x = (x * 31 + 7) % 1000003
  return x
}

// --- the scenarios ---------------------------------------------------------
// Each returns { naive, bulkhead, unit, better } where `better` says which
// direction is good for the figure ('lower' or 'higher'), or { skipped, hint }
// when it cannot run here (the Redis scenario without a redis-server).

const scenarios = [
  {
    id: 'unbounded-cache',
    title: 'A cache that grows forever',
    what: 'a Map used as a cache, fed unique request keys, vs LRUCache({ maxSize })',
    async run() {
      const n = quick ? 50_000 : 200_000
      const value = (i) => `user:${i}:`.padEnd(200, 'x')
      const base = await settledHeap()
      let map = new Map()
      for (let i = 0; i < n; i++) map.set(`req:${i}`, value(i))
      const naive = (await settledHeap()) - base
      const naiveEntries = map.size // keeps the map alive until measured
      map = null
      await settledHeap()
      const base2 = await settledHeap()
      let cache = new LRUCache({ maxSize: 2 * MB, sizeCalculation: (v, k) => v.length * 2 + k.length * 2 })
      for (let i = 0; i < n; i++) cache.set(`req:${i}`, value(i))
      const bulkhead = (await settledHeap()) - base2
      const cacheEntries = cache.size
      cache = null
      return {
        naive,
        bulkhead,
        unit: 'heap',
        better: 'lower',
        note: `${n} keys: the Map holds ${naiveEntries}, the LRUCache (maxSize 2 MB) ${cacheEntries}`,
      }
    },
  },
  {
    id: 'unbounded-fan-out',
    title: 'Unbounded fan-out',
    what: 'ids.forEach(async id => db.get(id)) against a DB capped at 50 connections, vs limit.map with pLimit(10)',
    async run() {
      const ids = Array.from({ length: quick ? 2_000 : 10_000 }, (_, i) => i)
      const naiveDb = fakeDatabase({ maxConnections: 50, latencyMs: 2 })
      let naiveDone = 0
      const pending = []
      ids.forEach(async (id) => {
        const p = naiveDb.get(id).then(
          () => naiveDone++,
          () => naiveDone++,
        )
        pending.push(p)
      })
      const finishedWhenDonePrinted = naiveDone // forEach returned: "done" would be logged here
      await Promise.all(pending)

      const db = fakeDatabase({ maxConnections: 50, latencyMs: 2 })
      const limit = pLimit(10)
      let done = 0
      await limit.map(ids, async (id) => {
        await db.get(id)
        done++
      })
      return {
        naive: naiveDb.failures,
        bulkhead: db.failures,
        unit: 'failed calls',
        better: 'lower',
        note: `peak connections ${naiveDb.peak} vs ${db.peak}; naive "done" came after ${finishedWhenDonePrinted} of ${ids.length} calls, bulkhead after ${done}`,
        extra: { naivePeak: naiveDb.peak, bulkheadPeak: db.peak, naiveDoneEarly: finishedWhenDonePrinted, bulkheadDone: done },
      }
    },
  },
  {
    id: 'sequential-await',
    timing: true, // a wall-clock figure: reported, not asserted by the test
    title: 'Sequential await over independent calls',
    what: 'for … await over independent 5 ms calls, vs limit.map with concurrency 20',
    async run() {
      const n = quick ? 60 : 200
      const call = () => sleep(5)
      let start = performance.now()
      for (let i = 0; i < n; i++) await call()
      const naive = performance.now() - start
      start = performance.now()
      await pLimit(20).map(Array.from({ length: n }), call)
      const bulkhead = performance.now() - start
      return { naive, bulkhead, unit: 'ms', better: 'lower', note: `${n} calls` }
    },
  },
  {
    id: 'promise-all-loses-outcomes',
    title: 'Promise.all loses what succeeded',
    what: 'Promise.all over 100 operations of which 7 fail, vs Limiter.map(…, { settle: true })',
    async run() {
      const op = async (i) => {
        await sleep(1)
        if (i % 15 === 3) throw new Error(`op ${i} failed`)
        return i
      }
      const items = Array.from({ length: 100 }, (_, i) => i)
      let naive = 0
      try {
        naive = (await Promise.all(items.map(op))).length
      } catch {
        naive = 0 // only the first error is known; the 93 successes are lost
      }
      const outcomes = await new Limiter({ concurrency: 10 }).map(items, op, { settle: true })
      const bulkhead = outcomes.filter((o) => o.status === 'fulfilled' || o.status === 'rejected').length
      return { naive, bulkhead, unit: 'outcomes known', better: 'higher', note: 'of 100' }
    },
  },
  {
    id: 'never-settling-calls',
    title: 'Calls that never answer',
    what: 'a dependency that never answers 10% of calls: pending promises pile up, vs Limiter with timeout',
    async run() {
      const n = quick ? 2_000 : 10_000
      const upstream = (i) => (i % 10 === 0 ? new Promise(() => {}) : sleep(1).then(() => i))
      let naivePending = 0
      for (let i = 0; i < n; i++) {
        naivePending++
        upstream(i).then(() => naivePending--)
      }
      await sleep(200)
      const limiter = new Limiter({ concurrency: 100, timeout: 50 })
      let pending = 0
      const runs = []
      for (let i = 0; i < n; i++) {
        pending++
        runs.push(
          limiter
            .run(() => upstream(i))
            .then(
              () => pending--,
              () => pending--,
            ),
        )
      }
      await Promise.all(runs)
      return { naive: naivePending, bulkhead: pending, unit: 'still pending', better: 'lower', note: `${n} calls, 200 ms later` }
    },
  },
  {
    id: 'check-then-set-race',
    title: 'Check-then-set race',
    what: '200 concurrent logins for one user: if (!cache.has(id)) createSession(), vs SingleFlight',
    async run() {
      let created = 0
      const createSession = async (id) => {
        created++
        await sleep(10)
        return { id, token: Math.random() }
      }
      const cache = new Map()
      const naiveLogin = async (id) => {
        if (!cache.has(id)) cache.set(id, await createSession(id))
        return cache.get(id)
      }
      await Promise.all(Array.from({ length: 200 }, () => naiveLogin('alice')))
      const naive = created
      created = 0
      const group = new SingleFlight({ timeout: 1_000 })
      await Promise.all(Array.from({ length: 200 }, () => group.do('alice', () => createSession('alice'))))
      return { naive, bulkhead: created, unit: 'createSession runs', better: 'lower' }
    },
  },
  {
    id: 'listener-retention',
    title: 'Listeners that keep requests alive',
    what: 'each request adds an abort listener to a long-lived signal and never removes it, vs Limiter.run(fn, { signal })',
    async run() {
      const n = quick ? 500 : 2_000
      // "Kept alive" is counted with WeakRefs after forced GCs: a WeakRef
      // answers exactly whether its request survived. (A FinalizationRegistry
      // count is not a measure: its callbacks may run long after the objects
      // are collected, or not at all.)
      const naiveRefs = []
      const shutdown = new AbortController()
      setMaxListeners(n + 1, shutdown.signal) // silence the leak warning: the table shows the leak
      for (let i = 0; i < n; i++) {
        const request = { id: i, body: new Array(100).fill(i) }
        naiveRefs.push(new WeakRef(request))
        shutdown.signal.addEventListener('abort', () => request.body.length)
        await sleep(0)
      }
      const naive = await survivors(naiveRefs)
      shutdown.abort() // (also keeps the signal, and so its listeners, alive until counted)

      const bulkheadRefs = []
      const shutdownB = new AbortController()
      const limiter = new Limiter({ concurrency: 50 })
      for (let i = 0; i < n; i++) {
        const request = { id: i, body: new Array(100).fill(i) }
        bulkheadRefs.push(new WeakRef(request))
        await limiter.run(async () => request.body.length, { signal: shutdownB.signal })
      }
      const bulkhead = await survivors(bulkheadRefs)
      shutdownB.abort()
      return { naive, bulkhead, unit: 'requests retained', better: 'lower', note: `of ${n}` }
    },
  },
  {
    id: 'cpu-blocks-event-loop',
    timing: true, // a wall-clock figure: reported, not asserted by the test
    title: 'CPU work blocks the event loop',
    what: 'requests needing ~20 ms of CPU each, arriving every 10 ms: event-loop delay p99, inline vs WorkerPool',
    async run() {
      const requests = quick ? 15 : 40
      // Serve `requests` requests arriving every 10 ms while a 2 ms ticker
      // records how late the event loop runs it.
      const serve = async (handler) => {
        const lags = []
        let last = performance.now()
        const ticker = setInterval(() => {
          const now = performance.now()
          lags.push(Math.max(0, now - last - 2))
          last = now
        }, 2)
        const handled = []
        for (let i = 0; i < requests; i++) {
          handled.push(handler(i))
          await sleep(10)
        }
        await Promise.all(handled)
        clearInterval(ticker)
        lags.sort((a, b) => a - b)
        return lags[Math.floor(lags.length * 0.99)] ?? 0
      }
      const naive = await serve(async () => burnCpu(20))
      // One worker leaves the main thread a core of its own (see README,
      // WorkerPool performance (e)): the handlers queue up in the pool
      // instead of in the event loop.
      const pool = new WorkerPool({ filename: hashTask, minThreads: 1, maxThreads: 1 })
      await pool.run({ ms: 0, seed: 0 })
      const bulkhead = await serve((i) => pool.run({ ms: 20, seed: i }))
      await pool.close()
      return { naive, bulkhead, unit: 'ms (p99 delay)', better: 'lower', note: `${requests} requests` }
    },
  },
  {
    id: 'worker-per-task',
    timing: true, // a wall-clock figure: reported, not asserted by the test
    title: 'A new Worker per task',
    what: 'spawning a Worker for each small task, vs WorkerPool',
    async run() {
      const n = quick ? 20 : 100
      let start = performance.now()
      for (let i = 0; i < n; i += 2) {
        await Promise.all(
          [0, 1].map(
            (k) =>
              new Promise((resolve, reject) => {
                const w = new Worker(
                  'const { parentPort, workerData } = require("node:worker_threads"); parentPort.postMessage(workerData * 2)',
                  { eval: true, workerData: i + k },
                )
                w.once('message', resolve)
                w.once('error', reject)
              }),
          ),
        )
      }
      const naive = (n / (performance.now() - start)) * 1000
      const pool = new WorkerPool({ filename: hashTask, minThreads: 2, maxThreads: 2 })
      await pool.run({ ms: 0, seed: 0 })
      const m = n * 10
      start = performance.now()
      await Promise.all(Array.from({ length: m }, (_, i) => pool.run({ ms: 0, seed: i })))
      const bulkhead = (m / (performance.now() - start)) * 1000
      await pool.close()
      return { naive, bulkhead, unit: 'tasks/s', better: 'higher' }
    },
  },
  {
    id: 'fast-producer-slow-consumer',
    title: 'A fast producer into a slow consumer',
    what: 'an async generator of rows read into an array before a slow consumer runs, vs Limiter.mapIterable over it',
    async run() {
      const rows = quick ? 20_000 : 200_000
      let produced = 0
      let consumed = 0
      let peak = 0
      async function* produce() {
        for (let i = 0; i < rows; i++) {
          produced++
          peak = Math.max(peak, produced - consumed)
          yield { id: i, payload: `row-${i}`.padEnd(64, '.') }
        }
      }
      const consume = async (row) => {
        await new Promise(setImmediate) // the slow part: one event-loop turn per row
        consumed++
        return row.id
      }
      const buffered = []
      for await (const row of produce()) buffered.push(row)
      for (const row of buffered) await consume(row)
      const naive = peak

      produced = consumed = peak = 0
      const limiter = new Limiter({ concurrency: 8 })
      let results = 0
      for await (const id of limiter.mapIterable(produce(), consume)) results += id >= 0 ? 1 : 0
      if (results !== rows) throw new Error(`mapIterable yielded ${results} of ${rows} rows`)
      return { naive, bulkhead: peak, unit: 'rows held at once', better: 'lower', note: `${rows} rows` }
    },
  },
  {
    id: 'request-context',
    title: 'Request context lost under concurrency',
    what: 'a global "current user" variable vs AsyncLocalStorage carried through pLimit and WorkerPool',
    async run() {
      const users = Array.from({ length: 50 }, (_, i) => `user-${i}`)
      let current = null
      let naive = 0
      await Promise.all(
        users.map(async (user, i) => {
          current = user
          await sleep(1 + (i % 3))
          if (current !== user) naive++
        }),
      )
      const als = new AsyncLocalStorage()
      const limit = pLimit(5)
      const pool = new WorkerPool({ filename: hashTask, maxThreads: 2 })
      let wrong = 0
      await Promise.all(
        users.map((user) =>
          als.run(user, async () => {
            await limit(async () => {
              await sleep(1)
              if (als.getStore() !== user) wrong++
            })
            await pool.run({ ms: 0, seed: 1 })
            if (als.getStore() !== user) wrong++
          }),
        ),
      )
      await pool.close()
      return { naive, bulkhead: wrong, unit: 'wrong user seen', better: 'lower', note: 'of 50 requests' }
    },
  },
  {
    id: 'unobserved-rejections',
    title: 'Rejections nobody observes',
    what: 'start every call, then await them one by one: after the first failure the later ones reject unobserved; vs limit.map',
    async run() {
      const batches = 20
      const call = (i) => sleep(1 + (i % 5)).then(() => (i % 4 === 1 ? Promise.reject(new Error(`call ${i} failed`)) : i))
      let unhandled = 0
      const onUnhandled = () => unhandled++
      process.on('unhandledRejection', onUnhandled)
      try {
        for (let b = 0; b < batches; b++) {
          const started = Array.from({ length: 8 }, (_, i) => call(i))
          try {
            for (const p of started) await p
          } catch {
            // the request failed; the rest of `started` is forgotten
          }
        }
        await sleep(20)
        const naive = unhandled
        unhandled = 0
        const limit = pLimit(8)
        for (let b = 0; b < batches; b++) {
          await limit.map(Array.from({ length: 8 }, (_, i) => i), call).catch(() => {})
        }
        await sleep(20)
        return { naive, bulkhead: unhandled, unit: 'unhandled rejections', better: 'lower', note: `${batches} requests of 8 calls` }
      } finally {
        process.off('unhandledRejection', onUnhandled)
      }
    },
  },
  // Distributed mode: four processes, one upstream quota, one Limiter on Redis.
  redisQuota,
  // Four processes, cold keys and a write: TieredCache on Redis.
  redisTiered,
]

// --- run and report --------------------------------------------------------

function formatFigure(unit, value) {
  if (typeof value !== 'number') return String(value)
  if (unit === 'heap') return mb(value)
  if (unit.startsWith('ms')) return ms(value)
  if (unit === 'tasks/s') return `${Math.round(value)}/s`
  return String(Math.round(value))
}

const missing = Object.entries(primitives)
  .filter(([, value]) => typeof value !== 'function')
  .map(([name]) => name)

const unknown = only?.filter((id) => !scenarios.some((s) => s.id === id)) ?? []
if (unknown.length) {
  console.error(`--only: no scenario ${unknown.join(', ')} (ids: ${scenarios.map((s) => s.id).join(', ')})`)
  process.exit(2)
}

const results = []
const started = performance.now()
for (const [index, scenario] of scenarios.entries()) {
  if (only && !only.includes(scenario.id)) continue
  const n = index + 1 // the scenario's number in the table, with --only too
  const t0 = performance.now()
  try {
    const r = await scenario.run()
    if (r.skipped) {
      results.push({ n, id: scenario.id, title: scenario.title, what: scenario.what, skipped: r.skipped, hint: r.hint })
      continue
    }
    const ok = r.better === 'lower' ? r.bulkhead < r.naive : r.bulkhead > r.naive
    results.push({
      n,
      id: scenario.id,
      title: scenario.title,
      what: scenario.what,
      timing: scenario.timing === true,
      ...r,
      ok,
      ms: performance.now() - t0,
    })
  } catch (err) {
    results.push({ n, id: scenario.id, title: scenario.title, what: scenario.what, error: String(err && err.message) })
  }
}

const report = {
  node: process.version,
  platform: `${process.platform}-${process.arch}`,
  cpus: os.cpus().length,
  addon: native.__napiBindingTarget,
  quick,
  missingPrimitives: missing,
  seconds: (performance.now() - started) / 1000,
  skipped: results.filter((r) => r.skipped).map((r) => r.id),
  scenarios: results,
}

if (json) {
  console.log(JSON.stringify(report, null, 2))
} else {
  console.log(`bulkhead demo — Node ${report.node} on ${report.platform}, ${report.cpus} cores${quick ? ' (quick)' : ''}`)
  if (missing.length) console.log(`(not built yet: ${missing.join(', ')})`)
  console.log('')
  const rows = results.map((r) => {
    if (r.skipped) return [String(r.n), r.title, '-', '-', '', 'skipped']
    return [
      String(r.n),
      r.title,
      r.error ? 'n/a' : formatFigure(r.unit, r.naive),
      r.error ? `error: ${r.error}` : formatFigure(r.unit, r.bulkhead),
      r.error ? '' : r.unit,
      r.error ? '' : r.ok ? 'yes' : 'NO',
    ]
  })
  const header = ['#', 'trap', 'naive', 'bulkhead', 'figure', 'removed']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)))
  const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`
  console.log(line(header))
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`)
  for (const row of rows) console.log(line(row))
  console.log('')
  for (const r of results) {
    const detail = r.skipped ? `skipped: ${r.skipped}; ${r.hint}` : r.note
    console.log(`${r.n}. ${r.what}${detail ? ` (${detail})` : ''}`)
  }
  console.log(`\n${report.seconds.toFixed(1)} s. API reference: README.md.`)
}
if (svgDir) {
  mkdirSync(svgDir, { recursive: true })
  const file = path.join(svgDir, 'demo-traps.svg')
  writeFileSync(file, demoChart(report, formatFigure, { cpu: os.cpus()[0]?.model }))
  // stderr, so that --json output stays one JSON document
  console.error(`(chart written to ${path.relative(process.cwd(), file) || file})`)
}
process.exitCode = results.some((r) => r.error) ? 1 : 0
