// Tracing channels (node:diagnostics_channel) and the `label` option:
// docs/observability.md, "Tracing channels". Every test unsubscribes and
// unbinds what it added, so the rest of the suite runs with no subscriber.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import dc from 'node:diagnostics_channel'
import { AsyncLocalStorage } from 'node:async_hooks'
import { fileURLToPath } from 'node:url'
import { pLimit, limitFunction, Limiter } from '../lib/p-limit.js'
import { SingleFlight } from '../lib/single-flight.js'
import { WorkerPool } from '../lib/pool.js'
import { LRUCache } from '../lib/lru-cache.js'

const echo = fileURLToPath(new URL('./fixtures/pool-echo.js', import.meta.url))
const EVENTS = ['start', 'end', 'asyncStart', 'asyncEnd', 'error']

/**
 * Subscribes to every event of `name` for the rest of test `t`. Returns the
 * log: `{ event, context, snapshot }` per event, `snapshot` a copy of the
 * context's fields as they were when the event fired.
 */
function record(t, name, events = EVENTS) {
  const channel = dc.tracingChannel(name)
  const log = []
  const handlers = {}
  for (const event of EVENTS) {
    if (!events.includes(event)) continue
    handlers[event] = (context) => log.push({ event, context, snapshot: { ...context } })
  }
  channel.subscribe(handlers)
  t.after(() => channel.unsubscribe(handlers))
  return log
}

/** The events of the trace whose context is `context`, in order. */
function eventsOf(log, context) {
  return log.filter((entry) => entry.context === context).map((entry) => entry.event)
}

/** The distinct contexts of `log`, in the order their traces started. */
function contexts(log) {
  return [...new Set(log.map((entry) => entry.context))]
}

function deferred() {
  let resolve
  const promise = new Promise((r) => (resolve = r))
  return { promise, resolve }
}

/** Binds `store` to the start channel of `name` for the rest of test `t`: the store is `{ trace: context }`. */
function bind(t, name, store) {
  const start = dc.channel(`tracing:${name}:start`)
  start.bindStore(store, (context) => ({ trace: context }))
  t.after(() => start.unbindStore(store))
}

// ---- bulkhead:limiter ------------------------------------------------------

test('Limiter: one trace per run(), start/end then asyncStart/asyncEnd, with the limiter and task fields', async (t) => {
  const log = record(t, 'bulkhead:limiter')
  const limiter = new Limiter({ concurrency: 1, name: 'trace-limiter', label: 'api' })
  t.after(() => limiter.close())
  const gate = deferred()
  const before = performance.now()
  const first = limiter.run(() => gate.promise)
  const second = limiter.run(async () => 'second', { priority: 5, weight: 1 })
  // Both traces started and their synchronous part ended; nothing settled yet.
  const [a, b] = contexts(log)
  assert.deepEqual(eventsOf(log, a), ['start', 'end'])
  assert.deepEqual(eventsOf(log, b), ['start', 'end'])
  assert.deepEqual(log[0].snapshot, { label: 'api', name: 'trace-limiter', priority: 0, weight: 1, waitTime: undefined, runTime: undefined })
  assert.equal(b.priority, 5)
  await new Promise((resolve) => setTimeout(resolve, 20))
  gate.resolve('first')
  assert.equal(await first, 'first')
  assert.equal(await second, 'second')
  const elapsed = performance.now() - before
  assert.deepEqual(eventsOf(log, a), ['start', 'end', 'asyncStart', 'asyncEnd'])
  assert.deepEqual(eventsOf(log, b), ['start', 'end', 'asyncStart', 'asyncEnd'])
  // waitTime is known by asyncStart: the queued task waited behind the first one.
  const asyncStartOf = (context) => log.find((e) => e.context === context && e.event === 'asyncStart').snapshot
  assert.equal(asyncStartOf(b).result, 'second')
  assert.ok(asyncStartOf(a).waitTime >= 0 && asyncStartOf(a).waitTime < asyncStartOf(b).waitTime)
  assert.ok(asyncStartOf(b).waitTime >= 15, `waited ${asyncStartOf(b).waitTime} ms behind a task held 20 ms`)
  assert.ok(asyncStartOf(b).waitTime <= elapsed)
  // runTime too: the first task ran until its gate opened, 20 ms later.
  assert.ok(asyncStartOf(a).runTime >= 15, `ran ${asyncStartOf(a).runTime} ms`)
  assert.ok(asyncStartOf(b).runTime >= 0 && asyncStartOf(b).runTime < asyncStartOf(a).runTime)
  assert.ok(asyncStartOf(a).waitTime + asyncStartOf(a).runTime <= elapsed)
})

test('Limiter: a rejection, a full queue and bad options go to `error`', async (t) => {
  const log = record(t, 'bulkhead:limiter')
  const limiter = new Limiter({ concurrency: 1, maxPending: 0 })
  const boom = new Error('boom')
  const gate = deferred()
  const running = limiter.run(() => gate.promise)
  await assert.rejects(limiter.run(async () => {}), { code: 'ERR_QUEUE_FULL' })
  await assert.rejects(limiter.run(async () => {}, { weight: 0 }), { code: 'ERR_INVALID_ARG' })
  gate.resolve()
  await running
  await assert.rejects(
    limiter.run(async () => {
      throw boom
    }),
    boom,
  )
  const [, full, bad, failed] = contexts(log)
  assert.deepEqual(eventsOf(log, full), ['start', 'end', 'error', 'asyncStart', 'asyncEnd'])
  assert.equal(full.error.code, 'ERR_QUEUE_FULL')
  assert.equal(full.waitTime, undefined, 'a task that never started has no waitTime')
  assert.equal(full.runTime, undefined, 'nor runTime')
  assert.equal(bad.error.code, 'ERR_INVALID_ARG')
  assert.deepEqual(eventsOf(log, failed), ['start', 'end', 'error', 'asyncStart', 'asyncEnd'])
  assert.equal(failed.error, boom)
  assert.equal(typeof failed.waitTime, 'number')
  assert.equal(typeof failed.runTime, 'number', 'a task that rejected has its runTime')
  await limiter.close()
})

test('Limiter: a queue timeout goes to `error` with ERR_TIMEOUT', async (t) => {
  const log = record(t, 'bulkhead:limiter', ['error'])
  const limiter = new Limiter({ concurrency: 1 })
  const gate = deferred()
  const running = limiter.run(() => gate.promise)
  await assert.rejects(limiter.run(async () => {}, { queueTimeout: 5 }), { code: 'ERR_TIMEOUT' })
  gate.resolve()
  await running
  assert.equal(log.length, 1)
  assert.equal(log[0].context.error.code, 'ERR_TIMEOUT')
  await limiter.close()
})

test('Limiter and pLimit: a store bound with bindStore is seen inside fn, however late fn starts', async (t) => {
  const store = new AsyncLocalStorage()
  record(t, 'bulkhead:limiter', ['end'])
  bind(t, 'bulkhead:limiter', store)
  const limiter = new Limiter({ concurrency: 1 })
  const limit = pLimit(1)
  const gate = deferred()
  const seen = []
  const blockers = [limiter.run(() => gate.promise), limit(() => gate.promise)]
  // Outside any trace, no store.
  assert.equal(store.getStore(), undefined)
  const queued = [
    limiter.run(async () => {
      seen.push(['limiter', store.getStore()?.trace])
      await new Promise((resolve) => setTimeout(resolve, 1))
      seen.push(['limiter after await', store.getStore()?.trace])
    }),
    limit(async (x) => {
      seen.push(['pLimit', store.getStore()?.trace, x])
    }, 'arg'),
  ]
  await new Promise((resolve) => setTimeout(resolve, 5))
  assert.deepEqual(seen, [], 'the queued tasks wait for the blockers')
  gate.resolve()
  await Promise.all([...blockers, ...queued])
  const by = Object.fromEntries(seen.map(([where, ...rest]) => [where, rest]))
  assert.deepEqual(Object.keys(by).sort(), ['limiter', 'limiter after await', 'pLimit'])
  for (const [where, [trace]] of Object.entries(by)) {
    assert.equal(typeof trace, 'object', `${where}: the trace context is the store`)
    assert.equal(typeof trace.waitTime, 'number', `${where}: its waitTime is set when the task starts`)
  }
  assert.equal(by.limiter[0], by['limiter after await'][0], 'the same trace after an await')
  assert.equal(by.pLimit[1], 'arg')
  assert.notEqual(by.limiter[0], by.pLimit[0])
  await limiter.close()
})

test('pLimit and limitFunction: one trace per call, labelled, errors to `error`', async (t) => {
  const log = record(t, 'bulkhead:limiter')
  const limit = pLimit({ concurrency: 2, label: 'fetches' })
  const boom = new Error('boom')
  assert.equal(await limit(async (a, b) => a + b, 1, 2), 3)
  await assert.rejects(
    limit(() => {
      throw boom
    }),
    boom,
  )
  // p-limit's own TypeError for a non-function, traced as an error.
  await assert.rejects(limit(42), { name: 'TypeError', message: 'function_ is not a function' })
  const limited = limitFunction(async (x) => x * 2, { concurrency: 1, label: 'doubler' })
  assert.equal(await limited(21), 42)
  const [ok, threw, notFn, fromLimited] = contexts(log)
  assert.deepEqual(eventsOf(log, ok), ['start', 'end', 'asyncStart', 'asyncEnd'])
  assert.deepEqual({ ...ok, waitTime: typeof ok.waitTime, runTime: typeof ok.runTime }, {
    label: 'fetches',
    name: undefined,
    priority: 0,
    weight: 1,
    waitTime: 'number',
    runTime: 'number',
    result: 3,
  })
  assert.equal(typeof threw.runTime, 'number', 'a task that threw synchronously has its runTime')
  assert.equal(notFn.runTime, undefined, 'a non-function never ran')
  assert.deepEqual(eventsOf(log, threw), ['start', 'end', 'error', 'asyncStart', 'asyncEnd'])
  assert.equal(threw.error, boom)
  assert.equal(notFn.error.name, 'TypeError')
  assert.equal(fromLimited.label, 'doubler')
  assert.equal(fromLimited.result, 42)
})

test("a subscriber to one event alone turns tracing on; after unsubscribing, calls run untraced in the caller's context", async () => {
  const channel = dc.tracingChannel('bulkhead:limiter')
  const seen = []
  const handlers = { asyncEnd: (context) => seen.push(context) }
  channel.subscribe(handlers)
  const limiter = new Limiter({ concurrency: 1 })
  const limit = pLimit(1)
  await limiter.run(async () => 1)
  await limit(async () => 1)
  assert.equal(seen.length, 2)
  channel.unsubscribe(handlers)
  assert.equal(channel.hasSubscribers, false)
  // A channel-level subscriber to every event, added after the fact, sees nothing of
  // calls made while no one traced.
  const store = new AsyncLocalStorage()
  const inside = []
  await store.run('outer', async () => {
    await limiter.run(async () => inside.push(store.getStore()))
    await limit(async () => inside.push(store.getStore()))
  })
  assert.deepEqual(seen.length, 2)
  assert.deepEqual(inside, ['outer', 'outer'], "without a tracer, fn keeps the caller's context")
  await limiter.close()
})

// ---- bulkhead:single-flight -------------------------------------------------

test('SingleFlight: the leader and the joiners of a flight each get a trace that says which they are', async (t) => {
  const log = record(t, 'bulkhead:single-flight')
  const group = new SingleFlight({ label: 'users' })
  const gate = deferred()
  let runs = 0
  const calls = [
    group.do('u1', () => {
      runs++
      return gate.promise
    }),
    group.do('u1', () => runs++),
    group.doShared('u1', () => runs++),
  ]
  const [leader, joiner, sharer] = contexts(log)
  for (const context of [leader, joiner, sharer]) assert.deepEqual(eventsOf(log, context), ['start', 'end'])
  // joined/leader are known by `end`.
  const endOf = (context) => log.find((e) => e.context === context && e.event === 'end').snapshot
  assert.deepEqual(endOf(leader), { label: 'users', name: undefined, key: 'u1', joined: false, leader: true })
  assert.deepEqual(endOf(joiner), { label: 'users', name: undefined, key: 'u1', joined: true, leader: false })
  assert.equal(endOf(sharer).joined, true)
  gate.resolve('value')
  assert.deepEqual(await Promise.all(calls), ['value', 'value', { value: 'value', shared: true }])
  assert.equal(runs, 1)
  for (const context of [leader, joiner, sharer]) {
    assert.deepEqual(eventsOf(log, context), ['start', 'end', 'asyncStart', 'asyncEnd'])
  }
  assert.equal(leader.result, 'value')
  assert.deepEqual(sharer.result, { value: 'value', shared: true })
})

test('SingleFlight: a failed flight, a timeout, a recursive call and a bad key go to `error`', async (t) => {
  const log = record(t, 'bulkhead:single-flight')
  const group = new SingleFlight({ detectRecursion: 'sync' })
  const boom = new Error('boom')
  await assert.rejects(
    Promise.all([
      group.do('k', async () => {
        throw boom
      }),
      group.do('k', () => 'never runs'),
    ]),
    boom,
  )
  await assert.rejects(
    group.do('slow', () => new Promise(() => {}), { timeout: 5 }),
    { code: 'ERR_TIMEOUT' },
  )
  await assert.rejects(
    group.do('self', () => group.do('self', () => 1)),
    { code: 'ERR_RECURSIVE_FLIGHT' },
  )
  assert.throws(() => group.do(null, () => 1), { name: 'TypeError' })
  const all = contexts(log)
  const [leader, joiner, slow, outer, inner, badKey] = all
  assert.equal(all.length, 6)
  for (const context of [leader, joiner]) {
    assert.deepEqual(eventsOf(log, context), ['start', 'end', 'error', 'asyncStart', 'asyncEnd'])
    assert.equal(context.error, boom)
  }
  assert.equal(slow.error.code, 'ERR_TIMEOUT')
  assert.equal(inner.error.code, 'ERR_RECURSIVE_FLIGHT')
  assert.equal(inner.joined, false, 'the recursive call neither joined nor led')
  assert.equal(outer.error.code, 'ERR_RECURSIVE_FLIGHT')
  // A synchronous throw: error then end, and no async events.
  assert.deepEqual(eventsOf(log, badKey), ['start', 'error', 'end'])
})

test("SingleFlight: the leader's fn sees the bound store; a named group traces too", async (t) => {
  const store = new AsyncLocalStorage()
  const log = record(t, 'bulkhead:single-flight', ['start'])
  bind(t, 'bulkhead:single-flight', store)
  const group = new SingleFlight({ name: 'trace-flight' })
  assert.equal(group.label, 'trace-flight')
  let inside
  let afterAwait
  const gate = deferred()
  const first = group.do('k', async () => {
    inside = store.getStore()?.trace
    await gate.promise
    afterAwait = store.getStore()?.trace
    return 7
  })
  const second = group.do('k', () => 0)
  gate.resolve()
  assert.deepEqual(await Promise.all([first, second]), [7, 7])
  const [leader, joiner] = contexts(log)
  assert.equal(inside, leader)
  assert.equal(afterAwait, leader)
  assert.deepEqual([leader.name, leader.leader, leader.joined], ['trace-flight', true, false])
  assert.deepEqual([joiner.leader, joiner.joined], [false, true])
})

// ---- bulkhead:pool ---------------------------------------------------------

test('WorkerPool: a trace per run() with filename, export, queue wait, run time and outcome', async (t) => {
  const log = record(t, 'bulkhead:pool')
  const pool = new WorkerPool({ filename: echo, minThreads: 1, maxThreads: 1, label: 'images' })
  t.after(() => pool.destroy())
  await pool.run(0) // the worker is up
  log.length = 0
  const before = performance.now()
  const slow = pool.run(30, { name: 'sleep' })
  const queued = pool.run('hi')
  assert.equal(await slow, 30)
  assert.equal(await queued, 'hi')
  const elapsed = performance.now() - before
  const [a, b] = contexts(log)
  assert.deepEqual(eventsOf(log, a), ['start', 'end', 'asyncStart', 'asyncEnd'])
  const endOf = (context) => log.find((e) => e.context === context && e.event === 'end').snapshot
  assert.deepEqual(endOf(a), {
    label: 'images',
    filename: echo,
    name: 'sleep',
    waitTime: undefined,
    runTime: undefined,
    outcome: undefined,
  })
  const at = (context) => log.find((e) => e.context === context && e.event === 'asyncStart').snapshot
  assert.equal(at(a).outcome, 'returned')
  assert.equal(at(a).result, 30)
  assert.ok(at(a).runTime >= 25 && at(a).runTime <= elapsed, `runTime ${at(a).runTime}`)
  assert.ok(at(a).waitTime >= 0 && at(a).waitTime <= elapsed)
  assert.equal(at(b).name, 'default')
  // The second task waited for the only worker while the first slept.
  assert.ok(at(b).waitTime >= 20, `waitTime ${at(b).waitTime}`)
  assert.ok(at(b).runTime >= 0 && at(b).runTime < at(a).runTime)
})

test('WorkerPool: a task that throws, a queue timeout, an abort and a bad option go to `error`', async (t) => {
  const log = record(t, 'bulkhead:pool')
  const pool = new WorkerPool({ filename: echo, minThreads: 1, maxThreads: 1 })
  t.after(() => pool.destroy())
  await assert.rejects(pool.run('bad', { name: 'throwTyped' }), { code: 'E_TASK' })
  const slow = pool.run(30, { name: 'sleep' })
  const timedOut = assert.rejects(pool.run(1, { queueTimeout: 5 }), { code: 'ERR_TIMEOUT' })
  const controller = new AbortController()
  const aborted = assert.rejects(pool.run(1, { signal: controller.signal }), { code: 'ERR_ABORTED' })
  controller.abort()
  await timedOut
  await aborted
  await slow
  await assert.rejects(pool.run(1, { timeout: -1 }), { name: 'TypeError' })
  const [threw, , queueTimeout, abortedCtx, badOption] = contexts(log)
  assert.deepEqual(eventsOf(log, threw), ['start', 'end', 'error', 'asyncStart', 'asyncEnd'])
  assert.equal(threw.outcome, 'threw')
  assert.equal(threw.error.code, 'E_TASK')
  assert.equal(typeof threw.runTime, 'number')
  assert.equal(queueTimeout.outcome, 'failed')
  assert.equal(queueTimeout.error.code, 'ERR_TIMEOUT')
  assert.ok(queueTimeout.waitTime >= 4, `waitTime ${queueTimeout.waitTime}`)
  assert.equal(queueTimeout.runTime, undefined, 'it never ran')
  assert.equal(abortedCtx.outcome, 'failed')
  assert.equal(abortedCtx.error.code, 'ERR_ABORTED')
  assert.equal(badOption.outcome, 'failed')
  assert.equal(badOption.error.name, 'TypeError')
})

test('WorkerPool: the settle events run inside the bound store', async (t) => {
  const store = new AsyncLocalStorage()
  const channel = dc.tracingChannel('bulkhead:pool')
  const seen = []
  const handlers = { asyncStart: (context) => seen.push([context, store.getStore()?.trace]) }
  channel.subscribe(handlers)
  t.after(() => channel.unsubscribe(handlers))
  bind(t, 'bulkhead:pool', store)
  const pool = new WorkerPool({ filename: echo, minThreads: 1, maxThreads: 1 })
  t.after(() => pool.destroy())
  assert.equal(await pool.run(5), 5)
  assert.equal(seen.length, 1)
  assert.equal(seen[0][1], seen[0][0])
})

// ---- label ----------------------------------------------------------------

test('label: every class takes it, defaults it to the name, and exposes it', async (t) => {
  const limiter = new Limiter({ concurrency: 1 })
  assert.equal(limiter.label, undefined)
  assert.equal(new Limiter({ concurrency: 1, label: 'a' }).label, 'a')
  const named = new Limiter({ concurrency: 1, name: 'label-limiter' })
  assert.equal(named.label, 'label-limiter')
  await named.close()
  const both = new Limiter({ concurrency: 1, name: 'label-limiter-2', label: 'shown' })
  assert.deepEqual([both.name, both.label], ['label-limiter-2', 'shown'])
  await both.close()
  assert.equal(pLimit(1).label, undefined)
  assert.equal(pLimit({ concurrency: 1, label: 'p' }).label, 'p')
  assert.equal(limitFunction(async () => {}, { concurrency: 1, label: 'f' }).label, 'f')
  assert.equal(new SingleFlight().label, undefined)
  assert.equal(new SingleFlight({ label: 's' }).label, 's')
  const pool = new WorkerPool({ filename: echo, minThreads: 0, maxThreads: 1, label: 'w' })
  t.after(() => pool.destroy())
  assert.equal(pool.label, 'w')
  assert.equal(pool.options.label, 'w')
  assert.equal(new WorkerPool({ filename: echo, minThreads: 0, maxThreads: 1 }).label, undefined)
  // lru-cache has no `label`: a cache with one is still a working lru-cache.
  const cache = new LRUCache({ max: 2, label: 'sessions' })
  cache.set('a', 1)
  assert.deepEqual([cache.label, cache.get('a')], ['sessions', 1])
  assert.equal(new LRUCache({ max: 2 }).label, undefined)
  assert.equal(new LRUCache({ max: 2, name: 'label-cache' }).label, 'label-cache')
  assert.equal(new LRUCache({ max: 2, name: 'label-cache', label: 'c' }).label, 'c')
})

test('label: a label does not make an instance process-wide', async () => {
  const a = new Limiter({ concurrency: 1, label: 'same' })
  const b = new Limiter({ concurrency: 1, label: 'same' })
  const gate = deferred()
  const held = a.run(() => gate.promise)
  // b has its own permit.
  assert.equal(await b.run(async () => 'ran'), 'ran')
  gate.resolve()
  await held
  const f1 = new SingleFlight({ label: 'same' })
  const f2 = new SingleFlight({ label: 'same' })
  const hold = deferred()
  const p1 = f1.do('k', () => hold.promise)
  assert.equal(await f2.do('k', () => 'own flight'), 'own flight')
  hold.resolve('first')
  assert.equal(await p1, 'first')
})

test('label: a non-string is a TypeError naming options.label, an empty one a RangeError', () => {
  const makers = {
    Limiter: (label) => new Limiter({ concurrency: 1, label }),
    pLimit: (label) => pLimit({ concurrency: 1, label }),
    limitFunction: (label) => limitFunction(async () => {}, { concurrency: 1, label }),
    SingleFlight: (label) => new SingleFlight({ label }),
    WorkerPool: (label) => new WorkerPool({ filename: echo, minThreads: 0, maxThreads: 1, label }),
    LRUCache: (label) => new LRUCache({ max: 1, label }),
    'named LRUCache': (label) => new LRUCache({ max: 1, name: 'label-bad', label }),
  }
  for (const [what, make] of Object.entries(makers)) {
    for (const bad of [42, null, {}, Symbol('x')]) {
      assert.throws(() => make(bad), { name: 'TypeError', code: 'ERR_INVALID_ARG', message: /options\.label must be a string/ }, what)
    }
    assert.throws(() => make(''), { name: 'RangeError', code: 'ERR_INVALID_ARG', message: /options\.label/ }, what)
  }
})
