// What one crossing from JS into Rust costs, beside a JS Map.get, so every
// entry-point choice can cite a number (design.md, "the one rule").
//
// Set BULKHEAD_ALT_BINDING to another build of this crate's .node (for
// example one built with the latest napi / napi-derive) to measure both
// builds in the same run.
import { createRequire } from 'node:module'
import { compare, printTable, writeResults } from './harness.mjs'

const require = createRequire(import.meta.url)
const builds = { pinned: require('../lib/native.js') }
if (process.env.BULKHEAD_ALT_BINDING) builds.alt = require(process.env.BULKHEAD_ALT_BINDING)

const N = 2_000_000
let sink = 0

const keys = Array.from({ length: 100_000 }, (_, i) => `key:${String(i).padStart(12, '0')}`)
const map = new Map(keys.map((k, i) => [k, i]))

function perBuild(make) {
  return Object.fromEntries(Object.entries(builds).map(([label, b]) => [label, make(b)]))
}

const rows = []
rows.push(
  await compare(
    'JS Map.get, 16-char key, 100k entries',
    {
      pinned: (n) => {
        for (let i = 0; i < n; i++) sink += map.get(keys[i % 100_000])
      },
    },
    { iterations: N },
  ),
)
rows.push(
  await compare(
    '#[napi] fn noop',
    perBuild((b) => (n) => {
      for (let i = 0; i < n; i++) b.boundaryNoop()
    }),
    { iterations: N },
  ),
)
rows.push(
  await compare(
    'raw Node-API fn noop',
    perBuild((b) => (n) => {
      for (let i = 0; i < n; i++) b.boundaryRawNoop()
    }),
    { iterations: N },
  ),
)
rows.push(
  await compare(
    '#[napi] fn add(i32, i32)',
    perBuild((b) => (n) => {
      for (let i = 0; i < n; i++) sink += b.boundaryAdd(i, 1)
    }),
    { iterations: N },
  ),
)
rows.push(
  await compare(
    'raw Node-API fn add(i32, i32)',
    perBuild((b) => (n) => {
      for (let i = 0; i < n; i++) sink += b.boundaryRawAdd(i, 1)
    }),
    { iterations: N },
  ),
)
rows.push(
  await compare(
    '#[napi] class method -> u32',
    perBuild((b) => {
      const probe = new b.BoundaryProbe(7)
      return (n) => {
        for (let i = 0; i < n; i++) sink += probe.get()
      }
    }),
    { iterations: N },
  ),
)
rows.push(
  await compare(
    '#[napi] fn (String) -> u32, 16-char key',
    perBuild((b) => (n) => {
      for (let i = 0; i < n; i++) sink += b.boundaryStrLen(keys[i % 100_000])
    }),
    { iterations: N },
  ),
)
rows.push(
  await compare(
    'raw Node-API fn, 16-char string to stack buffer',
    perBuild((b) => (n) => {
      for (let i = 0; i < n; i++) sink += b.boundaryRawStrLen(keys[i % 100_000])
    }),
    { iterations: N },
  ),
)

printTable('Boundary cost (ns per call)', rows, { baseline: 'pinned' })
if (sink === 42) console.log('')
writeResults('boundary', { rows })
