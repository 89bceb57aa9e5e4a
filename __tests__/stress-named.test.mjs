// Thread stress of every named (process-wide) instance (issue 9): 8
// worker_threads and the main thread hammer one named LRUCache, Limiter and
// SingleFlight with a seeded mixed workload for STRESS_SECONDS seconds each
// (default 3, so the file takes ~15 s; the full run is
// STRESS_SECONDS=10). Invariants are checked during the run by every thread
// (see fixtures/stress-worker.mjs), three workers are terminated at random
// points mid-operation, and afterwards the counts are reconciled with the
// instance's stats(), the survivors must still be able to use it, and the
// process registry must be empty again (re-opening the name with other
// options works). A watchdog fails a phase that does not finish in time with
// a message instead of letting the test hang.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Worker } from 'node:worker_threads'
import { createRequire } from 'node:module'
import { THREADS, slot, KEYS, layoutBytes, rng, cacheLoad, limiterLoad } from './fixtures/stress-worker.mjs'

const require = createRequire(import.meta.url)
const native = require('../lib/native.js')
const { LRUCache } = require('../lib/lru-cache.js')
const { NamedLRUCache } = require('../lib/lru-cache-named.js')
const { Limiter } = require('../lib/p-limit.js')
const { SingleFlight } = require('../lib/single-flight.js')

const SECONDS = Number(process.env.STRESS_SECONDS ?? 3)
const WORKERS = 8
const KILLED = 3
const fixture = new URL('./fixtures/stress-worker.mjs', import.meta.url)

// Fails with a clear message, and terminates the workers, if `promise` does
// not settle within `ms`: a deadlock or a lost wake-up shows up as this
// error rather than as a hung test run.
async function watchdog(promise, ms, what, workers = []) {
  let timer
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => {
      for (const w of workers) w.terminate()
      reject(new Error(`watchdog: ${what} did not finish within ${ms} ms (deadlock or lost wake-up)`))
    }, ms)
  })
  try {
    return await Promise.race([promise, expired])
  } finally {
    clearTimeout(timer)
  }
}

// Starts 8 workers running `kind` until `until`, and terminates KILLED of
// them at random points in the middle of the run (marking them dead in the
// shared buffer first, so the invariant checks know their counts are stale).
function startWorkers(kind, name, until, shared, options, seed) {
  const rand = rng(seed)
  const counters = new Int32Array(shared)
  const workers = []
  const outcomes = []
  const killed = new Set()
  while (killed.size < KILLED) killed.add(rand(WORKERS))
  const timers = []
  for (let thread = 0; thread < WORKERS; thread++) {
    const worker = new Worker(fixture, { workerData: { kind, name, thread, until, shared, options } })
    workers.push(worker)
    outcomes.push(
      new Promise((resolve, reject) => {
        let report
        worker.once('message', (m) => (report = m))
        worker.once('error', reject)
        worker.once('exit', (code) => resolve({ thread, code, report, killed: killed.has(thread) }))
      }),
    )
    if (killed.has(thread)) {
      const at = SECONDS * 1000 * (0.2 + rand(600) / 1000)
      timers.push(
        setTimeout(() => {
          Atomics.store(counters, slot.dead + thread, 1)
          worker.terminate()
        }, at),
      )
    }
  }
  return { workers, outcomes: Promise.all(outcomes), killed, stop: () => timers.forEach(clearTimeout) }
}

function sum(counters, base, threads = THREADS) {
  let s = 0
  for (let t = 0; t < threads; t++) s += Atomics.load(counters, base + t)
  return s
}

function checkRun(t, results, counters) {
  const cut = results.filter((r) => r.killed && r.report === undefined).length
  t.diagnostic(`${cut} of ${KILLED} terminated workers were cut off before they finished`)
  const violations = results.flatMap((r) => r.report?.violations ?? [])
  assert.deepEqual(violations, [], 'invariants held in every surviving thread')
  assert.equal(Atomics.load(counters, slot.violations), 0, 'no thread (terminated ones included) saw a violation')
  for (const r of results) {
    if (r.killed) continue
    assert.equal(r.code, 0, `worker ${r.thread} exited cleanly`)
    assert.ok(r.report, `worker ${r.thread} reported`)
  }
}

const watchMs = (SECONDS + 30) * 1000

test(`named LRUCache: 8 threads for ${SECONDS} s, 3 terminated mid-run`, { timeout: watchMs + 10_000 }, async (t) => {
  const name = 'stress-cache'
  const options = { max: 200, maxSize: 60_000 }
  const before = NamedLRUCache.liveCount()
  const shared = new SharedArrayBuffer(layoutBytes)
  const counters = new Int32Array(shared)
  // The main thread keeps a handle open for the whole test, so the cache
  // checked afterwards is the one the threads used.
  const cache = new LRUCache({ name, ...options })
  const until = Date.now() + SECONDS * 1000
  const run = startWorkers('cache', name, until, shared, options, 11)
  const mine = cacheLoad({ name, thread: WORKERS, until, shared, options })
  const [results, own] = await watchdog(Promise.all([run.outcomes, mine]), watchMs, 'the cache stress', run.workers)
  run.stop()
  checkRun(t, results, counters)
  assert.deepEqual(own.violations, [])
  assert.ok(own.sets > 0 && own.gets > 0, 'the main thread did work during the run')

  // Reconciliation: the shared stats count every operation of every thread.
  // A terminated thread may have been killed between its operation and its
  // count, so each may be one short.
  const stats = cache.stats()
  const sets = sum(counters, slot.a)
  const gets = sum(counters, slot.b)
  assert.ok(stats.sets >= sets && stats.sets <= sets + KILLED, `stats.sets ${stats.sets}, counted ${sets}`)
  const reads = stats.hits + stats.misses
  assert.ok(reads >= gets && reads <= gets + KILLED, `hits+misses ${reads}, counted ${gets}`)
  assert.ok(stats.hits > 0 && stats.evictions > 0, JSON.stringify(stats))
  t.diagnostic(`cache: ${sets} sets, ${gets} gets across 9 threads; ${JSON.stringify(stats)}`)
  assert.ok(cache.size <= options.max && cache.calculatedSize <= options.maxSize)
  assert.equal(cache.size, [...cache.keys()].length, 'size matches what iteration sees')

  // Still usable and consistent after the terminations.
  cache.set('after', 'still works')
  assert.equal(cache.get('after'), 'still works')
  cache.close()
  assert.equal(NamedLRUCache.liveCount(), before, 'no registry entry left after the last handle closed')
  const reopened = new LRUCache({ name, max: 7 })
  assert.equal(reopened.size, 0, 'a fresh cache, not the old one')
  assert.equal(reopened.max, 7)
  reopened.close()
})

test(`named Limiter: 8 threads for ${SECONDS} s, 3 terminated mid-run`, { timeout: watchMs + 10_000 }, async (t) => {
  const name = 'stress-limiter'
  const options = { concurrency: 4, maxPending: 64 }
  const before = native.NamedLimiter.liveCount()
  const shared = new SharedArrayBuffer(layoutBytes)
  const counters = new Int32Array(shared)
  // Held for the whole test, so the limiter checked afterwards is the one
  // the threads used.
  const limiter = new Limiter({ name, ...options })
  const until = Date.now() + SECONDS * 1000
  const run = startWorkers('limiter', name, until, shared, options, 23)
  const mine = limiterLoad({ name, thread: WORKERS, until, shared, options })
  const [results, own] = await watchdog(Promise.all([run.outcomes, mine]), watchMs, 'the limiter stress', run.workers)
  run.stop()
  checkRun(t, results, counters)
  assert.deepEqual(own.violations, [])
  const peak = Atomics.load(counters, slot.peak)
  assert.ok(peak <= options.concurrency, `peak ${peak}`)
  assert.ok(peak >= 2, `threads really ran side by side (peak ${peak})`)

  // Reconciliation per surviving thread: every task settled exactly once
  // (fulfilled or rejected with a code), and the fns that ran are the ones
  // counted in the shared buffer.
  for (const r of [...results.filter((x) => !x.killed).map((x) => x.report), own]) {
    const rejected = Object.values(r.rejected).reduce((a, b) => a + b, 0)
    assert.equal(r.fulfilled + rejected, r.submitted, `every task settled: ${JSON.stringify(r)}`)
    assert.ok(r.fulfilled > 0, JSON.stringify(r))
  }
  for (const r of results.filter((x) => !x.killed)) {
    assert.equal(Atomics.load(counters, slot.a + r.thread), r.report.ran, `thread ${r.thread}: fn runs`)
    assert.equal(Atomics.load(counters, slot.c + r.thread), r.report.submitted, `thread ${r.thread}: tasks`)
    assert.equal(Atomics.load(counters, slot.b + r.thread), 0, `thread ${r.thread}: nothing left running`)
  }
  const all = [...results.filter((x) => !x.killed).map((x) => x.report), own]
  const codes = JSON.stringify(all.map((r) => r.rejected))
  t.diagnostic(`limiter: ${sum(counters, slot.c)} tasks, ${sum(counters, slot.a)} fn runs, peak ${peak}; ${codes}`)
  assert.ok(all.some((r) => r.rejected.ERR_TIMEOUT || r.rejected.ERR_ABORTED), 'cancellation paths ran')

  // No leaked permit or queue slot: after the terminations, exactly
  // `concurrency` tasks run at once and `maxPending` wait; one more is
  // refused. Then every waiting task runs (no lost wake-up).
  const stats = limiter.stats()
  assert.equal(stats.active, 0, `no permit held by a terminated thread: ${JSON.stringify(stats)}`)
  assert.equal(stats.pending, 0)
  let release
  const gate = new Promise((resolve) => (release = resolve))
  let running = 0
  let most = 0
  let ran = 0
  const tasks = Array.from({ length: options.concurrency + options.maxPending }, () =>
    limiter.run(async () => {
      most = Math.max(most, ++running)
      await gate
      running--
      ran++
    }),
  )
  await assert.rejects(limiter.run(() => {}), { code: 'ERR_QUEUE_FULL' }, 'the queue bound is exact')
  await new Promise((resolve) => setTimeout(resolve, 10))
  assert.equal(most, options.concurrency, 'all permits came back')
  release()
  await watchdog(Promise.all(tasks), watchMs, 'tasks queued after the stress')
  assert.equal(ran, tasks.length)
  await limiter.close()
  assert.equal(native.NamedLimiter.liveCount(), before, 'no registry entry left after the last handle closed')
  const reopened = new Limiter({ name, concurrency: 1 })
  assert.equal(await reopened.run(() => 'fresh'), 'fresh')
  await reopened.close()
})

test(`named SingleFlight: 8 threads for ${SECONDS} s, 3 terminated mid-run`, { timeout: watchMs + 10_000 }, async (t) => {
  const name = 'stress-flight'
  const options = { timeout: 20_000 }
  const before = native.NamedFlightGroup.liveGroups()
  const shared = new SharedArrayBuffer(layoutBytes)
  const counters = new Int32Array(shared)
  const until = Date.now() + SECONDS * 1000
  // The main thread takes no part here: a SingleFlight has no close(), and
  // the registry check below needs every handle gone (workers' handles are
  // released when they exit).
  const run = startWorkers('flight', name, until, shared, options, 37)
  const results = await watchdog(run.outcomes, watchMs, 'the single-flight stress', run.workers)
  run.stop()
  checkRun(t, results, counters)
  const survivors = results.filter((x) => !x.killed)
  for (const r of survivors) {
    const rejected = Object.values(r.report.rejected).reduce((a, b) => a + b, 0)
    assert.equal(r.report.values + rejected, r.report.calls, `every caller settled: ${JSON.stringify(r.report)}`)
    assert.equal(Atomics.load(counters, slot.c + r.thread), r.report.calls)
  }
  const all = survivors.map((r) => r.report)
  const codes = JSON.stringify(all.map((r) => r.rejected))
  t.diagnostic(`single-flight: ${sum(counters, slot.c)} calls, ${sum(counters, slot.a)} fn runs; ${codes}`)
  assert.ok(all.some((r) => r.rejected.E_FN), "fn's errors reached the callers")
  for (let k = 0; k < KEYS; k++) {
    const owner = Atomics.load(counters, slot.keys + k)
    assert.ok(owner === 0 || Atomics.load(counters, slot.dead + owner - 1), `key ${k} still marked as running`)
  }
  assert.equal(native.NamedFlightGroup.liveGroups(), before, 'no registry entry left after every thread exited')

  // Reopening the name with other options gives a fresh group that works.
  const group = new SingleFlight({ name, timeout: 1000, maxKeys: 2 })
  const stats = group.stats()
  assert.equal(stats.flights, 0, `a fresh group: ${JSON.stringify(stats)}`)
  let runs = 0
  const calls = Array.from({ length: 5 }, () => group.do('k', async () => (runs++, 'v')))
  assert.deepEqual(await Promise.all(calls), ['v', 'v', 'v', 'v', 'v'])
  assert.equal(runs, 1)
})
