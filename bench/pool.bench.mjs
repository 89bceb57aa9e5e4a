// WorkerPool vs piscina 5 and tinypool 2, 2 threads each, same process.
// (a) burst of tiny echo tasks, tasks/s; (b) one task at a time, round-trip
// p50/p99; (c) ~5 ms CPU tasks, 1 vs 2 threads (scaling); (d) the main thread
// busy-blocked for 1 s with ~0.1 ms tasks queued: tasks finished during the
// block; (e) main-thread event-loop delay p99 while a pool runs a burst.
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import Piscina from 'piscina'
import Tinypool from 'tinypool'
import { WorkerPool } from '../lib/pool.js'
import { quick, compare, median, printTable, writeResults } from './harness.mjs'

// POOL_BENCH_ONLY=af runs only cases (a) and (f).
const only = process.env.POOL_BENCH_ONLY ?? 'abcdef'
const want = (c) => only.includes(c)
const filename = fileURLToPath(new URL('./fixtures/pool-task.js', import.meta.url))
const makers = {
  bulkhead: (threads) => new WorkerPool({ filename, minThreads: threads, maxThreads: threads, maxQueue: Infinity }),
  piscina: (threads) => new Piscina({ filename, minThreads: threads, maxThreads: threads, maxQueue: Infinity }),
  tinypool: (threads) => new Tinypool({ filename, minThreads: threads, maxThreads: threads }),
}
const close = (pool) => pool.destroy()

async function warm(pool) {
  await Promise.all(Array.from({ length: 200 }, (_, i) => pool.run(i)))
}

const pools = {}
for (const [label, make] of Object.entries(makers)) {
  pools[label] = make(2)
  await warm(pools[label])
}
const results = {}
if (want('a')) {

// (a) burst
const BURST = quick ? 100_000 : 100_000
const burst = await compare(
  `(a) ${BURST / 1000}k tiny echo tasks at once, 2 threads`,
  Object.fromEntries(
    Object.entries(pools).map(([label, pool]) => [
      label,
      async (n) => {
        const all = new Array(n)
        for (let i = 0; i < n; i++) all[i] = pool.run(i)
        const out = await Promise.all(all)
        if (out[n - 1] !== n - 1) throw new Error(`${label}: wrong result`)
      },
    ]),
  ),
  { iterations: BURST, runs: 5, warmup: 1 },
)
printTable('(a) burst (per task; lower is better)', [burst], { baseline: 'bulkhead' })
for (const [label, s] of Object.entries(burst.subjects)) console.log(`  ${label}: ${Math.round(s.opsPerSec).toLocaleString()} tasks/s`)
results.burst = burst
}

if (want('b')) {

// (b) sequential round trip
const SEQ = quick ? 500 : 5000
results.roundTrip = {}
console.log('\n### (b) one task at a time, round trip (us)\n')
console.log('| pool | p50 | p99 |')
console.log('|---|---|---|')
for (const [label, pool] of Object.entries(pools)) {
  const samples = []
  for (let i = 0; i < SEQ; i++) {
    const t = process.hrtime.bigint()
    await pool.run(i)
    samples.push(Number(process.hrtime.bigint() - t) / 1000)
  }
  samples.sort((a, b) => a - b)
  const p50 = samples[Math.floor(SEQ * 0.5)]
  const p99 = samples[Math.floor(SEQ * 0.99)]
  results.roundTrip[label] = { p50, p99 }
  console.log(`| ${label} | ${p50.toFixed(1)} | ${p99.toFixed(1)} |`)
}
}

if (want('e')) {

// (e) event-loop delay while a pool runs a burst of ~0.1 ms tasks
const DELAY_TASKS = quick ? 2000 : 20_000
results.loopDelay = {}
console.log(`\n### (e) main-thread event-loop delay while ${DELAY_TASKS} ~0.1 ms tasks run (ms)\n`)
console.log('| pool | p50 | p99 | max | all tasks done in |')
console.log('|---|---|---|---|---|')
for (const [label, pool] of Object.entries(pools)) {
  const h = monitorEventLoopDelay({ resolution: 1 })
  const t = performance.now()
  h.enable()
  await Promise.all(Array.from({ length: DELAY_TASKS }, () => pool.run(0.1, { name: 'work' })))
  h.disable()
  const row = { p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6, total: performance.now() - t }
  results.loopDelay[label] = row
  console.log(
    `| ${label} | ${row.p50.toFixed(2)} | ${row.p99.toFixed(2)} | ${row.max.toFixed(2)} | ${row.total.toFixed(0)} ms |`,
  )
}
}

if (want('f')) {

// (f) payload cost: a 1 MiB Buffer to the worker and its length back, copied or moved
const PAYLOAD_RUNS = quick ? 50 : 300
results.payload = {}
console.log(`\n### (f) 1 MiB Buffer per task, one at a time (us per task, median of ${PAYLOAD_RUNS})\n`)
console.log('| pool | copied | transferList |')
console.log('|---|---|---|')
for (const [label, pool] of Object.entries(pools)) {
  const row = {}
  for (const mode of ['copied', 'transferList']) {
    const samples = []
    for (let i = 0; i < PAYLOAD_RUNS; i++) {
      const buf = Buffer.alloc(1 << 20, i & 255)
      const t = process.hrtime.bigint()
      const n = await pool.run(buf, { name: 'size', transferList: mode === 'copied' ? undefined : [buf.buffer] })
      samples.push(Number(process.hrtime.bigint() - t) / 1000)
      if (n !== 1 << 20) throw new Error(`${label}: wrong size ${n}`)
    }
    row[mode] = median(samples)
  }
  results.payload[label] = row
  console.log(`| ${label} | ${row.copied.toFixed(1)} | ${row.transferList.toFixed(1)} |`)
}
}

if (want('d')) {

// (d) main thread blocked for 1 s with tasks queued
const BLOCK_MS = 1000
const BLOCK_TASKS = 20_000
async function finishedWithin(pool, blockMain) {
  const start = performance.timeOrigin + performance.now()
  const all = Array.from({ length: BLOCK_TASKS }, () => pool.run(0.1, { name: 'work' }))
  if (blockMain) {
    const end = performance.now() + BLOCK_MS
    while (performance.now() < end);
  } else {
    await new Promise((resolve) => setTimeout(resolve, BLOCK_MS))
  }
  const finishedAt = await Promise.all(all)
  return finishedAt.filter((t) => t - start <= BLOCK_MS).length
}
// The ceiling under the same conditions: two plain worker threads running
// the same ~0.1 ms task in a loop (no pool at all) while the main thread spins.
async function rawCeiling() {
  const { Worker } = await import('node:worker_threads')
  const code = `
    const { parentPort, workerData } = require('node:worker_threads')
    const work = require(workerData.filename).work
    parentPort.once('message', (end) => {
      let n = 0
      while (performance.timeOrigin + performance.now() < end) { work(0.1); n++ }
      parentPort.postMessage(n)
    })`
  const workers = [0, 1].map(() => new Worker(code, { eval: true, workerData: { filename } }))
  await new Promise((resolve) => setTimeout(resolve, 200))
  const end = performance.timeOrigin + performance.now() + BLOCK_MS
  const counts = workers.map((w) => new Promise((resolve) => w.once('message', resolve)))
  for (const w of workers) w.postMessage(end)
  const stop = performance.now() + BLOCK_MS
  while (performance.now() < stop);
  const total = (await Promise.all(counts)).reduce((a, b) => a + b, 0)
  await Promise.all(workers.map((w) => w.terminate()))
  return total
}
results.blocked = {}
const blockedRuns = Object.fromEntries(Object.keys(pools).map((label) => [label, { blocked: [], free: [] }]))
const ceilings = []
for (let r = 0; r < (quick ? 1 : 3); r++) {
  ceilings.push(await rawCeiling())
  for (const [label, pool] of Object.entries(pools)) {
    blockedRuns[label].blocked.push(await finishedWithin(pool, true))
    blockedRuns[label].free.push(await finishedWithin(pool, false))
  }
}
results.blockedCeiling = median(ceilings)
console.log(`\n### (d) ${BLOCK_TASKS} ~0.1 ms tasks queued, tasks finished within ${BLOCK_MS} ms (median of runs)\n`)
console.log('| pool | main thread blocked | main thread free | blocked / free |')
console.log('|---|---|---|---|')
for (const [label, runs] of Object.entries(blockedRuns)) {
  const row = { blocked: median(runs.blocked), free: median(runs.free) }
  results.blocked[label] = row
  console.log(`| ${label} | ${row.blocked} | ${row.free} | ${(row.blocked / row.free).toFixed(2)} |`)
}
console.log(`| 2 plain threads, no pool, main blocked (ceiling) | ${results.blockedCeiling} | - | - |`)
console.log(`\nbulkhead while blocked / ceiling: ${(results.blocked.bulkhead.blocked / results.blockedCeiling).toFixed(2)}`)
}

for (const pool of Object.values(pools)) await close(pool)
if (want('c')) {

// (c) scaling, bulkhead only: 1 vs 2 threads
const CPU_TASKS = quick ? 200 : 2000
results.scaling = {}
for (const threads of [1, 2]) {
  const pool = makers.bulkhead(threads)
  await warm(pool)
  const t = performance.now()
  await Promise.all(Array.from({ length: CPU_TASKS }, () => pool.run(5, { name: 'work' })))
  results.scaling[threads] = performance.now() - t
  await close(pool)
}
console.log(`\n### (c) ${CPU_TASKS} tasks of ~5 ms, bulkhead\n`)
console.log(`| 1 thread | 2 threads | scaling |`)
console.log(`|---|---|---|`)
console.log(
  `| ${results.scaling[1].toFixed(0)} ms | ${results.scaling[2].toFixed(0)} ms | ${(results.scaling[1] / results.scaling[2]).toFixed(2)}x |`,
)

}

writeResults('pool', results)
