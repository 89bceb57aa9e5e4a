// SingleFlight vs a hand-written Map-of-promises dedupe and vs dataloader.
//
// Workload (the issue's): 100k calls over 1k keys, in bursts. A burst makes
// BURST calls (BURST / 1k callers per key, interleaved) and awaits them all;
// fn resolves on the next microtask, so what is measured is the per-call
// overhead of the dedupe itself. Timeouts are on for bulkhead and for the
// Map dedupe (dataloader has none; it is here as the other common way to
// dedupe concurrent loads).
import { createRequire } from 'node:module'
import { AsyncLocalStorage } from 'node:async_hooks'
import { Worker } from 'node:worker_threads'
import { once } from 'node:events'
import { compare, quick, median, printTable, writeResults } from './harness.mjs'

const require = createRequire(import.meta.url)
const { SingleFlight } = require('../lib/single-flight.js')
const DataLoader = require('dataloader')

const CALLS = 100_000
const KEYS = 1_000
const TIMEOUT = 10_000
const keys = Array.from({ length: KEYS }, (_, i) => `user:${String(i).padStart(11, '0')}`)
let sink = 0

// harness.mjs's compare(), with two switches: `gc` runs a full GC (outside
// the timed region) before every run; `alternate` reverses the order of the
// subjects every other round (harness.mjs always runs them in one order).
// Each is its own row because it changes the result: see README.
async function compareWith(caseName, subjects, { iterations, runs = 7, warmup = 2, gc = false, alternate = false }) {
  if (quick) {
    iterations = Math.max(1, Math.floor(iterations / 20))
    runs = 3
    warmup = 1
  }
  const labels = Object.keys(subjects)
  const samples = Object.fromEntries(labels.map((label) => [label, []]))
  for (let round = 0; round < warmup + runs; round++) {
    for (const label of alternate && round % 2 ? [...labels].reverse() : labels) {
      if (gc) globalThis.gc?.()
      const start = process.hrtime.bigint()
      await subjects[label](iterations)
      const elapsed = Number(process.hrtime.bigint() - start)
      if (round >= warmup) samples[label].push(elapsed / iterations)
    }
  }
  const result = { case: caseName, iterations, runs, subjects: {} }
  for (const label of labels) {
    const nsPerOp = median(samples[label])
    result.subjects[label] = { nsPerOp, opsPerSec: 1e9 / nsPerOp, samples: samples[label] }
  }
  return result
}

// The dedupe people write by hand: a Map of promises, one setTimeout per
// flight for the deadline, cleared when the call settles. With `withSignal`
// it also gives fn an AbortSignal that fires at the deadline, as bulkhead does.
function mapDedupe(timeoutMs, withSignal = false) {
  const map = new Map()
  return function dedupe(key, fn) {
    let p = map.get(key)
    if (p !== undefined) return p
    p = new Promise((resolve, reject) => {
      const controller = withSignal ? new AbortController() : null
      const timer = setTimeout(() => {
        if (map.get(key) === p) map.delete(key)
        const err = new Error(`timed out after ${timeoutMs} ms`)
        controller?.abort(err)
        reject(err)
      }, timeoutMs)
      fn(controller?.signal).then(
        (value) => {
          clearTimeout(timer)
          if (map.get(key) === p) map.delete(key)
          resolve(value)
        },
        (err) => {
          clearTimeout(timer)
          if (map.get(key) === p) map.delete(key)
          reject(err)
        },
      )
    })
    map.set(key, p)
    return p
  }
}

// dataloader deduplicating concurrent loads: its cache holds a key only
// while its batch is in flight (cleared when the batch settles).
function dataLoaderDedupe() {
  const loader = new DataLoader(async (batch) => {
    const values = await Promise.all(batch.map((key) => work(key)))
    for (const key of batch) loader.clear(key)
    return values
  })
  return (key) => loader.load(key)
}

const work = (key) => Promise.resolve(key.length)

// Runs `n` calls in bursts of `burst` through `call(key)`.
async function bursts(n, burst, call) {
  for (let done = 0; done < n; done += burst) {
    const size = Math.min(burst, n - done)
    const pending = new Array(size)
    for (let i = 0; i < size; i++) pending[i] = call(keys[i % KEYS])
    const values = await Promise.all(pending)
    sink += values.length
  }
}

function subjects(burst, { withSignalFn = false, asyncGroup = false } = {}) {
  const group = new SingleFlight({ timeout: TIMEOUT, detectRecursion: asyncGroup ? 'async' : 'sync' })
  const dedupe = mapDedupe(TIMEOUT, withSignalFn)
  const fnFor = (key) => (withSignalFn ? (signal) => (signal.aborted ? 0 : work(key)) : () => work(key))
  return {
    bulkhead: (n) => bursts(n, burst, (key) => group.do(key, fnFor(key))),
    'Map dedupe': (n) => bursts(n, burst, (key) => dedupe(key, fnFor(key))),
  }
}

// dataloader allocates several times more per call than the other two, and
// each subject of a case pays for the garbage of the one run before it
// (measured: bulkhead right after dataloader came out 1.6x slower than the
// same code right after the Map dedupe), so it gets its own rows.
function againstDataLoader(burst) {
  const group = new SingleFlight({ timeout: TIMEOUT })
  const load = dataLoaderDedupe()
  return {
    bulkhead: (n) => bursts(n, burst, (key) => group.do(key, () => work(key))),
    dataloader: (n) => bursts(n, burst, load),
  }
}

const rows = []
const opts = { iterations: CALLS }
rows.push(await compare('100k calls over 1k keys, bursts of 10k (10 callers/key)', subjects(10_000), opts))
rows.push(await compare('100k calls over 1k keys, bursts of 1k (1 caller/key)', subjects(1_000), opts))
rows.push(await compare('bursts of 10k, fn takes the flight signal', subjects(10_000, { withSignalFn: true }), opts))
rows.push(
  await compareWith('bursts of 1k, order alternating each round', subjects(1_000), { ...opts, runs: 11, alternate: true }),
)
rows.push(await compareWith('bursts of 10k, full GC before every run', subjects(10_000), { ...opts, gc: true }))
rows.push(await compare('bursts of 10k, vs dataloader', againstDataLoader(10_000), opts))
rows.push(await compare('bursts of 1k, vs dataloader', againstDataLoader(1_000), opts))

// Callers that each pass a long-lived AbortSignal (bulkhead only: the Map
// dedupe has no way for a caller to leave).
{
  const group = new SingleFlight({ timeout: TIMEOUT })
  const plain = new SingleFlight({ timeout: TIMEOUT })
  const signal = new AbortController().signal
  rows.push(
    await compare(
      'bursts of 10k, every caller passes a signal',
      {
        bulkhead: (n) => bursts(n, 10_000, (key) => group.do(key, () => work(key), { signal })),
        'bulkhead, no signal': (n) => bursts(n, 10_000, (key) => plain.do(key, () => work(key))),
      },
      opts,
    ),
  )
}

// Cross-thread joins (named group): a worker leads `n` flights; the main
// thread joins each (one crossing per join: a thread's first caller of a
// key), then tells the worker to settle them all and waits for every
// result to arrive (serialize in the worker, one batched wake-up, one
// takeEvents, deserialize). Reported per flight; the 'go' message
// (~17 us) is included once per round.
{
  const name = 'bench-cross-thread'
  const group = new SingleFlight({ name, timeout: 60_000 })
  const worker = new Worker(new URL('./single-flight-worker.mjs', import.meta.url), { workerData: { name } })
  let round = 0
  const cross = (n) => async (iterations) => {
    const joinNs = []
    for (let done = 0; done < iterations; done += n) {
      round++
      worker.postMessage({ cmd: 'lead', n, round })
      await once(worker, 'message')
      const pending = new Array(n)
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < n; i++) pending[i] = group.do(`r${round}:k${i}`, () => 'not the leader')
      joinNs.push(Number(process.hrtime.bigint() - t0) / n)
      worker.postMessage({ cmd: 'go' })
      const values = await Promise.all(pending)
      sink += values.length
    }
    crossJoin[n] = median(joinNs)
  }
  const crossJoin = {}
  rows.push(await compare('cross-thread: join + result delivery, 1,000 flights at once', { bulkhead: cross(1000) }, { iterations: 20_000 }))
  rows.push(await compare('cross-thread: join + result delivery, 1 flight at a time', { bulkhead: cross(1) }, { iterations: 500 }))
  rows.push({ case: 'cross-thread: the join alone (a crossing into the Rust table)', iterations: 0, runs: 0, subjects: { bulkhead: { nsPerOp: crossJoin[1000] } } })
  await worker.terminate()
}

// Last, because it cannot be undone: once an AsyncLocalStorage is enabled,
// Node 20 runs promise hooks for every promise in the process, so every
// subject below pays for it, not only the group that asked.
new AsyncLocalStorage().run(0, () => {})
rows.push(
  await compare(
    "bursts of 10k, an AsyncLocalStorage enabled (detectRecursion: 'async')",
    subjects(10_000, { asyncGroup: true }),
    opts,
  ),
)

printTable('SingleFlight: per-call cost (ns per call, lower is better)', rows, { baseline: 'bulkhead' })
if (sink === 42) console.log('')
writeResults('single-flight', { rows })
