// No panic crosses into Node (ARCHITECTURE.md "Panics"). The addon carries
// three inert probes that panic only while the environment variable
// BULKHEAD_PANIC_PROBE is "1": one in a `#[napi]` function, one in a class
// method and one in a hand-registered raw Node-API function. Each panic must
// reach JS as an Error with code ERR_INTERNAL, and the process (and the same
// instances) must keep working afterwards.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { Worker } from 'node:worker_threads'
import { createRequire } from 'node:module'
import { readdirSync, readFileSync } from 'node:fs'

const require = createRequire(import.meta.url)
const native = require('../lib/native.js')
const { codes, isBulkheadError } = require('../lib/errors.js')
const { LRUCache } = require('../lib/lru-cache.js')

const arm = () => (process.env.BULKHEAD_PANIC_PROBE = '1')
const disarm = () => delete process.env.BULKHEAD_PANIC_PROBE
after(disarm)

function assertInternal(fn, where) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof Error, 'a JS Error')
    assert.equal(err.code, 'ERR_INTERNAL')
    assert.equal(err.code, codes.INTERNAL)
    assert.ok(isBulkheadError(err))
    assert.match(err.message, /internal error in bulkhead/)
    assert.match(err.message, new RegExp(`panic probe: ${where.replace(/\./g, '\\.')}`))
    return true
  })
}

test('the probes are inert unless armed', () => {
  disarm()
  assert.equal(native.__panicProbe(), false)
  assert.equal(new native.BoundaryProbe(1).__panicProbe(), false)
  assert.equal(native.__panicProbeRaw(), false)
})

test('ERR_INTERNAL is in both code lists', () => {
  assert.ok(native.errorCodes().includes('ERR_INTERNAL'))
  assert.equal(codes.INTERNAL, 'ERR_INTERNAL')
})

test('a panic in a #[napi] function is an ERR_INTERNAL error and the process lives', () => {
  arm()
  try {
    for (let i = 0; i < 3; i++) assertInternal(() => native.__panicProbe(), '__panicProbe')
  } finally {
    disarm()
  }
  assert.equal(native.boundaryAdd(2, 3), 5)
  assert.equal(native.__panicProbe(), false)
})

test('a panic in a class method is an ERR_INTERNAL error and the instance still works', () => {
  const probe = new native.BoundaryProbe(7)
  arm()
  try {
    assertInternal(() => probe.__panicProbe(), 'BoundaryProbe.__panicProbe')
    assertInternal(() => probe.__panicProbe(), 'BoundaryProbe.__panicProbe')
  } finally {
    disarm()
  }
  assert.equal(probe.get(), 7)
  assert.equal(new native.BoundaryProbe(8).get(), 8)
})

test('a panic in a raw Node-API function is an ERR_INTERNAL error and the process lives', () => {
  arm()
  try {
    assertInternal(() => native.__panicProbeRaw(), '__panicProbeRaw')
  } finally {
    disarm()
  }
  assert.equal(native.boundaryRawAdd(2, 3), 5)
  assert.equal(native.__panicProbeRaw(), false)
})

test('after panics the primitives still work (a cache set/get round trip)', () => {
  arm()
  try {
    assert.throws(() => native.__panicProbe(), { code: 'ERR_INTERNAL' })
    assert.throws(() => native.__panicProbeRaw(), { code: 'ERR_INTERNAL' })
  } finally {
    disarm()
  }
  const cache = new LRUCache({ max: 2 })
  cache.set('a', 1).set('b', 2).set('c', 3)
  assert.equal(cache.get('a'), undefined)
  assert.equal(cache.get('c'), 3)
})

test('a panic in a worker_thread reaches that worker as ERR_INTERNAL; the worker lives', async () => {
  arm() // the worker reads the real process environment
  try {
    const source = `
      const { parentPort } = require('node:worker_threads')
      const native = require(${JSON.stringify(require.resolve('../lib/native.js'))})
      const seen = []
      for (const call of [() => native.__panicProbe(), () => native.__panicProbeRaw(),
                          () => new native.BoundaryProbe(1).__panicProbe()]) {
        try { call(); seen.push('no error') } catch (err) { seen.push(err.code) }
      }
      parentPort.postMessage({ seen, after: native.boundaryAdd(20, 22) })
    `
    const result = await new Promise((resolve, reject) => {
      const worker = new Worker(source, { eval: true })
      let message
      worker.once('message', (m) => (message = m))
      worker.once('error', reject)
      worker.once('exit', (code) => (code === 0 ? resolve(message) : reject(new Error(`worker exited ${code}`))))
    })
    assert.deepEqual(result, { seen: ['ERR_INTERNAL', 'ERR_INTERNAL', 'ERR_INTERNAL'], after: 42 })
  } finally {
    disarm()
  }
  // The main thread's own environment is still the one the hook throws into.
  arm()
  try {
    assertInternal(() => native.__panicProbe(), '__panicProbe')
  } finally {
    disarm()
  }
})

// The rule holds for entry points added later too: every `#[napi]` function
// in the glue says `catch_unwind`, and every hand-registered `extern "C"`
// callback and every class `Drop` (run by a finalizer) runs its body in
// `guard::raw` or `guard::quiet` (guard.rs's own env-cleanup hook cannot
// panic and is the one exception).
test('every entry point in src/js is guarded (source check)', () => {
  const dir = new URL('../src/js/', import.meta.url)
  const files = readdirSync(dir).filter((f) => f.endsWith('.rs'))
  const unguarded = []
  let napiFns = 0
  let rawFns = 0
  let drops = 0
  for (const file of files) {
    const lines = readFileSync(new URL(file, dir), 'utf8').split('\n')
    for (let i = 0; i < lines.length; i++) {
      if (/^\s*#\[napi\b/.test(lines[i])) {
        let attr = lines[i]
        let j = i
        while (!attr.trimEnd().endsWith(']')) attr += lines[++j]
        let k = j + 1
        while (/^\s*(#\[|\/\/)/.test(lines[k])) k++
        const isFn = /^\s*(pub(\(crate\))?\s+)?(unsafe\s+)?fn\s/.test(lines[k])
        if (isFn && !attr.includes('module_exports')) {
          napiFns++
          if (!attr.includes('catch_unwind')) unguarded.push(`${file}:${i + 1} ${lines[k].trim()}`)
        }
      }
      if (/^impl Drop for /.test(lines[i])) {
        drops++
        if (!lines.slice(i + 1, i + 5).some((l) => /^\s*guard::quiet\(\|\| \{$/.test(l))) unguarded.push(`${file}:${i + 1} ${lines[i].trim()}`)
      }
      if (/^unsafe extern "C" fn /.test(lines[i]) && !lines[i].includes('fn forget_env(')) {
        rawFns++
        let k = i
        while (!lines[k].trimEnd().endsWith('{')) k++
        if (!/^\s*guard::(raw\(\w+, \|\| \{|quiet\(\|\| \{)$/.test(lines[k + 1])) {
          unguarded.push(`${file}:${i + 1} ${lines[i].trim()}`)
        }
      }
    }
  }
  assert.ok(napiFns > 80, `found ${napiFns} #[napi] functions`)
  assert.ok(rawFns > 25, `found ${rawFns} raw callbacks`)
  assert.ok(drops >= 5, `found ${drops} Drop impls`)
  assert.deepEqual(unguarded, [])
})
