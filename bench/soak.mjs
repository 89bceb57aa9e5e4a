// Soak (issue 9): every primitive through a long mixed workload while V8's
// heapUsed (after a forced full GC) and the process RSS are sampled; a
// primitive passes when both are flat. Run: `npm run soak` (10M operations
// per primitive), or `node --expose-gc bench/soak.mjs --ops 1000000
// [--only lru-local,pool]`. Exits 1 if any primitive fails.
//
// Sampling: after every chunk of operations, a sample (global.gc(), then
// process.memoryUsage()) is taken when a second has passed since the last
// one, or when 1/15 of the primitive's operations have run since it, so
// every primitive has at least 15 samples however fast it runs. The first 5%
// of the operations (at least one chunk) are a warm-up and not sampled
// (V8 grows its young generation, caches fill, code gets optimised).
//
// Flat: split the samples into thirds (the middle third is ignored when the
// count is not a multiple of 3); a series is flat when
//   median(last third) <= 1.05 * median(first third) + slack,
// with slack 1 MB for heapUsed and 8 MB for RSS (the allocator and V8 keep
// or return whole pages and chunks, a few MB of noise unrelated to the
// workload). Shrinking is always flat: only growth is a leak.
import { createRequire } from 'node:module'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { setImmediate as tick } from 'node:timers/promises'

// The young generation has a fixed size here (16 MB semi-spaces): V8 grows it
// with the allocation rate, and under this workload Node 24 and 26 grew it in
// steps over the first ~10 s (Node 24, the local LRUCache's workload alone:
// heapTotal 39 -> 136 MB, RSS 78 -> 193 MB, then flat for 40M operations),
// which the RSS rule below read as a leak. With the size fixed the same run
// stays at 96-97 MB. So a soak started without the flags runs itself again
// with them.
const YOUNG_GENERATION = ['--min-semi-space-size=16', '--max-semi-space-size=16']
if (!process.execArgv.some((flag) => flag.startsWith('--max-semi-space-size'))) {
  const script = fileURLToPath(import.meta.url)
  const child = spawnSync(process.execPath, [...YOUNG_GENERATION, '--expose-gc', ...process.execArgv, script, ...process.argv.slice(2)], {
    stdio: 'inherit',
  })
  process.exit(child.status ?? 1)
}

const require = createRequire(import.meta.url)
const { LRUCache } = require('../lib/lru-cache.js')
const { pLimit, Limiter } = require('../lib/p-limit.js')
const { WorkerPool } = require('../lib/pool.js')
const { SingleFlight } = require('../lib/single-flight.js')

if (typeof global.gc !== 'function') {
  console.error('soak: run with node --expose-gc (npm run soak does)')
  process.exit(2)
}

const arg = (flag) => {
  const i = process.argv.indexOf(flag)
  return i === -1 ? undefined : process.argv[i + 1]
}
const OPS = Number(arg('--ops') ?? 10_000_000)
const ONLY = arg('--only')?.split(',')
const VERBOSE = process.argv.includes('--verbose') // print every sample
const HEAP_SLACK = 1 << 20
// --rss-slack-mb: the CI run is too short (under a second for some
// primitives) for RSS to settle: the allocator and V8 growing their pages
// move it by ~10 MB, so the CI test widens the RSS slack; heap after GC
// (the JS leak signal) keeps its 1 MB.
const RSS_SLACK = Number(arg('--rss-slack-mb') ?? 8) * (1 << 20)
const GROWTH = 1.05

let seed = 0x9e3779b9
function rand(n) {
  seed ^= seed << 13
  seed >>>= 0
  seed ^= seed >>> 17
  seed ^= seed << 5
  seed >>>= 0
  return seed % n
}
const pad = 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(4)

// Each primitive: setup() -> state; chunk(state, n) runs n operations (sync
// or async); teardown(state). An "operation" is one call on the primitive.
const primitives = [
  {
    id: 'lru-local',
    label: 'LRUCache (local)',
    chunkSize: 20_000,
    setup: () => new LRUCache({ max: 5000, ttl: 500, dispose: () => {} }),
    chunk(cache, n) {
      for (let i = 0; i < n; i++) {
        const key = `k${rand(20_000)}`
        const op = rand(20)
        if (op < 9) cache.get(key)
        else if (op < 16) cache.set(key, rand(8) ? pad.slice(0, rand(64)) : { key, at: i })
        else if (op < 18) cache.delete(key)
        else if (op < 19) cache.has(key)
        else cache.peek(key)
      }
    },
    teardown: (cache) => cache.clear(),
  },
  {
    id: 'lru-named',
    label: 'LRUCache (named)',
    chunkSize: 20_000,
    setup: () => new LRUCache({ name: 'soak-lru', max: 5000, maxSize: 2 << 20, ttl: 500 }),
    chunk(cache, n) {
      for (let i = 0; i < n; i++) {
        const key = rand(2) ? `k${rand(20_000)}` : rand(20_000)
        const op = rand(20)
        if (op < 9) cache.get(key)
        else if (op < 16) cache.set(key, rand(8) ? pad.slice(0, rand(64)) : { key, at: i })
        else if (op < 18) cache.delete(key)
        else if (op < 19) cache.has(key)
        else cache.peek(key)
      }
    },
    teardown: (cache) => cache.close(),
  },
  {
    id: 'plimit',
    label: 'pLimit',
    chunkSize: 2_000,
    setup: () => pLimit(16),
    async chunk(limit, n) {
      const all = []
      for (let i = 0; i < n; i++) {
        const r = rand(20)
        all.push(
          limit(async (x) => {
            if (r === 0) throw new Error('task failed')
            if (r === 1) await tick()
            return x
          }, i),
        )
      }
      await Promise.allSettled(all)
    },
    teardown: () => {},
  },
  {
    id: 'limiter',
    label: 'Limiter (local)',
    chunkSize: 1_000,
    setup: () => new Limiter({ concurrency: 16, maxPending: 950, timeout: 10_000 }),
    async chunk(limiter, n) {
      const all = []
      for (let i = 0; i < n; i++) {
        const r = rand(40)
        const opts = { priority: rand(3) }
        if (r < 2) opts.timeout = 1
        let controller
        if (r === 2 || r === 3) {
          controller = new AbortController()
          opts.signal = controller.signal
        }
        all.push(
          limiter.run(async () => {
            if (r === 4) throw new Error('task failed')
            if (r < 2 || r === 5) await tick()
            return i
          }, opts),
        )
        if (controller) controller.abort()
      }
      await Promise.allSettled(all)
    },
    teardown: (limiter) => limiter.close(),
  },
  {
    id: 'pool',
    label: 'WorkerPool',
    chunkSize: 1_000,
    setup: () =>
      new WorkerPool({
        filename: new URL('./fixtures/pool-task.js', import.meta.url),
        minThreads: 2,
        maxThreads: 2,
      }),
    // global.gc() collects the main thread's heap only (--expose-gc, a V8
    // flag, gives the workers their own gc()); the workers' heaps
    // would otherwise hold their garbage until their own GC runs, and RSS
    // counts it (a 30M-operation run: 326 -> 372 MB over its first 10 %,
    // 380 MB from the middle on).
    async beforeSample(pool) {
      const collected = await Promise.all([pool.run(50, { name: 'collect' }), pool.run(50, { name: 'collect' })])
      if (!collected.every(Boolean)) throw new Error('the pool workers have no gc()')
    },
    async chunk(pool, n) {
      const all = []
      for (let i = 0; i < n; i++) {
        const r = rand(50)
        let controller
        const opts = {}
        if (r === 0) opts.timeout = 10_000
        if (r === 1) {
          controller = new AbortController()
          opts.signal = controller.signal
        }
        all.push(pool.run(r === 2 ? { i, s: pad } : i, opts))
        if (controller) controller.abort()
      }
      await Promise.allSettled(all)
    },
    teardown: (pool) => pool.close(),
  },
  {
    id: 'sf-local',
    label: 'SingleFlight (local)',
    chunkSize: 2_000,
    setup: () => new SingleFlight({ timeout: 10_000, maxKeys: 64 }),
    chunk: flightChunk,
    teardown: () => {},
  },
  {
    id: 'sf-named',
    label: 'SingleFlight (named)',
    chunkSize: 2_000,
    setup: () => new SingleFlight({ name: 'soak-sf', timeout: 10_000, maxKeys: 64 }),
    chunk: flightChunk,
    teardown: () => {},
  },
]

async function flightChunk(group, n) {
  const all = []
  for (let i = 0; i < n; i++) {
    const key = `key${rand(48)}`
    const r = rand(40)
    let controller
    if (r === 0) controller = new AbortController()
    const call = group.do(
      key,
      async () => {
        await tick()
        if (r === 1) throw new Error('flight failed')
        return { key, i }
      },
      controller && { signal: controller.signal },
    )
    call.catch(() => {}) // handled at once: the loop awaits before allSettled
    all.push(call)
    if (controller) controller.abort()
    if (i % 97 === 0) await tick() // let flights end so keys are re-used by new ones
  }
  await Promise.allSettled(all)
}

const MB = (b) => (b / (1 << 20)).toFixed(1)
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

function flat(series, slack) {
  const third = Math.floor(series.length / 3)
  const first = median(series.slice(0, third))
  const last = median(series.slice(series.length - third))
  return { first, last, ok: last <= GROWTH * first + slack }
}

async function soak(p) {
  const state = await p.setup()
  const heap = []
  const rss = []
  // Warm-up, not sampled: the first 5% of the operations (at least one
  // chunk), while the young generation's pages are first touched and the
  // caches fill.
  const warm = Math.min(OPS, Math.max(p.chunkSize, Math.floor(OPS / 20)))
  const every = Math.max(1, Math.floor((OPS - warm) / 15))
  const start = performance.now()
  let lastAt = start
  let lastOps = 0
  let done = 0
  const sample = async () => {
    if (p.beforeSample) await p.beforeSample(state)
    global.gc()
    const m = process.memoryUsage()
    heap.push(m.heapUsed)
    rss.push(m.rss)
    lastAt = performance.now()
    lastOps = done
  }
  while (done < OPS) {
    const n = Math.min(p.chunkSize, OPS - done)
    await p.chunk(state, n)
    done += n
    if (done < warm) continue
    if (heap.length === 0 || performance.now() - lastAt >= 1000 || done - lastOps >= every || done === OPS) {
      await sample()
    }
  }
  const seconds = (performance.now() - start) / 1000
  await p.teardown(state)
  if (VERBOSE) {
    process.stderr.write(`${p.label} heapUsed MB: ${heap.map(MB).join(' ')}\n`)
    process.stderr.write(`${p.label} RSS MB: ${rss.map(MB).join(' ')}\n`)
  }
  const h = flat(heap, HEAP_SLACK)
  const r = flat(rss, RSS_SLACK)
  return { label: p.label, ops: done, seconds, samples: heap.length, heap: h, rss: r, ok: h.ok && r.ok }
}

const results = []
for (const p of primitives) {
  if (ONLY && !ONLY.includes(p.id)) continue
  const result = await soak(p)
  results.push(result)
  process.stderr.write(`${result.label}: ${result.ok ? 'flat' : 'GREW'} (${result.seconds.toFixed(1)} s)\n`)
}

console.log(`Soak: ${OPS.toLocaleString('en-US')} operations per primitive, Node ${process.version}`)
console.log('heap = heapUsed after a full GC, medians of the first and last third of the samples (MB)')
console.log('')
console.log('| primitive | ops | time (s) | samples | heap first → last | RSS first → last | result |')
console.log('|---|---|---|---|---|---|---|')
for (const r of results) {
  const heap = `${MB(r.heap.first)} → ${MB(r.heap.last)}${r.heap.ok ? '' : ' GREW'}`
  const rss = `${MB(r.rss.first)} → ${MB(r.rss.last)}${r.rss.ok ? '' : ' GREW'}`
  console.log(
    `| ${r.label} | ${r.ops.toLocaleString('en-US')} | ${r.seconds.toFixed(1)} | ${r.samples} | ${heap} | ${rss} | ${r.ok ? 'flat' : 'FAIL'} |`,
  )
}
const failed = results.filter((r) => !r.ok)
if (failed.length) {
  console.log(`\nsoak FAILED: ${failed.map((r) => r.label).join(', ')} grew`)
  process.exitCode = 1
} else {
  console.log('\nsoak passed: heap and RSS flat for every primitive')
}
