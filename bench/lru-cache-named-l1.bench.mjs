// An experiment, not a feature: what a per-thread L1 of decoded values in
// front of a named LRUCache would buy one thread's `get`, against the named
// cache alone and lru-cache (docs/performance.md, named cache (c)).
//
// The L1 here is an upper bound of such a design: a JS Map of up to `cap`
// strings per thread (first in, first out), emptied whenever a version word
// in shared memory changes (every write to the named cache would bump it, so
// another thread's write is never missed). It leaves out what a real one
// must also pay for: reporting its hits to the store (without it, the hottest
// keys look least recently used and are evicted first), TTL checks, and stats.
//
// Three access patterns over 100k entries of 200-byte strings: uniform (the
// (c) row's), Zipf (s = 1, hot keys), and Zipf with every tenth operation a
// write (which bumps the version, as a coherent L1 must).
import { createRequire } from 'node:module'
import { compare, printTable, rankOf, writeResults } from './harness.mjs'

const require = createRequire(import.meta.url)
const { NamedLRUCache } = require('../lib/lru-cache-named.js')
const { LRUCache } = require('lru-cache')

const ENTRIES = 100_000
const OPS = 1 << 20 // a pattern's length (a power of two, for the index mask)
const value200 = 'v'.repeat(200)
const keys = Array.from({ length: ENTRIES }, (_, i) => `key:${String(i).padStart(12, '0')}`)
const local = new LRUCache({ max: ENTRIES })
const named = new NamedLRUCache({ name: 'bench-l1', max: ENTRIES })
for (const k of keys) {
  local.set(k, value200)
  named.set(k, value200)
}

// The version word every write bumps (Atomics, as another thread would see it).
const version = new Int32Array(new SharedArrayBuffer(4))
const write = (k) => {
  named.set(k, value200)
  Atomics.add(version, 0, 1)
}

/** A `get` through an L1 of at most `cap` decoded values. */
function withL1(cap) {
  let l1 = new Map()
  const ring = new Array(cap) // insertion order, for first-in-first-out removal
  let pos = 0
  let seen = 0
  return (k) => {
    const now = Atomics.load(version, 0)
    if (now !== seen) {
      l1 = new Map() // (the ring's old keys are overwritten before they are needed again)
      seen = now
    }
    let v = l1.get(k)
    if (v !== undefined) return v
    v = named.get(k)
    if (v === undefined) return v
    if (l1.size >= cap) l1.delete(ring[pos])
    ring[pos] = k
    pos = pos + 1 === cap ? 0 : pos + 1
    l1.set(k, v)
    return v
  }
}

let seed = 42
const rand = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
  return seed / 4294967296
}
const uniform = Uint32Array.from({ length: OPS }, (_, i) => (i * 7) % ENTRIES)
const cdf = new Float64Array(ENTRIES)
let total = 0
for (let i = 0; i < ENTRIES; i++) cdf[i] = total += 1 / (i + 1)
const zipf = Uint32Array.from({ length: OPS }, () => rankOf(cdf, rand() * total))

const caps = [1024, 16_384, ENTRIES]
let sink = 0
const rows = []
for (const [what, order, writes] of [
  ['uniform', uniform, false],
  ['Zipf', zipf, false],
  ['Zipf, every 10th op a set', zipf, true],
]) {
  // One loop per subject (a shared one would make every call site in it
  // polymorphic and slow lru-cache down most).
  const mask = OPS - 1
  const subjects = writes
    ? {
        'lru-cache': (n) => {
          for (let i = 0; i < n; i++) {
            const k = keys[order[i & mask]]
            if (i % 10 === 9) local.set(k, value200)
            else sink += local.get(k).length
          }
        },
        'bulkhead named': (n) => {
          for (let i = 0; i < n; i++) {
            const k = keys[order[i & mask]]
            if (i % 10 === 9) named.set(k, value200)
            else sink += named.get(k).length
          }
        },
      }
    : {
        'lru-cache': (n) => {
          for (let i = 0; i < n; i++) sink += local.get(keys[order[i & mask]]).length
        },
        'bulkhead named': (n) => {
          for (let i = 0; i < n; i++) sink += named.get(keys[order[i & mask]]).length
        },
      }
  for (const cap of caps) {
    const get = withL1(cap)
    subjects[`named + L1 ${cap}`] = writes
      ? (n) => {
          for (let i = 0; i < n; i++) {
            const k = keys[order[i & mask]]
            if (i % 10 === 9) write(k)
            else sink += get(k).length
          }
        }
      : (n) => {
          for (let i = 0; i < n; i++) sink += get(keys[order[i & mask]]).length
        }
  }
  rows.push(await compare(`get, 200-byte strings, 100k entries, ${what}`, subjects, { iterations: 400_000 }))
}
printTable('A per-thread L1 in front of the named cache (upper bound; not a feature)', rows, { baseline: 'lru-cache' })

// What the largest L1 costs in V8 heap: every value decoded into it.
globalThis.gc?.()
const before = process.memoryUsage().heapUsed
const full = withL1(ENTRIES)
for (const k of keys) sink += full(k).length
globalThis.gc?.()
const l1HeapMB = (process.memoryUsage().heapUsed - before) / 1048576
sink += full(keys[0]).length // (keeps the L1 alive through the measurement)
console.log(`\nV8 heap of an L1 holding all ${ENTRIES.toLocaleString('en')} values: ${l1HeapMB.toFixed(1)} MB`)
if (sink === 0) throw new Error('nothing was read')
writeResults('lru-cache-named-l1', { l1HeapMB })
