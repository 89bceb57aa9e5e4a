// Named limiters: one process-wide limiter shared by worker_threads, its
// permits in Rust; a release in one thread starts the next waiter in
// whichever thread it waits (batched wake-ups through a weak thread-safe
// function per handle).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Worker } from 'node:worker_threads'
import { createRequire } from 'node:module'

import { Limiter } from 'bulkhead/p-limit'

const native = createRequire(import.meta.url)('../lib/native.js')
const fixture = new URL('./fixtures/p-limit-named-worker.mjs', import.meta.url)

function start(workerData) {
  const worker = new Worker(fixture, { workerData })
  const messages = []
  const waiters = []
  worker.on('message', (m) => {
    messages.push(m)
    while (waiters.length) waiters.shift()()
  })
  const exited = new Promise((resolve, reject) => {
    worker.once('error', reject)
    worker.once('exit', resolve)
  })
  const message = async () => {
    while (messages.length === 0) await new Promise((resolve) => waiters.push(resolve))
    return messages.shift()
  }
  return { worker, exited, message }
}

test('4 workers and the main thread never exceed the shared concurrency and lose no wake-up', { timeout: 60_000 }, async () => {
  const name = 'p-limit-named-shared'
  const concurrency = 3
  const shared = new SharedArrayBuffer(12)
  const counters = new Int32Array(shared)
  const main = new Limiter({ concurrency, name })
  const workers = Array.from({ length: 4 }, () => start({ name, concurrency, tasks: 150, shared, mode: 'run' }))
  const mine = Promise.all(
    Array.from({ length: 60 }, () =>
      main.run(async () => {
        const now = Atomics.add(counters, 0, 1) + 1
        if (now > Atomics.load(counters, 1)) Atomics.store(counters, 1, Math.max(now, Atomics.load(counters, 1)))
        await new Promise(setImmediate)
        Atomics.sub(counters, 0, 1)
        Atomics.add(counters, 2, 1)
      }),
    ),
  )
  for (const w of workers) assert.deepEqual(await w.message(), { done: 150 })
  await mine
  for (const w of workers) assert.equal(await w.exited, 0)
  assert.equal(Atomics.load(counters, 2), 4 * 150 + 60, 'every task ran')
  assert.ok(Atomics.load(counters, 1) <= concurrency, `peak ${Atomics.load(counters, 1)}`)
  assert.ok(Atomics.load(counters, 1) >= 2, 'threads really ran side by side')
  const stats = main.stats()
  assert.equal(stats.completed, 4 * 150 + 60, 'stats are process-wide')
  await main.close()
  assert.equal(native.NamedLimiter.liveCount(), 0, 'the last close frees the named limiter')
})

test('a terminated worker gives its permits back to the other threads', { timeout: 30_000 }, async () => {
  const name = 'p-limit-named-terminate'
  const main = new Limiter({ concurrency: 1, name })
  const holder = start({ name, concurrency: 1, mode: 'hold' })
  assert.deepEqual(await holder.message(), { holding: 1 })
  let ran = false
  const waiting = main.run(() => {
    ran = true
    return 'got the permit'
  })
  await new Promise((resolve) => setTimeout(resolve, 20))
  assert.equal(ran, false, 'the worker holds the only permit')
  await holder.worker.terminate()
  assert.equal(await waiting, 'got the permit')
  await main.close()
  assert.equal(native.NamedLimiter.liveCount(), 0, "the terminated worker's handle was freed too")
})

test('aborts and timeouts in several threads lose no wake-up and keep the bound', { timeout: 60_000 }, async () => {
  const name = 'p-limit-named-cancel'
  const concurrency = 2
  const shared = new SharedArrayBuffer(12)
  const counters = new Int32Array(shared)
  const workers = Array.from({ length: 3 }, () =>
    start({ name, concurrency, tasks: 120, shared, mode: 'cancel' }),
  )
  const reports = []
  for (const w of workers) reports.push(await w.message())
  for (const w of workers) assert.equal(await w.exited, 0)
  let settled = 0
  for (const report of reports) settled += report.fulfilled + report.timedOut + report.aborted
  assert.equal(settled, 3 * 120, 'every task settled one way or another')
  assert.ok(reports.some((r) => r.timedOut > 0) && reports.some((r) => r.aborted > 0), JSON.stringify(reports))
  assert.ok(Atomics.load(counters, 1) <= concurrency, `peak ${Atomics.load(counters, 1)}`)
  assert.equal(native.NamedLimiter.liveCount(), 0)
})

test('handles must agree on the options, and a name must be a non-empty string', async () => {
  const a = new Limiter({ concurrency: 2, name: 'p-limit-named-options' })
  assert.throws(() => new Limiter({ concurrency: 3, name: 'p-limit-named-options' }), {
    code: 'ERR_INVALID_ARG',
    message: "a limiter named 'p-limit-named-options' exists with other options (concurrency, maxPending or rate)",
  })
  assert.throws(() => new Limiter({ concurrency: 1, name: '' }), {
    code: 'ERR_INVALID_ARG',
    message: 'options.name must be a non-empty string',
  })
  const b = new Limiter({ concurrency: 2, name: 'p-limit-named-options' })
  // Two handles in one thread share the permits too: b waits for a's.
  let release
  const hold = new Promise((resolve) => (release = resolve))
  const first = a.run(() => hold)
  const second = a.run(() => hold)
  let bRan = false
  const third = b.run(() => (bRan = true))
  await new Promise(setImmediate)
  assert.equal(bRan, false)
  assert.equal(b.pendingCount, 1)
  release()
  await Promise.all([first, second, third])
  assert.equal(bRan, true)
  await Promise.all([a.close(), b.close()])
})

test('timeouts and aborts work on a named limiter', { timeout: 30_000 }, async () => {
  const keepAlive = setInterval(() => {}, 1000)
  try {
    const a = new Limiter({ concurrency: 1, name: 'p-limit-named-timeouts' })
    const b = new Limiter({ concurrency: 1, name: 'p-limit-named-timeouts' })
    let release
    const running = a.run(() => new Promise((resolve) => (release = resolve)))
    const late = b.run(() => 'never', { timeout: 20 })
    await assert.rejects(late, { code: 'ERR_TIMEOUT' })
    const controller = new AbortController()
    const aborted = b.run(() => 'never', { signal: controller.signal })
    controller.abort()
    await assert.rejects(aborted, { code: 'ERR_ABORTED' })
    release('ok')
    assert.equal(await running, 'ok')
    assert.equal(await b.run(() => 'next'), 'next')
    const stats = a.stats()
    assert.equal(stats.timedOut, 1)
    assert.equal(stats.aborted, 1)
    await Promise.all([a.close(), b.close()])
  } finally {
    clearInterval(keepAlive)
  }
})
