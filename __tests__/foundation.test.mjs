import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Worker } from 'node:worker_threads'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const native = require('../lib/native.js')
const { codes, BulkheadError, isBulkheadError } = require('../lib/errors.js')

function runWorker(workerData) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./fixtures/counter-worker.mjs', import.meta.url), { workerData })
    let message
    worker.once('message', (m) => (message = m))
    worker.once('error', reject)
    worker.once('exit', (code) => (code === 0 ? resolve(message) : reject(new Error(`worker exited ${code}`))))
  })
}

test('the addon loads in the main thread', () => {
  assert.equal(native.boundaryAdd(2, 3), 5)
  assert.equal(native.__napiBindingTarget, 'native')
})

test('the addon loads in a worker_thread', async () => {
  const result = await runWorker({ name: 'load-check', times: 1 })
  assert.equal(result.value, 1)
})

test('a named instance in Rust is shared by the main thread and two workers', async () => {
  const counter = new native.NamedCounter('shared-by-threads')
  counter.add(100)
  await Promise.all([
    runWorker({ name: 'shared-by-threads', times: 1000 }),
    runWorker({ name: 'shared-by-threads', times: 1000 }),
  ])
  assert.equal(counter.value, 2100)
  counter.close()
})

test('a named instance lives while any thread holds it and is freed after the last close', async () => {
  const before = native.NamedCounter.liveCount()
  const counter = new native.NamedCounter('lifetime')
  assert.equal(native.NamedCounter.liveCount(), before + 1)
  await runWorker({ name: 'lifetime', times: 5 })
  assert.equal(counter.value, 5, 'the worker closed its handle, the main thread still holds one')
  counter.close()
  assert.equal(native.NamedCounter.liveCount(), before)
  const fresh = new native.NamedCounter('lifetime')
  assert.equal(fresh.value, 0)
  fresh.close()
})

test('a worker that exits without closing its handle leaks no named instance', async () => {
  const before = native.NamedCounter.liveCount()
  await runWorker({ name: 'left-open-by-worker', times: 3, leaveOpen: true })
  // The worker's handle is finalized when its environment is torn down.
  assert.equal(native.NamedCounter.liveCount(), before)
})

test('an error made in Rust reaches JS with its stable code', () => {
  assert.throws(() => new native.NamedCounter(''), {
    code: 'ERR_INVALID_ARG',
    message: 'name must be a non-empty string',
  })
  const counter = new native.NamedCounter('closed-check')
  counter.close()
  assert.throws(() => counter.add(1), (err) => {
    assert.ok(err instanceof Error)
    assert.equal(err.code, codes.CLOSED)
    assert.ok(isBulkheadError(err))
    return true
  })
})

test('the JS and Rust lists of error codes agree', () => {
  assert.deepEqual(Object.values(codes), native.errorCodes())
})

test('BulkheadError carries a known code and refuses an unknown one', () => {
  const err = new BulkheadError(codes.QUEUE_FULL, 'full')
  assert.ok(err instanceof Error)
  assert.equal(err.name, 'BulkheadError')
  assert.equal(err.code, 'ERR_QUEUE_FULL')
  assert.ok(isBulkheadError(err))
  assert.ok(!isBulkheadError(new Error('plain')))
  assert.throws(() => new BulkheadError('ERR_NOPE', 'x'), TypeError)
})

test('hand-registered Node-API functions check their arguments', () => {
  assert.equal(native.boundaryRawAdd(40, 2), 42)
  assert.equal(native.boundaryRawStrLen('héllo'), 6)
  assert.equal(native.boundaryRawNoop(), undefined)
  assert.throws(() => native.boundaryRawStrLen(1), { name: 'TypeError', message: 'rawStrLen: s must be a string' })
  assert.throws(() => native.boundaryRawAdd('a', {}), TypeError)
})
