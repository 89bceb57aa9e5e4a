// TieredCache vs bentocache (memory L1 + Redis L2 + Redis bus), on a loopback
// redis-server, 4 worker processes (child processes), each with CALLERS loops:
// a Zipf(1.0) mix over KEYS keys, 5% writes (set), 95% fetches (getOrSet with a
// loader that waits LOAD_MS). Every run uses a fresh name, so every key starts
// cold. Reported: fetch+write ops/s across the 4 processes, loader runs, and
// duplicate loads (loader runs beyond the first for a key: the target is 0,
// bentocache up to one per process), and the slowest single fetch (median over
// the runs of the slowest in any process). A second case, "cold burst": no writes,
// every process fetches each of the KEYS cold keys once, in the same order, so
// each is asked for by all 4 processes at once; the run ends when every
// process has fetched them all, and its ops/s are those 4 x KEYS fetches over
// that time (no fixed window: a window longer than the cold pass would mostly
// time L1 hits of keys already loaded). Subjects interleaved round by round;
// medians of RUNS runs after a warm-up run. Skipped (exit 0) when no
// redis-server is found.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { median, printGrid, quick, writeResults } from './harness.mjs'
import { RedisServer, haveRedis, REDIS_SERVER } from '../__tests__/helpers/redis-server.mjs'

if (!haveRedis) {
  console.log(`\nskipped: no redis-server at ${REDIS_SERVER}`)
  process.exit(0)
}

const bentoVersion = JSON.parse(readFileSync(new URL('../node_modules/bentocache/package.json', import.meta.url), 'utf8')).version
const PROCESSES = 4
const CALLERS = 16
const KEYS = 2_000
const LOAD_MS = 2
const DURATION = quick ? 300 : 1_500
const RUNS = quick ? 1 : 3
const WARMUP = quick ? 0 : 1
const worker = new URL('./fixtures/tiered-cache-bench-worker.mjs', import.meta.url)

const children = Array.from({ length: PROCESSES }, () => fork(worker, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
async function all(message) {
  const replies = await Promise.all(children.map(async (child, i) => {
    const reply = once(child, 'message')
    child.send(typeof message === 'function' ? message(i) : message)
    return (await reply)[0]
  }))
  const failed = replies.find((r) => r.error)
  if (failed) throw new Error(`worker: ${failed.error}`)
  return replies
}

let n = 0
async function sample(server, subject, burst) {
  const name = `bench-tiered-${subject}-${++n}`
  await all({ cmd: 'setup', subject, url: server.url, name, keys: KEYS, zipf: 1.0, writeRate: 0.05, callers: CALLERS, loadMs: LOAD_MS, ttl: 60_000, burst })
  const t0 = performance.now()
  const replies = await all((i) => ({ cmd: 'go', durationMs: DURATION, seed: n * 100 + i }))
  const wallMs = performance.now() - t0
  await all({ cmd: 'teardown' })
  const sum = (f) => replies.reduce((s, r) => s + f(r), 0)
  const distinct = new Set(replies.flatMap((r) => r.fetchedKeys)).size
  const loads = sum((r) => r.loads)
  const byKey = {}
  for (const r of replies) for (const [k, c] of Object.entries(r.loadsByKey)) byKey[k] = (byKey[k] ?? 0) + c
  const duplicates = Object.values(byKey).reduce((a, c) => a + c - 1, 0)
  const slowestMs = Math.max(...replies.map((r) => r.slowestMs))
  return { opsPerSec: sum((r) => r.ops) / wallMs * 1000, wallMs, loads, distinct, duplicates, writes: sum((r) => r.writes), slowestMs }
}

const server = await RedisServer.start()
const result = { processes: PROCESSES, callers: CALLERS, keys: KEYS, loadMs: LOAD_MS, runs: RUNS, durationMs: DURATION, cases: {} }
try {
  for (const [label, burst] of [['zipf, 5% writes', false], ['cold burst', true]]) {
    const samples = { bulkhead: [], bentocache: [] }
    for (let round = 0; round < WARMUP + RUNS; round++) {
      for (const subject of Object.keys(samples)) {
        const s = await sample(server, subject, burst)
        if (round >= WARMUP) samples[subject].push(s)
      }
    }
    const base = median(samples.bentocache.map((s) => s.opsPerSec))
    const rows = []
    result.cases[label] = {}
    for (const [subject, list] of Object.entries(samples)) {
      const med = (f) => median(list.map(f))
      result.cases[label][subject] = { opsPerSec: med((s) => s.opsPerSec), duplicates: med((s) => s.duplicates), samples: list }
      rows.push([
        subject === 'bentocache' ? `bentocache ${bentoVersion}` : 'bulkhead TieredCache',
        Math.round(med((s) => s.opsPerSec)).toLocaleString('en-US'),
        `${(med((s) => s.opsPerSec) / base).toFixed(2)}x`,
        Math.round(med((s) => s.loads)).toLocaleString('en-US'),
        Math.round(med((s) => s.distinct)).toLocaleString('en-US'),
        Math.round(med((s) => s.duplicates)).toLocaleString('en-US'),
        med((s) => s.slowestMs).toFixed(1),
        Math.round(med((s) => s.wallMs)).toLocaleString('en-US'),
      ])
    }
    printGrid(`${label}: ${PROCESSES} processes x ${CALLERS} callers, ${KEYS} keys${burst ? ', each fetched once per process' : ' (Zipf 1.0)'}, loader ${LOAD_MS} ms`,
      ['subject', 'ops/s', 'vs bentocache', 'loader runs', 'distinct keys fetched', 'duplicate loads', 'slowest fetch (ms)', 'run (ms)'], rows)
  }
  writeResults('tiered-cache', result)
} finally {
  await Promise.allSettled(children.map(async (child) => { const e = once(child, 'exit'); child.send({ cmd: 'exit' }); await e }))
  await server.stop()
}
