// The CI version of the soak (issue 9): bench/soak.mjs with 300,000
// operations per primitive (SOAK_OPS to change it), 33x fewer than
// `npm run soak`: 1M per primitive took ~100 s on the 2-core CI-like machine,
// over this file's budget. Runs in a child process with
// --expose-gc. It fails if heapUsed after GC or RSS grows for any primitive
// (see bench/soak.mjs for the flatness rule).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const script = fileURLToPath(new URL('../bench/soak.mjs', import.meta.url))
const OPS = process.env.SOAK_OPS ?? '300000'

test(`soak: every primitive stays flat through ${OPS} operations`, { timeout: 240_000 }, () => {
  // RSS slack 32 MB: in a run this short RSS moves ~10 MB as the allocator
  // and V8 settle (a fresh-clone CI run saw pLimit go 76 -> 89 MB in 0.9 s
  // with its heap flat at 4.0 -> 4.1 MB). A native leak of ~110 B per
  // operation or more still fails; heap after GC keeps its 1 MB slack.
  const child = spawnSync(process.execPath, ['--expose-gc', script, '--ops', OPS, '--rss-slack-mb', '32'], {
    encoding: 'utf8',
    timeout: 230_000,
  })
  const output = `${child.stdout}\n${child.stderr}`
  assert.equal(child.signal, null, `soak was killed (${child.signal}):\n${output}`)
  assert.equal(child.status, 0, `soak failed:\n${output}`)
  const rows = child.stdout.split('\n').filter((line) => /\| flat \|$/.test(line))
  assert.equal(rows.length, 7, `a flat row for each of the 7 primitives:\n${output}`)
  assert.match(child.stdout, /soak passed/)
})
