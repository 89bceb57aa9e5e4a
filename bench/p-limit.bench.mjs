// pLimit / Limiter vs p-limit 7, in one process, runs interleaved:
//  - 200k trivial async tasks queued at once at concurrency 1, 10, 100
//    (target: bulkhead pLimit >= 2x p-limit's tasks/s);
//  - the same with Limiter, plain, with a timeout and a signal on each task,
//    and named (process-wide, used from one thread here);
//  - heap per pending task with 1M tasks queued (target: <= 0.5x p-limit's);
//  - the cost of the two per-task native calls, napi-rs class methods vs the
//    hand-registered Node-API functions Limiter uses.
import { createRequire } from 'node:module'
import peerPLimit from 'p-limit'
import { pLimit, Limiter } from '../lib/p-limit.mjs'
import { compare, printTable, writeResults, quick } from './harness.mjs'

const require = createRequire(import.meta.url)
const native = require('../lib/native.js')

const TASKS = 200_000
const noop = async () => {}

function burst(makeLimit) {
  return async (n) => {
    const limit = makeLimit()
    const promises = new Array(n)
    for (let i = 0; i < n; i++) promises[i] = limit(noop)
    await Promise.all(promises)
  }
}

let names = 0
function limiterBurst(concurrency, perTask, { named = false } = {}) {
  return async (n) => {
    // maxPending: Infinity: 200k tasks are queued at once on purpose (the default bound is 1024).
    const limiter = new Limiter({ concurrency, maxPending: Infinity, ...(named ? { name: `bench-${names++}` } : {}) })
    const promises = new Array(n)
    const options = perTask()
    for (let i = 0; i < n; i++) promises[i] = limiter.run(noop, options?.(i))
    await Promise.all(promises)
    if (named) await limiter.close()
  }
}

const rows = []
for (const concurrency of [1, 10, 100]) {
  rows.push(
    await compare(
      `200k tasks, concurrency ${concurrency}`,
      {
        bulkhead: burst(() => pLimit(concurrency)),
        'p-limit': burst(() => peerPLimit(concurrency)),
      },
      { iterations: TASKS },
    ),
  )
}
printTable('pLimit vs p-limit: trivial async tasks (ns per task)', rows, { baseline: 'bulkhead' })

const limiterRows = []
for (const concurrency of [1, 10, 100]) {
  const shared = new AbortController()
  limiterRows.push(
    await compare(
      `200k tasks, concurrency ${concurrency}`,
      {
        Limiter: limiterBurst(concurrency, () => undefined),
        'Limiter +timeout +signal': limiterBurst(concurrency, () => {
          const options = { timeout: 60_000, signal: shared.signal }
          return () => options
        }),
        'Limiter { name }': limiterBurst(concurrency, () => undefined, { named: true }),
        'p-limit': burst(() => peerPLimit(concurrency)),
      },
      { iterations: TASKS, runs: 5 },
    ),
  )
}
printTable('Limiter vs p-limit: trivial async tasks (ns per task)', limiterRows, { baseline: 'Limiter' })

// Heap per pending task: 1M tasks queued behind one that never settles.
function heapUsed() {
  globalThis.gc()
  globalThis.gc()
  return process.memoryUsage().heapUsed
}

async function pendingHeap(label, submit, { pending }) {
  const before = heapUsed()
  const blocker = new Promise(() => {})
  const keep = submit(() => blocker, pending)
  const after = heapUsed()
  keep.cleanup()
  return { label, bytesPerTask: (after - before) / pending }
}

const ignore = () => {}
function settleAll(limiter, promises) {
  for (const promise of promises) promise.catch(ignore)
  limiter.clear()
}

const PENDING = quick ? 100_000 : 1_000_000
const heapRows = []
if (typeof globalThis.gc === 'function') {
  const blockerFn = (fn, n) => {
    const limit = peerPLimit(1)
    const promises = new Array(n)
    for (let i = 0; i < n; i++) promises[i] = limit(fn)
    return { cleanup: () => limit.clearQueue(), promises }
  }
  const subjects = [
    ['p-limit', blockerFn],
    [
      'bulkhead pLimit',
      (fn, n) => {
        const limit = pLimit(1)
        const promises = new Array(n)
        for (let i = 0; i < n; i++) promises[i] = limit(fn)
        return { cleanup: () => limit.clearQueue(), promises }
      },
    ],
    [
      'Limiter',
      (fn, n) => {
        const limiter = new Limiter({ concurrency: 1, maxPending: Infinity })
        const promises = new Array(n)
        for (let i = 0; i < n; i++) promises[i] = limiter.run(fn)
        // The catch handlers are attached after the heap was measured.
        return { cleanup: () => settleAll(limiter, promises), promises }
      },
    ],
    [
      'Limiter +timeout +signal',
      (fn, n) => {
        const limiter = new Limiter({ concurrency: 1, maxPending: Infinity })
        const controller = new AbortController()
        const options = { timeout: 600_000, signal: controller.signal }
        const promises = new Array(n)
        for (let i = 0; i < n; i++) promises[i] = limiter.run(fn, options)
        // Aborting also ends the running task, whose 600 s deadline would
        // otherwise keep the bench process alive for ten minutes.
        return { cleanup: () => { settleAll(limiter, promises); controller.abort() }, promises }
      },
    ],
  ]
  const samples = Object.fromEntries(subjects.map(([label]) => [label, []]))
  for (let round = 0; round < 3; round++) {
    for (const [label, submit] of subjects) {
      const { bytesPerTask } = await pendingHeap(label, submit, { pending: PENDING })
      samples[label].push(bytesPerTask)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  console.log(`\n### Heap per pending task (${PENDING} tasks queued, median of 3)\n`)
  console.log('| subject | bytes per pending task | vs p-limit |')
  console.log('|---|---|---|')
  const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1]
  const peer = median(samples['p-limit'])
  for (const [label] of subjects) {
    const value = median(samples[label])
    heapRows.push({ label, bytesPerTask: value })
    console.log(`| ${label} | ${value.toFixed(0)} B | ${(value / peer).toFixed(2)}x |`)
  }
} else {
  console.log('\n(heap rows need --expose-gc; `npm run bench` passes it)')
}

// The two per-task native calls: napi-rs class methods vs raw Node-API functions.
const raw = native.limiterRawFunctions()
const crossingRows = [
  await compare(
    'submit + finish (one task, started at once)',
    {
      'raw Node-API': (n) => {
        const core = new native.NativeLimiter(Infinity, Infinity, 0, 0)
        const handle = core.handle
        for (let i = 0; i < n; i++) raw.limiterFinish(handle, Math.floor(raw.limiterSubmit(handle, 1, 0, -1, -1) / 2), true)
      },
      'napi-rs class methods': (n) => {
        const core = new native.NativeLimiter(Infinity, Infinity, 0, 0)
        for (let i = 0; i < n; i++) core.finish(Math.floor(core.submit(1, 0, -1, -1) / 2), true)
      },
    },
    { iterations: 1_000_000 },
  ),
]
printTable('Limiter per-task native calls (ns per task)', crossingRows, { baseline: 'raw Node-API' })

writeResults('p-limit', { rows, limiterRows, heapRows, crossingRows })
