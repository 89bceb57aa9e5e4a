// "Leak-safe by default": bulkhead's own classes are bounded without being
// told to be, reject misspelt options, keep the process alive while a caller
// waits on a deadline, and throw errors that point at the cause.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import { Limiter, pLimit } from '../lib/p-limit.mjs'
import { SingleFlight } from '../lib/single-flight.mjs'
import { WorkerPool } from '../lib/pool.mjs'
import { LRUCache } from '../index.mjs'
import { BulkheadError } from '../lib/errors.mjs'

const fixture = (name) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url))
const never = () => new Promise(() => {})
function deferred() {
  let resolve
  const promise = new Promise((r) => (resolve = r))
  return { promise, resolve }
}

test('Limiter: maxPending defaults to 1024; Infinity opts out', async () => {
  const limiter = new Limiter({ concurrency: 1 })
  const gate = deferred()
  const tasks = [limiter.run(() => gate.promise)]
  for (let i = 0; i < 1024; i++) tasks.push(limiter.run(() => i))
  await assert.rejects(limiter.run(() => 'one too many'), { code: 'ERR_QUEUE_FULL', message: /maxPending: 1024/ })
  gate.resolve()
  await Promise.all(tasks)
  const unbounded = new Limiter({ concurrency: 1, maxPending: Infinity })
  const many = Array.from({ length: 3000 }, (_, i) => unbounded.run(() => i))
  assert.equal(unbounded.pendingCount, 2999)
  assert.equal((await Promise.all(many)).length, 3000)
})

test('pLimit keeps p-limit’s unbounded queue', async () => {
  const limit = pLimit(1)
  const all = Array.from({ length: 5000 }, (_, i) => limit(async () => i))
  assert.equal(limit.pendingCount, 4999)
  assert.equal((await Promise.all(all)).length, 5000)
})

test('Limiter: a task still waiting after queueTimeout rejects with ERR_TIMEOUT naming the limiter', async () => {
  const limiter = new Limiter({ concurrency: 1, queueTimeout: 30, name: 'db' })
  const gate = deferred()
  const first = limiter.run(() => gate.promise)
  await assert.rejects(limiter.run(() => 'late'), {
    code: 'ERR_TIMEOUT',
    message: 'Limiter "db": the task waited 30 ms for a permit (queueTimeout) and was dropped',
  })
  // The running task is not bound by the queue-wait deadline.
  await new Promise((resolve) => setTimeout(resolve, 50))
  gate.resolve('first')
  assert.equal(await first, 'first')
  await limiter.close()
})

test('an awaited run() with a timeout rejects at its deadline in a script with nothing else to do', () => {
  for (const mode of ['run', 'queue']) {
    const child = spawnSync(process.execPath, [fixture('limiter-deadline-child.mjs'), mode], { encoding: 'utf8', timeout: 30_000 })
    assert.equal(child.status, 0, `${mode}: exit ${child.status} ${child.stderr}`)
    const out = JSON.parse(child.stdout)
    assert.equal(out.code, 'ERR_TIMEOUT', mode)
    assert.ok(out.ms >= 190, `${mode}: rejected after ${out.ms} ms`)
    // The stack reaches the caller's run() (async stack trace).
    assert.match(out.stack, /at async caller \(.*limiter-deadline-child\.mjs:\d+:\d+\)/, mode)
    assert.match(out.message, /the Limiter created at .*limiter-deadline-child\.mjs:\d+:\d+/, mode)
  }
})

test('Limiter: every task gets its signal, whatever its parameter list; none is made if it is not used', async () => {
  const limiter = new Limiter({ concurrency: 1, timeout: 30 })
  let seen
  const call = limiter.run((...args) => {
    seen = args[0]
    return never()
  })
  await assert.rejects(call, { code: 'ERR_TIMEOUT' })
  assert.ok(seen instanceof AbortSignal)
  assert.equal(seen.aborted, true)
  assert.equal(seen.reason.code, 'ERR_TIMEOUT')
  // The timed-out task still holds its permit (fn never settles): a fresh limiter.
  const other = new Limiter({ concurrency: 1 })
  let destructured
  await other.run(({ signal } = {}) => {
    destructured = signal
  })
  assert.equal(Object.getPrototypeOf(destructured), AbortSignal.prototype, 'a real AbortSignal, for fetch()')
  let unused
  await other.run((signal) => {
    unused = signal
  })
  assert.equal(unused.materialized, false)
})

test('unknown options are an ERR_INVALID_ARG naming the key and the option meant', () => {
  const cases = [
    [() => new Limiter({ concurrency: 5, timeot: 100 }), 'timeot', 'timeout'],
    [() => new Limiter({ concurrency: 5, maxpending: 1 }), 'maxpending', 'maxPending'],
    [() => new SingleFlight({ timout: 100 }), 'timout', 'timeout'],
    [() => new SingleFlight().do('k', () => 1, { sigal: undefined }), 'sigal', 'signal'],
    [() => new WorkerPool({ filename: fixture('pool-echo.js'), maxThread: 1 }), 'maxThread', 'maxThreads'],
    [() => new LRUCache({ name: 'defaults-unknown', max: 10, tll: 5 }), 'tll', 'ttl'],
  ]
  for (const [make, key, meant] of cases) {
    assert.throws(make, (err) => {
      assert.ok(err instanceof BulkheadError)
      assert.equal(err.code, 'ERR_INVALID_ARG')
      assert.match(err.message, new RegExp(`unknown option \`${key}\`.*did you mean \`${meant}\`\\?`))
      return true
    })
  }
  assert.throws(() => new Limiter({ concurrency: 1, zzzzzz: 1 }), /unknown option `zzzzzz`.*known options: concurrency/)
})

test('a misspelt run() option rejects (the promise), naming the option meant', async () => {
  const limiter = new Limiter({ concurrency: 1 })
  await assert.rejects(limiter.run(() => 1, { priorty: 1 }), { code: 'ERR_INVALID_ARG', message: /did you mean `priority`/ })
})

test('SingleFlight: maxKeys defaults to 10,000 flights at once', async () => {
  const group = new SingleFlight({ timeout: Infinity })
  const ends = []
  const calls = []
  for (let i = 0; i < 10_000; i++) {
    calls.push(group.do(i, () => new Promise((resolve) => ends.push(resolve))))
  }
  await assert.rejects(group.do('one more', () => 1), { code: 'ERR_QUEUE_FULL', message: /maxKeys: 10000/ })
  for (const end of ends) end()
  await Promise.all(calls)
  assert.equal(group.size, 0)
})

test('SingleFlight: detectRecursion catches an after-await self-call by default where it is cheap (Node 24+)', async () => {
  const major = Number(process.versions.node.split('.')[0])
  const group = new SingleFlight()
  const call = group.do('self', async () => {
    await null
    return group.do('self', () => 'inner')
  })
  if (major >= 24) {
    await assert.rejects(call, { code: 'ERR_RECURSIVE_FLIGHT' })
  } else {
    // Node 22: 'sync' by default (an enabled AsyncLocalStorage slows every await there).
    const timed = new SingleFlight({ timeout: 50 })
    await assert.rejects(
      timed.do('self', async () => {
        await null
        return timed.do('self', () => 'inner')
      }),
      { code: 'ERR_TIMEOUT' },
    )
    group.forget('self')
    call.catch(() => {})
  }
})

test('WorkerPool: maxThreads defaults to availableParallelism() - 1 (at least 1); minThreads never above it', async () => {
  const pool = new WorkerPool({ filename: fixture('pool-echo.js') })
  assert.equal(pool.maxThreads, Math.max(availableParallelism() - 1, 1))
  assert.ok(pool.minThreads >= 1 && pool.minThreads <= pool.maxThreads)
  await pool.destroy()
})

test('WorkerPool: a missing task module is reported at construction, naming the resolved path', () => {
  assert.throws(() => new WorkerPool({ filename: 'no-such-task-module.mjs' }), (err) => {
    assert.ok(err instanceof BulkheadError)
    assert.equal(err.code, 'ERR_INVALID_ARG')
    assert.match(err.message, /no task module at .*no-such-task-module\.mjs \(relative paths resolve against process\.cwd\(\)/)
    return true
  })
})

test('WorkerPool: a result that cannot be cloned back is ERR_DATA_CLONE', async () => {
  const pool = new WorkerPool({ filename: fixture('pool-unclonable.mjs'), maxThreads: 1 })
  try {
    await assert.rejects(pool.run(null), (err) => {
      assert.equal(err.code, 'ERR_DATA_CLONE')
      assert.ok(err instanceof BulkheadError)
      assert.match(err.message, /return value could not be cloned/)
      return true
    })
  } finally {
    await pool.destroy()
  }
})

test('every error a primitive throws is instanceof BulkheadError with a code', async () => {
  const cache = new LRUCache({ name: 'defaults-closed', max: 2 })
  cache.close()
  assert.throws(() => cache.get('a'), (err) => err instanceof BulkheadError && err.code === 'ERR_CLOSED')
  assert.throws(() => new WorkerPool({ maxThreads: -1 }), (err) => err instanceof TypeError && err instanceof BulkheadError)
  assert.throws(() => new SingleFlight().do({}, () => 1), (err) => err instanceof TypeError && err instanceof BulkheadError)
  // A user's own error is not one.
  assert.equal(new Error('x') instanceof BulkheadError, false)
  assert.equal(Object.assign(new Error('x'), { code: 'ENOENT' }) instanceof BulkheadError, false)
})
