// LRUCache (bulkhead) against lru-cache 11 in the same process, interleaved:
// 100k entries, string keys of 16-30 characters, random access order.
// Each row runs without and with a TTL (60 s, so nothing expires mid-run).
import { createRequire } from 'node:module'
import { compare, printTable, rankOf, writeResults } from './harness.mjs'

const require = createRequire(import.meta.url)
const { LRUCache: Ours } = require('../lib/lru-cache.js')
const { LRUCache: Peer } = require('lru-cache')

const classes = { bulkhead: Ours, 'lru-cache': Peer }
const N = 100_000
const ITER = 1_000_000
let sink = 0

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
const rand = rng(42)
const makeKey = (prefix, i) => {
  const base = `${prefix}:${i.toString(36)}:`
  const len = 16 + Math.floor(rand() * 15)
  return (base + 'abcdefghijklmnopqrstuvwxyz0123456789').slice(0, Math.max(len, base.length))
}
const keys = Array.from({ length: 2 * N }, (_, i) => makeKey('user', i)) // [0, N) live, [N, 2N) fresh
const missKeys = Array.from({ length: N }, (_, i) => makeKey('miss', i))
const order = Uint32Array.from({ length: ITER }, () => Math.floor(rand() * N))

// Zipf(s = 1) over 2N keys (the cache holds N): hot keys hit, the tail misses and is set.
const zipf = (() => {
  const M = 2 * N
  const cdf = new Float64Array(M)
  let sum = 0
  for (let i = 0; i < M; i++) cdf[i] = sum += 1 / (i + 1)
  const out = new Uint32Array(ITER)
  const ops = new Uint8Array(ITER)
  for (let j = 0; j < ITER; j++) {
    out[j] = rankOf(cdf, rand() * sum)
    ops[j] = rand() < 0.9 ? 0 : 1
  }
  return { out, ops }
})()

const filled = (Cls, opts) => {
  const c = new Cls(opts)
  for (let i = 0; i < N; i++) c.set(keys[i], i)
  return c
}

const rows = []
for (const ttl of [0, 60_000]) {
  const opts = ttl ? { max: N, ttl } : { max: N }
  const tag = ttl ? ' (ttl)' : ''
  const caches = { bulkhead: filled(Ours, opts), 'lru-cache': filled(Peer, opts) }
  const per = (f) => Object.fromEntries(Object.entries(caches).map(([label, c]) => [label, f(c, label)]))

  rows.push(
    await compare(
      `get-hit${tag}`,
      per((c) => (n) => {
        for (let i = 0; i < n; i++) sink += c.get(keys[order[i % ITER]])
      }),
      { iterations: ITER },
    ),
  )
  rows.push(
    await compare(
      `get-miss${tag}`,
      per((c) => (n) => {
        for (let i = 0; i < n; i++) if (c.get(missKeys[order[i % ITER]]) === undefined) sink++
      }),
      { iterations: ITER },
    ),
  )
  // peek finds the value like get but keeps no recency: get - peek is what
  // keeping the LRU order exact costs (bulkhead: the access log and its replay).
  rows.push(
    await compare(
      `peek (get without recency)${tag}`,
      per((c) => (n) => {
        for (let i = 0; i < n; i++) sink += c.peek(keys[order[i % ITER]])
      }),
      { iterations: ITER },
    ),
  )
  rows.push(
    await compare(
      `has${tag}`,
      per((c) => (n) => {
        for (let i = 0; i < n; i++) if (c.has(keys[order[i % ITER]])) sink++
      }),
      { iterations: ITER },
    ),
  )
  rows.push(
    await compare(
      `set-fill${tag}`,
      Object.fromEntries(
        Object.entries(classes).map(([label, Cls]) => [
          label,
          (n) => {
            let c
            for (let i = 0; i < n; i++) {
              if (i % N === 0) c = new Cls(opts)
              c.set(keys[i % N], i)
            }
            sink += c.size
          },
        ]),
      ),
      { iterations: N * 4 },
    ),
  )
  let next = { bulkhead: 0, 'lru-cache': 0 }
  rows.push(
    await compare(
      `set-with-eviction${tag}`,
      per((c, label) => (n) => {
        let j = next[label]
        for (let i = 0; i < n; i++) {
          c.set(keys[j], i)
          j = j + 1 === 2 * N ? 0 : j + 1
        }
        next[label] = j
      }),
      { iterations: ITER },
    ),
  )
  const mix = { bulkhead: filled(Ours, opts), 'lru-cache': filled(Peer, opts) }
  rows.push(
    await compare(
      `zipf 90/10 get/set${tag}`,
      Object.fromEntries(
        Object.entries(mix).map(([label, c]) => [
          label,
          (n) => {
            const { out, ops } = zipf
            for (let i = 0; i < n; i++) {
              const j = i % ITER
              const k = keys[out[j]]
              if (ops[j] === 0) sink += c.get(k) ?? 0
              else c.set(k, j)
            }
          },
        ]),
      ),
      { iterations: ITER },
    ),
  )
  next = undefined
}

// Writes the way a service makes them: the cache starts empty and grows (a
// new cache per 100k sets, so lazy growth and first crossings are timed),
// keys are built per call from a request id (fresh strings, hashed on first
// use), values are of mixed types (an object, a string, a number), with and
// without ttl, maxSize + sizeCalculation, and dispose. Then the same once
// the cache is full, where every write evicts.
const VALUE_KINDS = 3
const valueFor = (i) => {
  const kind = i % VALUE_KINDS
  return kind === 0 ? { id: i, name: 'user' } : kind === 1 ? `value ${i & 1023}` : i
}
const sizeOf = (v) => (typeof v === 'object' ? 64 : typeof v === 'string' ? v.length : 8)
let disposed = 0
const SERVICE = [
  ['plain', { max: N }],
  ['ttl', { max: N, ttl: 60_000 }],
  ['maxSize + sizeCalculation', { max: N, maxSize: N * 32, sizeCalculation: sizeOf }],
  ['dispose', { max: N, dispose: () => { disposed++ } }],
]
let request = 0 // keys never repeat across runs: each set builds a new string
for (const [what, opts] of SERVICE) {
  rows.push(
    await compare(
      `service fill from empty, keys built per call (${what})`,
      Object.fromEntries(Object.entries(classes).map(([label, Cls]) => [label, (n) => {
        let c
        for (let i = 0; i < n; i++) {
          if (i % N === 0) c = new Cls(opts)
          const id = request++
          c.set(`session:${id}:${id & 63}`, valueFor(id))
        }
        sink += c.size
      }])),
      { iterations: N * 4 },
    ),
  )
  const full = Object.fromEntries(Object.entries(classes).map(([label, Cls]) => {
    const c = new Cls(opts)
    for (let i = 0; i < N; i++) c.set(`warm:${label}:${i}`, valueFor(i))
    return [label, c]
  }))
  rows.push(
    await compare(
      `service writes into a full cache, keys built per call (${what})`,
      Object.fromEntries(Object.entries(full).map(([label, c]) => [label, (n) => {
        for (let i = 0; i < n; i++) {
          const id = request++
          c.set(`session:${id}:${id & 63}`, valueFor(id))
        }
      }])),
      { iterations: ITER },
    ),
  )
}
sink += disposed > 0 ? 1 : 0

printTable('LRUCache vs lru-cache (100k entries, 16-30 char string keys)', rows, { baseline: 'bulkhead' })
writeResults('lru-cache', { rows, sink: sink > 0 })
