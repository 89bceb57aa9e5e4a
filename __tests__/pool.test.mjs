import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { WorkerPool } from '../lib/pool.js'
import * as esm from '../lib/pool.mjs'

const echo = fileURLToPath(new URL('./fixtures/pool-echo.js', import.meta.url))
const esmTask = new URL('./fixtures/pool-esm.mjs', import.meta.url)

function makePool(options = {}) {
  return new WorkerPool({ filename: echo, minThreads: 1, maxThreads: 2, ...options })
}

// Node 20 has no `await using`: destroy each test's pool when the test ends.
function track(t, pool) {
  t.after(() => pool.destroy())
  return pool
}

async function rejectsWith(promise, code) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.code, code, `${err.code}: ${err.message}`)
    return true
  })
}

test('the ESM entry exports the same class', () => {
  assert.equal(esm.WorkerPool, WorkerPool)
})

test('runs tasks and returns structured-clone results of every kind', async (t) => {
  const pool = track(t, makePool())
  const values = [42, -0.5, 'text \ud800 lone surrogate', true, false, null, undefined, 10n, { a: [1, { b: 2 }] }, new Map([[1, 2]]), Buffer.from('xyz'), new Date(0)]
  for (const v of values) assert.deepEqual(await pool.run(v), v)
  // Large payloads take the no-copy path out of Rust, both ways.
  const big = Buffer.alloc(200_000, 7)
  assert.deepEqual(await pool.run(big), big)
  assert.equal(await pool.run({ a: 2, b: 3 }, { name: 'add' }), 5)
  assert.equal(await pool.run(21, { name: 'asyncDouble' }), 42)
})

test('loads ESM and CommonJS modules by path or file:// URL, default or named export', async (t) => {
  const pool = track(t, makePool({ filename: esmTask }))
  assert.equal(await pool.run(7), 49)
  assert.equal(await pool.run('ann', { name: 'greet' }), 'hello ann')
  assert.equal(await pool.run(3, { filename: esmTask.href }), 9)
  assert.equal(await pool.run({ a: 1, b: 1 }, { filename: new URL(`file://${echo}`), name: 'add' }), 2)
  await assert.rejects(pool.run(1, { name: 'missing' }), /does not export a function named "missing"/)
})

test('a task that throws rejects with its error: class, message, code and stack kept', async (t) => {
  const pool = track(t, makePool())
  await assert.rejects(pool.run('bad', { name: 'throwTyped' }), (err) => {
    assert.ok(err instanceof TypeError)
    assert.equal(err.message, 'bad')
    assert.equal(err.code, 'E_TASK')
    assert.match(err.stack, /pool-echo\.js/)
    return true
  })
  // The pool is still healthy.
  assert.equal(await pool.run(1), 1)
})

test('a result that cannot be cloned rejects, the pool goes on', async (t) => {
  const pool = track(t, makePool())
  await assert.rejects(pool.run(() => 1), /could not be cloned/)
  await assert.rejects(pool.run(null, { name: 'returnsFunction' }), /could not be cloned/)
  assert.equal(await pool.run(2), 2)
})

test('option validation matches piscina messages', () => {
  const cases = [
    [{ filename: 1 }, TypeError, 'options.filename must be a string or null'],
    [{ name: 1 }, TypeError, 'options.name must be a string or null'],
    [{ minThreads: -1 }, TypeError, 'options.minThreads must be a non-negative integer'],
    [{ minThreads: '1' }, TypeError, 'options.minThreads must be a non-negative integer'],
    [{ maxThreads: 0 }, TypeError, 'options.maxThreads must be a positive integer'],
    [{ minThreads: 3, maxThreads: 2 }, RangeError, 'options.minThreads and options.maxThreads must not conflict'],
    [{ idleTimeout: -1 }, TypeError, 'options.idleTimeout must be a non-negative integer'],
    [{ maxQueue: 'lots' }, TypeError, 'options.maxQueue must be a non-negative integer'],
    [{ concurrentTasksPerWorker: 0 }, TypeError, 'options.concurrentTasksPerWorker must be a positive integer'],
    [{ resourceLimits: 1 }, TypeError, 'options.resourceLimits must be an object'],
    [{ taskTimeout: -5 }, TypeError, 'options.taskTimeout must be a non-negative number'],
    [{ execArgv: 'x' }, TypeError, 'options.execArgv must be an array'],
    [{ niceIncrement: -1 }, TypeError, 'options.niceIncrement must be a non-negative integer on Unix systems'],
  ]
  for (const [opts, type, message] of cases) {
    assert.throws(() => new WorkerPool(opts), (err) => err instanceof type && err.message === message)
  }
  assert.throws(() => new WorkerPool(null), TypeError)
})

test('run() argument validation matches piscina', async (t) => {
  const pool = track(t, makePool())
  await assert.rejects(pool.run(1, null), { name: 'TypeError', message: 'options must be an object' })
  await assert.rejects(pool.run(1, { transferList: 1 }), { message: 'transferList argument must be an Array' })
  await assert.rejects(pool.run(1, { filename: 1 }), { message: 'filename argument must be a string' })
  await assert.rejects(pool.run(1, { name: 1 }), { message: 'name argument must be a string' })
  await assert.rejects(pool.run(1, { signal: 1 }), { message: 'signal argument must be an object' })
  await assert.rejects(pool.run(1, { timeout: -1 }), TypeError)
  await assert.rejects(pool.run(1, { queueTimeout: 'x' }), TypeError)
  const nofile = new WorkerPool({ minThreads: 0, maxThreads: 1 })
  await rejectsWith(nofile.run(1), 'ERR_INVALID_ARG')
  await nofile.destroy()
})

test('defaults: min/max threads from the CPU count, maxQueue 1024 per thread, auto and Infinity accepted', async () => {
  const pool = new WorkerPool({ filename: echo, minThreads: 0, maxThreads: 3 })
  assert.equal(pool.options.maxQueue, 3 * 1024)
  assert.equal(pool.options.idleTimeout, 0)
  assert.equal(pool.options.concurrentTasksPerWorker, 1)
  await pool.destroy()
  const auto = new WorkerPool({ filename: echo, minThreads: 0, maxThreads: 3, maxQueue: 'auto' })
  assert.equal(auto.options.maxQueue, 9)
  await auto.destroy()
  const inf = new WorkerPool({ filename: echo, minThreads: 0, maxThreads: 1, maxQueue: Infinity })
  assert.equal(inf.options.maxQueue, Infinity)
  await inf.destroy()
  const d = new WorkerPool({ filename: echo, minThreads: 0 })
  assert.ok(d.options.maxThreads >= 1)
  await d.destroy()
  // Like piscina, any number in range is accepted; fractions are floored.
  const frac = new WorkerPool({ filename: echo, minThreads: 0.5, maxThreads: 2.5, concurrentTasksPerWorker: 1.5 })
  assert.deepEqual([frac.options.minThreads, frac.options.maxThreads, frac.options.concurrentTasksPerWorker], [0, 2, 1])
  assert.equal(await frac.run(3), 3)
  await frac.destroy()
})

test('a full queue rejects with ERR_QUEUE_FULL at once, and drain fires when it empties', async (t) => {
  const pool = track(t, makePool({ minThreads: 1, maxThreads: 1, maxQueue: 2 }))
  const running = [pool.run(50, { name: 'spin' }), pool.run(1), pool.run(2)]
  await rejectsWith(pool.run(3), 'ERR_QUEUE_FULL')
  assert.equal(pool.needsDrain, true)
  const drained = new Promise((resolve) => pool.once('drain', resolve))
  assert.deepEqual(await Promise.all(running), [50, 1, 2])
  await drained
  assert.equal(pool.stats().rejected, 1)
})

test('maxQueue 0 accepts only what a worker can take at once', async (t) => {
  const pool = track(t, makePool({ minThreads: 1, maxThreads: 1, maxQueue: 0 }))
  const first = pool.run(30, { name: 'spin' })
  await rejectsWith(pool.run(1), 'ERR_QUEUE_FULL')
  assert.equal(await first, 30)
})

test('aborting a queued task rejects it with ERR_ABORTED and it never runs', async (t) => {
  const pool = track(t, makePool({ minThreads: 1, maxThreads: 1 }))
  const busy = pool.run(100, { name: 'spin' })
  const ac = new AbortController()
  const queued = pool.run(1, { signal: ac.signal })
  ac.abort(new Error('changed my mind'))
  await assert.rejects(queued, (err) => err.code === 'ERR_ABORTED' && err.cause.message === 'changed my mind')
  assert.equal(await busy, 100)
  assert.equal(pool.stats().aborted, 1)
  // An already-aborted signal rejects at once.
  await rejectsWith(pool.run(1, { signal: AbortSignal.abort() }), 'ERR_ABORTED')
})

test('aborting a running task fires its signal in the worker; the worker is kept when it returns', async (t) => {
  // A long grace period: on a loaded machine the worker may take a while to see the abort.
  const pool = track(t, makePool({ minThreads: 1, maxThreads: 1, abortGrace: 10_000 }))
  await pool.run(0)
  const ac = new AbortController()
  const before = pool.threads[0]
  const task = pool.run(null, { name: 'waitForAbort', signal: ac.signal })
  await new Promise((resolve) => setTimeout(resolve, 100))
  ac.abort()
  await rejectsWith(task, 'ERR_ABORTED')
  assert.equal(await pool.run(5), 5)
  assert.equal(pool.threads[0], before, 'same worker: it returned within the grace period')
})

test('a running task that ignores abort is terminated after the grace period and replaced', async (t) => {
  const pool = track(t, makePool({ minThreads: 1, maxThreads: 1, abortGrace: 50 }))
  await pool.run(0)
  const before = pool.threads[0]
  const ac = new AbortController()
  const task = pool.run(null, { name: 'forever', signal: ac.signal })
  await new Promise((resolve) => setTimeout(resolve, 50))
  ac.abort()
  await rejectsWith(task, 'ERR_ABORTED')
  assert.equal(await pool.run(6), 6)
  assert.notEqual(pool.threads[0], before, 'the stuck worker was replaced')
})

test('timeout bounds the running time only; queueTimeout bounds the wait', async (t) => {
  const pool = track(t, makePool({ minThreads: 1, maxThreads: 1, abortGrace: 50 }))
  await pool.run(0)
  // Waits ~300 ms in the queue behind `busy`, then runs 20 ms: a 200 ms run timeout does not fire.
  const busy = pool.run(300, { name: 'spin' })
  const waited = pool.run(20, { name: 'spin', timeout: 200 })
  const expires = pool.run(1, { queueTimeout: 30 })
  await rejectsWith(expires, 'ERR_TIMEOUT')
  assert.equal(await busy, 300)
  assert.equal(await waited, 20)
  // A task running past its timeout rejects, and its signal fires.
  await rejectsWith(pool.run(null, { name: 'waitForAbort', timeout: 50 }), 'ERR_TIMEOUT')
  // A task stuck past the timeout and the grace period: the worker is replaced.
  await rejectsWith(pool.run(null, { name: 'forever', timeout: 50 }), 'ERR_TIMEOUT')
  assert.equal(await pool.run(3), 3)
  assert.equal(pool.stats().timedOut, 3)
})

test('taskTimeout is the default timeout', async (t) => {
  const pool = track(t, makePool({ minThreads: 1, maxThreads: 1, taskTimeout: 150, abortGrace: 50 }))
  await rejectsWith(pool.run(null, { name: 'waitForAbort' }), 'ERR_TIMEOUT')
  assert.equal(await pool.run(10, { name: 'spin' }), 10)
  // A per-run timeout replaces it; Infinity means none.
  assert.equal(await pool.run(80, { name: 'sleep', timeout: Infinity }), 80)
  assert.equal(await pool.run(60, { name: 'sleep', timeout: 500, queueTimeout: Infinity }), 60)
})

test('process.exit in a task rejects with ERR_WORKER_EXITED and the pool recovers (tinypool 2.2 hangs here)', async (t) => {
  const pool = track(t, makePool({ minThreads: 1, maxThreads: 1 }))
  await assert.rejects(pool.run(3, { name: 'exit' }), (err) => {
    assert.equal(err.code, 'ERR_WORKER_EXITED')
    assert.match(err.message, /code 3/)
    return true
  })
  assert.equal(await pool.run(1), 1)
  assert.equal(pool.stats().workerExits, 1)
})

test('an uncaught error in a worker rejects its task with ERR_WORKER_EXITED, cause attached', async (t) => {
  const pool = track(t, makePool({ minThreads: 1, maxThreads: 1 }))
  await assert.rejects(pool.run(null, { name: 'uncaught' }), (err) => {
    assert.equal(err.code, 'ERR_WORKER_EXITED')
    assert.equal(err.cause.message, 'uncaught in worker')
    return true
  })
  assert.equal(await pool.run(2), 2)
})

test('a worker killed by resourceLimits (OOM) rejects with ERR_WORKER_EXITED and is replaced', async (t) => {
  const pool = track(t, makePool({
    minThreads: 1,
    maxThreads: 1,
    resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 },
  }))
  await rejectsWith(pool.run(null, { name: 'oom' }), 'ERR_WORKER_EXITED')
  assert.equal(await pool.run(4), 4)
})

test('workers that cannot start fail queued tasks instead of hanging', async () => {
  const pool = makePool({ minThreads: 0, maxThreads: 1, execArgv: ['--no-such-node-flag'] })
  await rejectsWith(pool.run(1), 'ERR_WORKER_EXITED')
  await pool.destroy()
})

test('workerData, argv, execArgv, env and isWorkerThread reach the worker', async (t) => {
  const pool = track(t, makePool({
    workerData: { hello: 'there' },
    argv: ['a1'],
    execArgv: ['--no-warnings'],
    env: { POOL_TEST_VALUE: 'v' },
  }))
  const seen = await pool.run(null, { name: 'env' })
  assert.deepEqual(seen, {
    isWorkerThread: true,
    workerData: { hello: 'there' },
    argv: ['a1'],
    execArgv: ['--no-warnings'],
    envValue: 'v',
  })
  assert.equal(WorkerPool.isWorkerThread, false)
  assert.equal(WorkerPool.workerData, undefined)
})

test('concurrentTasksPerWorker runs several async tasks in one worker at once', async (t) => {
  const pool = track(t, makePool({ minThreads: 1, maxThreads: 1, concurrentTasksPerWorker: 4 }))
  await pool.run(0)
  const seen = await Promise.all([1, 2, 3, 4].map(() => pool.run(300, { name: 'overlap' })))
  // Each task reports the most tasks it saw in flight in its worker: all four at once.
  assert.equal(Math.max(...seen), 4)
  assert.equal(pool.threads.length, 1)
  // With the default of 1, a worker holds one task at a time.
  const single = track(t, makePool({ minThreads: 1, maxThreads: 1 }))
  const one = await Promise.all([1, 2].map(() => single.run(50, { name: 'overlap' })))
  assert.equal(Math.max(...one), 1)
})

test('grows to maxThreads under load and idle workers beyond minThreads retire after idleTimeout', async (t) => {
  const pool = track(t, makePool({ minThreads: 1, maxThreads: 3, idleTimeout: 50 }))
  await Promise.all([1, 2, 3].map(() => pool.run(60, { name: 'spin' })))
  assert.equal(pool.stats().spawned, 3)
  const deadline = Date.now() + 5000
  while (pool.threads.length > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  assert.equal(pool.threads.length, 1)
  assert.equal(await pool.run(1), 1)
})

test('close() finishes queued work, then stops; new runs are refused', async () => {
  const pool = makePool({ minThreads: 1, maxThreads: 1 })
  const tasks = [pool.run(30, { name: 'spin' }), pool.run(1), pool.run(2)]
  const closed = pool.close()
  await rejectsWith(pool.run(3), 'ERR_CLOSED')
  assert.deepEqual(await Promise.all(tasks), [30, 1, 2])
  await closed
  assert.equal(pool.threads.length, 0)
})

test('destroy() rejects queued and running tasks with ERR_CLOSED and terminates', async () => {
  const pool = makePool({ minThreads: 1, maxThreads: 1 })
  await pool.run(0)
  const running = pool.run(null, { name: 'forever' })
  const queued = pool.run(1)
  await new Promise((resolve) => setTimeout(resolve, 30))
  const settled = [rejectsWith(running, 'ERR_CLOSED'), rejectsWith(queued, 'ERR_CLOSED')]
  await pool.destroy()
  await Promise.all(settled)
  assert.equal(pool.threads.length, 0)
  await rejectsWith(pool.run(1), 'ERR_CLOSED')
  await pool.close()
})

test('stats() and friends report counts and wait/run-time histograms', async (t) => {
  const pool = track(t, makePool({ minThreads: 1, maxThreads: 1 }))
  await Promise.all([pool.run(20, { name: 'spin' }), pool.run(1)])
  await assert.rejects(pool.run('x', { name: 'throwTyped' }))
  const s = pool.stats()
  assert.equal(s.submitted, 3)
  assert.equal(s.completed, 3)
  assert.equal(s.failed, 1)
  assert.equal(s.runTime.count, 3)
  assert.ok(s.runTime.max >= 19, `run time max ${s.runTime.max}`)
  assert.ok(s.waitTime.max >= 15, `second task waited behind the first: ${s.waitTime.max}`)
  assert.ok(s.runTime.p50 <= s.runTime.p90 && s.runTime.p90 <= s.runTime.p99)
  assert.equal(pool.completed, 3)
  assert.equal(pool.queueSize, 0)
  assert.ok(pool.utilization > 0 && pool.utilization <= 1)
})

test('soak: 10k tasks all correct, thread count back to baseline', async () => {
  const pool = makePool({ minThreads: 1, maxThreads: 2, idleTimeout: 20, maxQueue: Infinity })
  const results = await Promise.all(Array.from({ length: 10_000 }, (_, i) => pool.run(i % 3 === 0 ? { i } : i)))
  results.forEach((r, i) => assert.deepEqual(r, i % 3 === 0 ? { i } : i))
  const deadline = Date.now() + 5000
  while (pool.threads.length > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  assert.equal(pool.threads.length, 1)
  const s = pool.stats()
  assert.equal(s.completed, 10_000)
  assert.equal(s.queued + s.running, 0)
  await pool.close()
})

test('an idle pool that is never closed does not keep the process alive', () => {
  const fixture = fileURLToPath(new URL('./fixtures/pool-idle-exit.mjs', import.meta.url))
  const child = spawnSync(process.execPath, [fixture], { encoding: 'utf8', timeout: 20_000 })
  assert.equal(child.signal, null, 'the process exited by itself')
  assert.equal(child.status, 0, child.stderr)
  assert.match(child.stdout, /result 7/)
})

test('queued tasks keep running while the main thread is blocked', async (t) => {
  const pool = track(t, makePool({ minThreads: 2, maxThreads: 2 }))
  await Promise.all([pool.run(0), pool.run(0)])
  const tasks = Array.from({ length: 200 }, () => pool.run(1, { name: 'spin' }))
  // Block this thread until 100 tasks are done (or a generous deadline):
  // without the main thread's help, the workers took them from Rust.
  const deadline = Date.now() + 20_000
  while (pool.stats().completed < 102 && Date.now() < deadline);
  assert.ok(pool.stats().completed >= 102, `completed during the block: ${pool.stats().completed}`)
  // ... and their promises settle once this thread is free again.
  assert.equal((await Promise.all(tasks)).length, 200)
})

test('soak: heap and threads return to baseline after 30k tasks (child process with --expose-gc)', () => {
  const fixture = fileURLToPath(new URL('./fixtures/pool-heap-soak.mjs', import.meta.url))
  const child = spawnSync(process.execPath, ['--expose-gc', fixture], { encoding: 'utf8', timeout: 60_000 })
  assert.equal(child.status, 0, child.stderr)
  const { before, after, threadsAfter } = JSON.parse(child.stdout.trim().split('\n').pop())
  assert.equal(threadsAfter, 1, 'idle workers beyond minThreads retired')
  // 30k settled tasks leave nothing behind: under 1 MiB of growth (30k leaked entries would be several MiB).
  assert.ok(after - before < 1024 * 1024, `heap grew by ${after - before} bytes`)
})

test('transferList moves ArrayBuffers and views: the sender is detached, the worker gets the bytes', async (t) => {
  const pool = track(t, makePool({ minThreads: 1, maxThreads: 1 }))
  const ab = new ArrayBuffer(8)
  new Uint8Array(ab).fill(1)
  const u16 = new Uint16Array(4).fill(2)
  const big = Buffer.alloc(1 << 20, 3)
  const view = new Uint8Array(new ArrayBuffer(16), 4, 8).fill(5)
  const copied = new Uint8Array([9, 9])
  const seen = await pool.run({ ab, u16, big, view, copied }, { name: 'describe', transferList: [ab, u16, big, view.buffer] })
  assert.deepEqual(seen, {
    ab: { type: 'ArrayBuffer', byteLength: 8, sum: 8 },
    u16: { type: 'Uint16Array', byteLength: 8, sum: 8 },
    big: { type: 'Buffer', byteLength: 1 << 20, sum: 3 << 20 },
    view: { type: 'Uint8Array', byteLength: 8, sum: 40 },
    copied: { type: 'Uint8Array', byteLength: 2, sum: 18 },
  })
  assert.deepEqual([ab.byteLength, u16.byteLength, big.byteLength, view.byteLength], [0, 0, 0, 0])
  assert.equal(copied.byteLength, 2, 'what is not in transferList is copied')
  // A pooled (untransferable) Buffer is copied instead, and still arrives intact.
  const small = Buffer.from('hi')
  assert.deepEqual(await pool.run({ small }, { name: 'describe', transferList: [small] }), {
    small: { type: 'Buffer', byteLength: 2, sum: 209 },
  })
  assert.equal(small.toString(), 'hi')
})

test("a worker that fails while running no task emits 'error' (with a listener) and is replaced", async (t) => {
  const pool = track(t, makePool({ minThreads: 1, maxThreads: 1 }))
  const failed = new Promise((resolve) => pool.once('error', resolve))
  // An idle pool holds no ref on the event loop: keep the test process up.
  const keep = setTimeout(() => {}, 10_000)
  assert.equal(await pool.run(null, { name: 'lateThrow' }), 'returned first')
  assert.equal((await failed).message, 'late failure')
  clearTimeout(keep)
  assert.equal(await pool.run(8), 8)
})

test('the constructor name option picks the default export name; threads are Worker objects', async (t) => {
  const pool = track(t, makePool({ name: 'add' }))
  assert.equal(await pool.run({ a: 2, b: 2 }), 4)
  assert.equal(await pool.run(9, { name: 'default' }), 9)
  const { Worker } = await import('node:worker_threads')
  assert.ok(pool.threads.length >= 1 && pool.threads.every((w) => w instanceof Worker))
})

test('close({ force: true }) destroys; Symbol.asyncDispose closes', async () => {
  const forced = makePool({ minThreads: 1, maxThreads: 1 })
  await forced.run(0)
  const running = forced.run(null, { name: 'forever' })
  const settled = rejectsWith(running, 'ERR_CLOSED')
  await forced.close({ force: true })
  await settled
  await assert.rejects(forced.close({ force: 'yes' }), { message: 'force argument must be a boolean' })
  const disposed = makePool({ minThreads: 1, maxThreads: 1 })
  const task = disposed.run(20, { name: 'spin' })
  await disposed[Symbol.asyncDispose]()
  assert.equal(await task, 20)
  assert.equal(disposed.threads.length, 0)
})

test('niceIncrement lowers the worker threads\' priority (Linux), not the main thread\'s', { skip: process.platform !== 'linux' }, async (t) => {
  const pool = track(t, makePool({ minThreads: 1, maxThreads: 1, niceIncrement: 3 }))
  const { getPriority } = await import('node:os')
  const main = getPriority()
  assert.equal(await pool.run(null, { name: 'nice' }), Math.min(main + 3, 19))
  assert.equal(getPriority(), main)
})

test('a closed or destroyed pool is garbage collected (no native reference keeps it alive)', () => {
  const fixture = fileURLToPath(new URL('./fixtures/pool-collect.mjs', import.meta.url))
  const child = spawnSync(process.execPath, ['--expose-gc', fixture], { encoding: 'utf8', timeout: 60_000 })
  assert.equal(child.status, 0, child.stderr)
  assert.match(child.stdout, /collected 4/)
})

test('an async task that looks at its signal only after the abort still sees it aborted', async (t) => {
  const pool = track(t, makePool({ minThreads: 1, maxThreads: 1 }))
  await pool.run(0)
  const ac = new AbortController()
  const task = pool.run(null, { name: 'lateSignal', signal: ac.signal })
  await new Promise((resolve) => setTimeout(resolve, 50))
  ac.abort()
  await rejectsWith(task, 'ERR_ABORTED')
  await new Promise((resolve) => setTimeout(resolve, 200))
  assert.equal(await pool.run(null, { name: 'lastLateSignal' }), true)
})

test('an EventEmitter-style signal (piscina accepts one) aborts a queued task', async (t) => {
  const { EventEmitter } = await import('node:events')
  const pool = track(t, makePool({ minThreads: 1, maxThreads: 1 }))
  const busy = pool.run(60, { name: 'spin' })
  const emitter = Object.assign(new EventEmitter(), { aborted: false })
  const queued = pool.run(1, { signal: emitter })
  emitter.aborted = true
  emitter.emit('abort')
  await rejectsWith(queued, 'ERR_ABORTED')
  assert.equal(await busy, 60)
  assert.equal(emitter.listenerCount('abort'), 0, 'listener removed once settled')
})

test('churn: busy pools closed and destroyed mid-flight settle every promise and let the process exit', () => {
  const fixture = fileURLToPath(new URL('./fixtures/pool-churn.mjs', import.meta.url))
  const child = spawnSync(process.execPath, [fixture], { encoding: 'utf8', timeout: 60_000 })
  assert.equal(child.signal, null, 'exited by itself')
  assert.equal(child.status, 0, child.stderr)
  assert.match(child.stdout, /settled 3600 of 3600/)
})
