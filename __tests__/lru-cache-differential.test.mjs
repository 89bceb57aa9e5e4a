// Differential test: seeded random operation sequences run on lru-cache 11
// (the peer) and on bulkhead's LRUCache side by side, with one fake `perf`
// clock, every hook recorded, and every return value, hook call, `size` and
// `calculatedSize` compared after every step. On a mismatch the sequence is
// shrunk to a minimal repro, which the failure message prints.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { LRUCache as Peer } from 'lru-cache'
import { LRUCache as Ours } from '../lib/lru-cache.js'

const SEQUENCES = Number(process.env.LRU_DIFF_SEQUENCES ?? 3000)
const STEPS = 60

function rng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// Shared key and value pools: object keys and values compare by identity.
const objectKeys = Array.from({ length: 4 }, (_, i) => ({ key: i }))
const objectValues = Array.from({ length: 6 }, (_, i) => ({ value: i }))
const keyPools = {
  string: Array.from({ length: 12 }, (_, i) => `key-${i}-${'x'.repeat(i % 4)}`),
  number: [0, -0, 1, 2, 3, 4.5, NaN, -1, 1e9, 7, 8, 9],
  object: [...objectKeys, 'k1', 'k2', 3, NaN, ...objectKeys],
}

function name(x) {
  const k = objectKeys.indexOf(x)
  if (k >= 0) return `objKey#${k}`
  const v = objectValues.indexOf(x)
  if (v >= 0) return `objVal#${v}`
  if (typeof x === 'number') return Object.is(x, -0) ? '-0' : String(x)
  return x
}

/** A comparable picture of a result (objects of the pools by name, statuses without `cache`). */
function picture(x, depth = 0) {
  if (x === undefined) return 'undefined'
  if (x === null || typeof x !== 'object') return name(x)
  if (objectKeys.includes(x) || objectValues.includes(x)) return name(x)
  if (depth > 4) return '...'
  if (Array.isArray(x)) return x.map((y) => picture(y, depth + 1))
  if (x instanceof Peer || x instanceof Ours) return 'cache'
  const o = {}
  for (const key of Object.keys(x).sort()) {
    if (key === 'cache') continue
    o[key] = picture(x[key], depth + 1)
  }
  return o
}

const sizeOf = (v) => (typeof v === 'number' ? (Math.abs(Math.floor(v)) % 6) + 1 : 3)

// Option sets over count, size, TTL, stale and dispose configurations.
const optionSets = [
  { name: 'count', make: () => ({ max: 5 }) },
  { name: 'count+hooks', make: (h) => ({ max: 7, dispose: h.dispose, disposeAfter: h.disposeAfter, onInsert: h.onInsert }) },
  { name: 'count+noDisposeOnSet', make: (h) => ({ max: 4, dispose: h.dispose, disposeAfter: h.disposeAfter, noDisposeOnSet: true }) },
  { name: 'size', make: (h) => ({ maxSize: 20, sizeCalculation: sizeOf, dispose: h.dispose }) },
  // Without hooks, evictions through a crossing take a shorter path (victims unmapped in place).
  { name: 'size+count, no hooks', make: () => ({ max: 6, maxSize: 18, sizeCalculation: sizeOf }) },
  { name: 'ttl+size, no hooks', make: (h) => ({ maxSize: 20, sizeCalculation: sizeOf, ttl: 7, ttlResolution: 0, perf: h.perf }) },
  { name: 'size+count+maxEntrySize', make: (h) => ({ max: 6, maxSize: 18, maxEntrySize: 5, sizeCalculation: sizeOf, dispose: h.dispose, onInsert: h.onInsert }) },
  { name: 'ttl', make: (h) => ({ max: 6, ttl: 10, ttlResolution: 0, perf: h.perf, dispose: h.dispose }) },
  {
    name: 'ttl+stale',
    make: (h) => ({
      max: 6,
      ttl: 10,
      ttlResolution: 0,
      perf: h.perf,
      allowStale: true,
      noDeleteOnStaleGet: true,
      updateAgeOnGet: true,
      updateAgeOnHas: true,
      dispose: h.dispose,
      disposeAfter: h.disposeAfter,
    }),
  },
  {
    name: 'ttl+size+noUpdateTTL',
    make: (h) => ({ maxSize: 25, sizeCalculation: sizeOf, ttl: 7, ttlResolution: 0, perf: h.perf, noUpdateTTL: true, dispose: h.dispose }),
  },
  {
    name: 'ttl+autopurge+size',
    make: (h) => ({ max: 6, maxSize: 24, sizeCalculation: sizeOf, ttl: 9, ttlAutopurge: true, ttlResolution: 0, perf: h.perf, dispose: h.dispose, onInsert: h.onInsert }),
  },
  { name: 'ttl+autopurge', make: (h) => ({ max: 5, ttl: 6, ttlAutopurge: true, ttlResolution: 0, perf: h.perf, dispose: h.dispose }) },
  { name: 'per-entry-ttl', make: (h) => ({ max: 8, ttlResolution: 0, perf: h.perf, allowStale: true, dispose: h.dispose }) },
  { name: 'ttl-only', make: (h) => ({ ttl: 8, ttlResolution: 0, perf: h.perf, dispose: h.dispose, onInsert: h.onInsert }) },
  { name: 'memo', make: (h) => ({ max: 5, memoMethod: h.memoMethod, dispose: h.dispose }) },
]

/** Generates one random operation, as plain data (so a repro can be printed). */
function genOp(rand, keys, set) {
  const key = () => Math.floor(rand() * keys.length)
  const value = () => (rand() < 0.2 ? { obj: Math.floor(rand() * objectValues.length) } : 1 + Math.floor(rand() * 40))
  const maybe = (p, f) => (rand() < p ? f() : undefined)
  const r = rand()
  const ttlish = set.includes('ttl')
  if (r < 0.3) {
    const opts = {}
    if (rand() < 0.15) opts.status = true
    if (ttlish || set === 'per-entry-ttl') maybe(0.3, () => (opts.ttl = Math.floor(rand() * 15)))
    if (set.includes('size')) maybe(0.2, () => (opts.size = 1 + Math.floor(rand() * 7)))
    maybe(0.05, () => (opts.noDisposeOnSet = true))
    maybe(0.05, () => (opts.noUpdateTTL = true))
    return { op: 'set', key: key(), value: rand() < 0.03 ? 'undefined' : value(), opts }
  }
  if (r < 0.55) {
    const opts = {}
    maybe(0.15, () => (opts.status = true))
    maybe(0.1, () => (opts.allowStale = rand() < 0.5))
    maybe(0.1, () => (opts.updateAgeOnGet = true))
    maybe(0.05, () => (opts.noDeleteOnStaleGet = true))
    return { op: 'get', key: key(), opts }
  }
  if (r < 0.62) return { op: 'has', key: key(), opts: rand() < 0.2 ? { status: true, updateAgeOnHas: rand() < 0.5 } : {} }
  if (r < 0.67) return { op: 'peek', key: key(), opts: rand() < 0.2 ? { status: true, allowStale: true } : {} }
  if (r < 0.74) return { op: 'delete', key: key() }
  if (r < 0.77) return { op: 'pop' }
  if (r < 0.78) return { op: 'clear' }
  if (r < 0.84) return { op: 'advance', by: Math.floor(rand() * 6) }
  if (r < 0.86 && set === 'memo') return { op: 'memo', key: key(), opts: rand() < 0.3 ? { forceRefresh: true } : {} }
  const reads = ['keys', 'values', 'entries', 'rkeys', 'rvalues', 'rentries', 'forEach', 'rforEach', 'find', 'purgeStale', 'getRemainingTTL', 'info', 'dump', 'deleteWhileIterating']
  return { op: reads[Math.floor(rand() * reads.length)], key: key(), target: Math.floor(rand() * 40) }
}

function materialize(v) {
  if (v === 'undefined') return undefined
  if (v && typeof v === 'object') return objectValues[v.obj]
  return v
}

/** Applies `op` to `cache`, returning a picture of everything observable. */
function apply(cache, op, keys, clock) {
  const k = keys[op.key]
  const opts = op.opts ? { ...op.opts } : undefined
  if (opts?.status) opts.status = {}
  let result
  switch (op.op) {
    case 'set':
      result = cache.set(k, materialize(op.value), opts) === cache ? 'this' : 'other'
      break
    case 'get':
      result = cache.get(k, opts)
      break
    case 'has':
      result = cache.has(k, opts)
      break
    case 'peek':
      result = cache.peek(k, opts)
      break
    case 'delete':
      result = cache.delete(k)
      break
    case 'pop':
      result = cache.pop()
      break
    case 'clear':
      result = cache.clear()
      break
    case 'advance':
      clock.t += op.by
      result = clock.t
      break
    case 'memo':
      result = cache.memo(k, opts)
      break
    case 'keys':
    case 'values':
    case 'entries':
    case 'rkeys':
    case 'rvalues':
    case 'rentries':
      result = [...cache[op.op]()]
      break
    case 'forEach':
    case 'rforEach': {
      const seen = []
      cache[op.op]((v, key, c) => seen.push([v, key, c === cache]))
      result = seen
      break
    }
    case 'deleteWhileIterating': {
      // a common pattern: walk the entries and delete some of them on the way
      // (not the least recently used one: lru-cache then yields a key twice)
      const seen = []
      const lru = cache.rkeys().next().value
      for (const [key, v] of cache.entries()) {
        seen.push(key)
        if ((typeof v !== 'number' || v % 2 === 1) && !Object.is(key, lru)) seen.push(cache.delete(key))
      }
      result = seen
      break
    }
    case 'find':
      result = cache.find((v) => typeof v === 'number' && v > op.target)
      break
    case 'purgeStale':
      result = cache.purgeStale()
      break
    case 'getRemainingTTL':
      result = cache.getRemainingTTL(k)
      break
    case 'info': {
      const info = cache.info(k)
      if (info) delete info.start // a Date.now() reading
      result = info
      break
    }
    case 'dump':
      result = cache.dump().map(([key, e]) => [key, { ...e, start: undefined }])
      break
    default:
      throw new Error(`unknown op ${op.op}`)
  }
  return { result: picture(result), status: picture(opts?.status) }
}

function makeSide(Cls, set, clock) {
  const log = []
  const hooks = {
    perf: { now: () => clock.t },
    dispose: (v, k, r) => log.push(['dispose', picture(v), picture(k), r]),
    disposeAfter: (v, k, r) => log.push(['disposeAfter', picture(v), picture(k), r]),
    onInsert: (v, k, r) => log.push(['onInsert', picture(v), picture(k), r]),
    memoMethod: (k, stale) => {
      log.push(['memoMethod', picture(k), picture(stale)])
      return typeof k === 'number' && !Number.isNaN(k) ? Math.abs(k) + 100 : 100
    },
  }
  const cache = new Cls(set.make(hooks))
  return { cache, log }
}

/** Runs `ops`; returns undefined when both sides agree, else the first mismatch. */
function run(setIndex, keyKind, ops, startTime) {
  const set = optionSets[setIndex]
  const keys = keyPools[keyKind]
  const clockA = { t: startTime }
  const clockB = { t: startTime }
  const a = makeSide(Peer, set, clockA)
  const b = makeSide(Ours, set, clockB)
  for (let i = 0; i < ops.length; i++) {
    const step = (side, clock) => {
      side.log.length = 0
      let out
      try {
        out = apply(side.cache, ops[i], keys, clock)
      } catch (err) {
        out = { threw: `${err.constructor.name}: ${err.message}` }
      }
      return { ...out, hooks: [...side.log], size: side.cache.size, calculatedSize: side.cache.calculatedSize }
    }
    const ra = step(a, clockA)
    const rb = step(b, clockB)
    const ja = JSON.stringify(ra)
    const jb = JSON.stringify(rb)
    if (ja !== jb) return { step: i, peer: ja, ours: jb }
  }
  return undefined
}

/** Shrinks a failing sequence: drops operations while it still fails. */
function shrink(setIndex, keyKind, ops, startTime) {
  let current = ops
  let changed = true
  while (changed) {
    changed = false
    for (let i = 0; i < current.length; i++) {
      const candidate = current.slice(0, i).concat(current.slice(i + 1))
      if (run(setIndex, keyKind, candidate, startTime)) {
        current = candidate
        changed = true
        break
      }
    }
  }
  return current
}

test(`lru-cache and bulkhead agree on ${SEQUENCES} seeded random sequences`, () => {
  const kinds = Object.keys(keyPools)
  let compared = 0
  for (let seed = 1; seed <= SEQUENCES; seed++) {
    const rand = rng(seed)
    const setIndex = seed % optionSets.length
    const keyKind = kinds[Math.floor(seed / optionSets.length) % kinds.length]
    const set = optionSets[setIndex].name
    const startTime = seed % 7 === 0 ? 0 : 1000
    const ops = Array.from({ length: STEPS }, () => genOp(rand, keyPools[keyKind], set))
    const failure = run(setIndex, keyKind, ops, startTime)
    if (failure) {
      const minimal = shrink(setIndex, keyKind, ops.slice(0, failure.step + 1), startTime)
      const again = run(setIndex, keyKind, minimal, startTime)
      assert.fail(
        `seed ${seed}, options '${set}', ${keyKind} keys, clock starts at ${startTime}\n` +
          `minimal repro (${minimal.length} ops):\n${minimal.map((o) => `  ${JSON.stringify(o)}`).join('\n')}\n` +
          `last step: peer ${again?.peer}\n           ours ${again?.ours}`,
      )
    }
    compared += ops.length
  }
  assert.equal(compared, SEQUENCES * STEPS)
})

// Auto-purge order, with mocked timers and the fake clock moved together.
// lru-cache arms one timer per entry (re-armed when its TTL restarts) and
// timers due together fire in the order they were armed; bulkhead keeps one
// timer per cache and must purge in that same order. (Before: entries that
// expired in the same millisecond were purged in slot order.)
test('ttlAutopurge purges in lru-cache order, ties in the order the TTLs were (re)started', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] })
  const keys = keyPools.string.slice(0, 8)
  const sets = [
    { max: 6, ttl: 5, ttlAutopurge: true },
    { max: 8, ttl: 4, ttlAutopurge: true, updateAgeOnGet: true, updateAgeOnHas: true },
    { ttl: 6, ttlAutopurge: true, allowStale: true, noDeleteOnStaleGet: true, updateAgeOnGet: true },
    { maxSize: 12, sizeCalculation: sizeOf, ttl: 3, ttlAutopurge: true, noUpdateTTL: true },
  ]
  const clock = { t: 1000 }
  const advance = (by, stepwise) => {
    // a jump fires everything due at once, as a late timer on a busy machine does
    if (stepwise) {
      for (let i = 0; i < by; i++) {
        clock.t += 1
        t.mock.timers.tick(1)
      }
    } else {
      clock.t += by
      t.mock.timers.tick(by)
    }
  }
  const SEQS = Math.max(50, Math.floor(SEQUENCES / 10))
  for (let seed = 1; seed <= SEQS; seed++) {
    const rand = rng(seed * 7919)
    const opts = sets[seed % sets.length]
    const sides = [Peer, Ours].map((Cls) => {
      const log = []
      const dispose = (v, k, r) => log.push([picture(v), k, r])
      const cache = new Cls({ ...opts, ttlResolution: 0, perf: { now: () => clock.t }, dispose })
      return { cache, log }
    })
    const trace = []
    for (let step = 0; step < 80; step++) {
      const r = rand()
      const k = keys[Math.floor(rand() * keys.length)]
      let op
      if (r < 0.4) {
        const ttl = rand() < 0.3 ? Math.floor(rand() * 8) : undefined
        op = ['set', k, step, ttl === undefined ? {} : { ttl }]
      } else if (r < 0.55) op = ['get', k, { updateAgeOnGet: rand() < 0.5 }]
      else if (r < 0.62) op = ['has', k, { updateAgeOnHas: rand() < 0.5 }]
      else if (r < 0.67) op = ['delete', k]
      else if (r < 0.68) op = ['clear']
      else op = ['advance', 1 + Math.floor(rand() * 4), rand() < 0.5]
      trace.push(op)
      for (const side of sides) side.log.length = 0
      // one clock for both: an advance fires both caches' timers
      if (op[0] === 'advance') advance(op[1], op[2])
      const seen = sides.map(({ cache, log }) => {
        const result = op[0] === 'advance' ? undefined : cache[op[0]](...structuredClone(op.slice(1)))
        return JSON.stringify({
          result: result === cache ? 'this' : picture(result),
          disposed: log,
          size: cache.size,
          keys: [...cache.rkeys()],
        })
      })
      if (seen[0] !== seen[1]) {
        assert.fail(`seed ${seed}, options ${JSON.stringify(opts)}\nops:\n${trace.map((o) => `  ${JSON.stringify(o)}`).join('\n')}\npeer ${seen[0]}\nours ${seen[1]}`)
      }
    }
    for (const { cache } of sides) cache.clear()
  }
})
