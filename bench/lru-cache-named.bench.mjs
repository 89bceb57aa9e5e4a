// The named (process-wide) LRUCache against lru-cache 11.
//
// (a) A cross-thread read: `get` of a 200-byte string that another thread
//     set, beside the way to share an lru-cache between threads today: a
//     postMessage round trip to the thread that owns it.
// (b) Memory and GC: 1,000,000 entries of ~200-byte values held by
//     lru-cache vs a named cache, then a fixed allocation-heavy workload
//     (two: requests that die young, and requests kept long enough to be
//     promoted); heapUsed, RSS and GC pauses (PerformanceObserver 'gc').
//     A third subject runs the workload with no cache at all: the pauses no
//     cache can avoid. Each subject runs in its own child process so one does
//     not colour the other.
// (c) get/set throughput in one thread vs lru-cache (single-thread speed is
//     where a JS Map wins: every named operation crosses into Rust).
// (d) Threads: 1, 2, 4 and 8 worker_threads on one named cache (one store,
//     one lock), a 90/10 get/set mix, operations per second in all; beside
//     it, the same threads each with a private lru-cache (no sharing, so no
//     contention: what the threads would do alone). The machine's core count
//     is printed with the table; threads beyond it show contention, not
//     parallelism.
import os from 'node:os'
import { Worker } from 'node:worker_threads'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { PerformanceObserver } from 'node:perf_hooks'
import { createRequire } from 'node:module'
import { compare, printTable, printGrid, writeResults, median, quick } from './harness.mjs'

const require = createRequire(import.meta.url)
const { NamedLRUCache } = require('../lib/lru-cache-named.js')
const { LRUCache } = require('lru-cache')

// ---------------------------------------------------------------------------
// (b) runs in a child: `node --expose-gc lru-cache-named.bench.mjs --memory <subject> [requests in flight]`
if (process.argv[2] === '--memory') {
  const subject = process.argv[3]
  const entries = quick ? 100_000 : 1_000_000
  const settle = () => {
    for (let i = 0; i < 3; i++) globalThis.gc()
  }
  settle()
  const base = process.memoryUsage()
  const value = (i) => `${i}:`.padEnd(200, 'v')
  let cache
  if (subject === 'lru-cache') cache = new LRUCache({ max: entries })
  else if (subject === 'no cache') cache = { size: 0, get: () => undefined, set: () => {} } // the workload's own GC
  else cache = new NamedLRUCache({ name: 'bench-memory', max: entries, maxSize: 1024 * 1024 * 1024 })
  // Keep the cache reachable to the end: a module-level local that no
  // closure uses is dead after its last use, and V8 would collect it.
  globalThis.benchCache = cache
  for (let i = 0; i < entries; i++) cache.set(`key:${i}`, value(i))
  settle()
  const filled = process.memoryUsage()
  const pauses = []
  const majors = []
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      pauses.push(e.duration)
      // kind 4: mark-compact (a full GC, which must trace every live object).
      if ((e.detail?.kind ?? e.kind) === 4) majors.push(e.duration)
    }
  })
  obs.observe({ entryTypes: ['gc'] })
  // The fixed workload: request-like objects, a window of which stays alive
  // long enough to be promoted (so full GCs happen, as in a service), plus
  // cache reads and some writes.
  const start = process.hrtime.bigint()
  let sink = 0
  const rounds = quick ? 200_000 : Number(process.env.BENCH_ROUNDS ?? 1_000_000)
  const window = new Array(Number(process.argv[4] ?? process.env.BENCH_WINDOW ?? 50_000))
  for (let i = 0; i < rounds; i++) {
    const req = { id: i, headers: { a: `h${i}`, b: [i, i + 1, i + 2] }, body: 'x'.repeat(64) }
    window[i % window.length] = req
    const v = cache.get(`key:${(i * 7919) % entries}`)
    if (v !== undefined) sink += v.length + req.headers.b.length
    if (i % 10 === 0) cache.set(`key:${(i * 104729) % entries}`, value(i))
  }
  const workloadMs = Number(process.hrtime.bigint() - start) / 1e6
  await new Promise((resolve) => setTimeout(resolve, 100))
  obs.disconnect()
  window.fill(undefined)
  // A forced full GC with the cache alive: what every full collection costs
  // the process while the cache is in the heap (median of 5).
  const forced = []
  settle() // first collect the workload's garbage, untimed
  for (let i = 0; i < 5; i++) {
    const t0 = process.hrtime.bigint()
    globalThis.gc()
    forced.push(Number(process.hrtime.bigint() - t0) / 1e6)
  }
  forced.sort((a, b) => a - b)
  pauses.sort((a, b) => a - b)
  majors.sort((a, b) => a - b)
  const p99 = pauses.length ? pauses[Math.min(pauses.length - 1, Math.floor(pauses.length * 0.99))] : 0
  console.log(
    JSON.stringify({
      subject,
      entries,
      heapUsedMB: (filled.heapUsed - base.heapUsed) / 1048576,
      rssMB: (filled.rss - base.rss) / 1048576,
      gcCount: pauses.length,
      gcTotalMs: pauses.reduce((a, b) => a + b, 0),
      gcMaxMs: pauses.at(-1) ?? 0,
      gcP99Ms: p99,
      majorCount: majors.length,
      majorTotalMs: majors.reduce((a, b) => a + b, 0),
      majorMaxMs: majors.at(-1) ?? 0,
      forcedFullGcMs: forced[2],
      workloadMs,
      sink: sink > 0,
      size: globalThis.benchCache.size,
    }),
  )
  process.exit(0)
}

const rows = []

// ---------------------------------------------------------------------------
// (a) cross-thread get
const value200 = 'v'.repeat(200)
const owner = new Worker(
  `
  const { parentPort } = require('node:worker_threads')
  const { LRUCache } = require(${JSON.stringify(require.resolve('lru-cache'))})
  const { NamedLRUCache } = require(${JSON.stringify(require.resolve('../lib/lru-cache-named.js'))})
  const cache = new LRUCache({ max: 10000 })
  const named = new NamedLRUCache({ name: 'bench-cross', max: 10000 })
  for (let i = 0; i < 1000; i++) { cache.set('key:' + i, ${JSON.stringify(value200)}); named.set('key:' + i, ${JSON.stringify(value200)}) }
  parentPort.on('message', (m) => {
    if (m === 'ready?') return parentPort.postMessage('ready')
    parentPort.postMessage(cache.get(m))
  })
  `,
  { eval: true },
)
await new Promise((resolve) => {
  owner.once('message', resolve)
  owner.postMessage('ready?')
})
const cross = new NamedLRUCache({ name: 'bench-cross', max: 10000 })
if (cross.get('key:1') !== value200) throw new Error('the worker did not fill the named cache')
let sink = 0
function roundTrip(key) {
  return new Promise((resolve) => {
    owner.once('message', resolve)
    owner.postMessage(key)
  })
}
rows.push(
  await compare(
    '(a) cross-thread get, 200-byte string',
    {
      'bulkhead named': (n) => {
        for (let i = 0; i < n; i++) sink += cross.get(`key:${i % 1000}`).length
      },
      'postMessage to lru-cache owner': async (n) => {
        for (let i = 0; i < n; i++) sink += (await roundTrip(`key:${i % 1000}`)).length
      },
    },
    { iterations: 20_000 },
  ),
)
await owner.terminate()

// ---------------------------------------------------------------------------
// (c) throughput in one thread
const N = 200_000
const keys = Array.from({ length: 100_000 }, (_, i) => `key:${String(i).padStart(12, '0')}`)
const local = new LRUCache({ max: 100_000 })
const named = new NamedLRUCache({ name: 'bench-throughput', max: 100_000 })
for (const k of keys) {
  local.set(k, value200)
  named.set(k, value200)
}
rows.push(
  await compare(
    '(c) get hit, 200-byte string, 100k entries',
    {
      'bulkhead named': (n) => {
        for (let i = 0; i < n; i++) sink += named.get(keys[(i * 7) % 100_000]).length
      },
      'lru-cache': (n) => {
        for (let i = 0; i < n; i++) sink += local.get(keys[(i * 7) % 100_000]).length
      },
    },
    { iterations: N },
  ),
)
const obj = { id: 1, name: 'session', roles: ['a', 'b'], at: 1700000000000 }
named.set('obj', obj)
local.set('obj', obj)
rows.push(
  await compare(
    '(c) get hit, small object (structured clone)',
    {
      'bulkhead named': (n) => {
        for (let i = 0; i < n; i++) sink += named.get('obj').id
      },
      'lru-cache': (n) => {
        for (let i = 0; i < n; i++) sink += local.get('obj').id
      },
    },
    { iterations: N },
  ),
)
const smallLocal = new LRUCache({ max: 10_000 })
const smallNamed = new NamedLRUCache({ name: 'bench-evict', max: 10_000 })
let counter = 0
rows.push(
  await compare(
    '(c) evicting set, 200-byte string, max 10k',
    {
      'bulkhead named': (n) => {
        for (let i = 0; i < n; i++) smallNamed.set(`k${counter++}`, value200)
      },
      'lru-cache': (n) => {
        for (let i = 0; i < n; i++) smallLocal.set(`k${counter++}`, value200)
      },
    },
    { iterations: N },
  ),
)
printTable('Named LRUCache vs lru-cache 11 (ns/op, lower is better)', rows, { baseline: 'bulkhead named' })

// ---------------------------------------------------------------------------
// (d) throughput at 1, 2, 4 and 8 threads
const threadOps = quick ? 200_000 : 2_000_000
// The sharded column: one named cache split into this many shards (option `shards`).
const THREAD_SHARDS = 16
const threadSource = `
  const { parentPort, workerData } = require('node:worker_threads')
  const { LRUCache } = require(${JSON.stringify(require.resolve('lru-cache'))})
  const { NamedLRUCache } = require(${JSON.stringify(require.resolve('../lib/lru-cache-named.js'))})
  const { subject, ops, seed, gate } = workerData
  const value = 'v'.repeat(200)
  const keys = Array.from({ length: 100000 }, (_, i) => 'key:' + String(i).padStart(12, '0'))
  let cache
  if (subject === 'named') cache = new NamedLRUCache({ name: 'bench-threads', max: 100000 })
  else if (subject === 'sharded') cache = new NamedLRUCache({ name: 'bench-threads-sharded', max: 100000, shards: ${THREAD_SHARDS} })
  else {
    cache = new LRUCache({ max: 100000 })
    for (const k of keys) cache.set(k, value)
  }
  const flag = new Int32Array(gate)
  Atomics.add(flag, 1, 1)
  Atomics.notify(flag, 1)
  Atomics.wait(flag, 0, 0)
  let sink = 0
  let x = seed
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < ops; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    const key = keys[x % 100000]
    if (i % 10 === 9) cache.set(key, value)
    else {
      const v = cache.get(key)
      if (v !== undefined) sink += v.length
    }
  }
  const ns = Number(process.hrtime.bigint() - t0)
  if (subject !== 'lru-cache') cache.close()
  parentPort.postMessage({ ns, sink: sink > 0 })
`
const filler = new NamedLRUCache({ name: 'bench-threads', max: 100_000 })
const shardedFiller = new NamedLRUCache({ name: 'bench-threads-sharded', max: 100_000, shards: THREAD_SHARDS })
for (const k of keys) {
  filler.set(k, value200)
  shardedFiller.set(k, value200)
}
async function threadRun(subject, threads) {
  const gate = new SharedArrayBuffer(8)
  const flag = new Int32Array(gate)
  const workers = Array.from(
    { length: threads },
    (_, t) => new Worker(threadSource, { eval: true, workerData: { subject, ops: threadOps, seed: t * 7919 + 1, gate } }),
  )
  const done = workers.map((w) => new Promise((resolve, reject) => w.once('message', resolve).once('error', reject)))
  while (Atomics.load(flag, 1) < threads) await new Promise((resolve) => setTimeout(resolve, 5))
  const t0 = process.hrtime.bigint()
  Atomics.store(flag, 0, 1)
  Atomics.notify(flag, 0)
  const results = await Promise.all(done)
  const wallNs = Number(process.hrtime.bigint() - t0)
  await Promise.all(workers.map((w) => w.terminate()))
  for (const r of results) if (!r.sink) throw new Error(`${subject}: a thread read nothing`)
  return (threads * threadOps) / (wallNs / 1e9)
}
const threadRows = []
for (const threads of [1, 2, 4, 8]) {
  const named = []
  const sharded = []
  const priv = []
  for (let run = 0; run < (quick ? 1 : 3); run++) {
    named.push(await threadRun('named', threads))
    sharded.push(await threadRun('sharded', threads))
    priv.push(await threadRun('lru-cache', threads))
  }
  threadRows.push({ threads, named: median(named), sharded: median(sharded), private: median(priv) })
}
filler.close()
shardedFiller.close()
const mops = (x) => `${(x / 1e6).toFixed(2)} M`
printGrid(
  `(d) ${threadOps.toLocaleString('en')} operations per thread (90% get, 10% set, 100k entries), ops/s in all, median of ${quick ? 1 : 3}; ${os.availableParallelism()} cores`,
  [
    'threads',
    'one named cache',
    'vs 1 thread',
    `one named cache, ${THREAD_SHARDS} shards`,
    'vs 1 thread',
    'a private lru-cache per thread',
    'vs 1 thread',
    'named / private',
  ],
  threadRows.map((r) => [
    String(r.threads),
    mops(r.named),
    `${(r.named / threadRows[0].named).toFixed(2)}x`,
    mops(r.sharded),
    `${(r.sharded / threadRows[0].sharded).toFixed(2)}x`,
    mops(r.private),
    `${(r.private / threadRows[0].private).toFixed(2)}x`,
    `${(r.named / r.private).toFixed(2)}x`,
  ]),
)

// ---------------------------------------------------------------------------
// (b) memory and GC, one child process per subject and workload. Two
// workloads: requests that die young (1,000 in flight), and requests kept long
// enough to be promoted (50,000 in flight). 'no cache' runs the same workload
// without any cache: its pauses are the workload's own, a floor that no cache
// can go below, so lru-cache / 'no cache' is the most any cache could gain.
const self = fileURLToPath(import.meta.url)
const SUBJECTS = ['lru-cache', 'bulkhead named', 'no cache']
const WORKLOADS = [
  { window: 1_000, label: 'requests that die young (1,000 in flight)' },
  { window: 50_000, label: 'requests that live long enough to be promoted (50,000 in flight)' },
]
const memory = {}
for (const { window } of WORKLOADS) {
  memory[window] = {}
  for (const subject of SUBJECTS) {
    const args = ['--expose-gc', self, '--memory', subject, String(window)]
    const { stdout, status, stderr } = spawnSync(process.execPath, args, {
      encoding: 'utf8',
      env: process.env,
      maxBuffer: 1 << 20,
    })
    if (status !== 0) throw new Error(`memory bench ${subject} (window ${window}) failed: ${stderr}`)
    memory[window][subject] = JSON.parse(stdout.trim().split('\n').pop())
  }
}
const fmt = (x) => x.toFixed(2)
const ratio = (a, b) => (b > 0 ? `${(a / b).toFixed(1)}x` : '-')
for (const { window, label } of WORKLOADS) {
  const m = memory[window]
  const entries = m['lru-cache'].entries.toLocaleString('en')
  console.log(`\n### (b) ${entries} entries of ~200-byte strings, then a fixed workload: ${label}\n`)
  console.log('| metric | lru-cache | bulkhead named | no cache | lru-cache / named | lru-cache / no cache |')
  console.log('|---|---|---|---|---|---|')
  for (const [name, key] of [
    ['heapUsed after fill (MB)', 'heapUsedMB'],
    ['RSS after fill (MB)', 'rssMB'],
    ['GC pauses (count)', 'gcCount'],
    ['GC pause total (ms)', 'gcTotalMs'],
    ['GC pause max (ms)', 'gcMaxMs'],
    ['GC pause p99 (ms)', 'gcP99Ms'],
    ['full (mark-compact) GCs (count)', 'majorCount'],
    ['full GC pause total (ms)', 'majorTotalMs'],
    ['full GC pause max (ms)', 'majorMaxMs'],
    ['forced full GC, cache alive (ms, median of 5)', 'forcedFullGcMs'],
    ['workload time (ms)', 'workloadMs'],
  ]) {
    const [a, b, c] = SUBJECTS.map((subject) => m[subject][key])
    console.log(`| ${name} | ${fmt(a)} | ${fmt(b)} | ${fmt(c)} | ${ratio(a, b)} | ${ratio(a, c)} |`)
  }
}
writeResults('lru-cache-named', { rows, memory, threads: threadRows, sink: sink > 0 })
cross.close()
named.close()
smallNamed.close()
