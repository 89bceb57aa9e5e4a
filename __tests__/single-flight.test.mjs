import { test } from 'node:test'
import assert from 'node:assert/strict'
import { getEventListeners } from 'node:events'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'
import { AsyncLocalStorage } from 'node:async_hooks'
import { SingleFlight } from '../lib/single-flight.mjs'

const native = createRequire(import.meta.url)('../lib/native.js')

const tick = () => new Promise((resolve) => setImmediate(resolve))

function deferred() {
  let resolve, reject
  const promise = new Promise((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

const codeOf = (promise) =>
  promise.then(
    () => 'fulfilled',
    (err) => err.code ?? err.message,
  )

test('concurrent callers of one key share one call and its result', async () => {
  const group = new SingleFlight()
  const d = deferred()
  let runs = 0
  const fn = () => {
    runs++
    return d.promise
  }
  const calls = [group.do('user:1', fn), group.do('user:1', fn), group.do('user:1', fn)]
  assert.equal(group.inFlight('user:1'), true)
  assert.equal(group.size, 1)
  const value = { id: 1 }
  d.resolve(value)
  const results = await Promise.all(calls)
  assert.equal(runs, 1)
  for (const r of results) assert.equal(r, value)
  assert.equal(group.inFlight('user:1'), false)
  assert.equal(group.size, 0)
  await group.do('user:1', fn)
  assert.equal(runs, 2, 'a call after the flight settled starts a new one')
  assert.deepEqual(group.stats(), { flights: 2, calls: 4, shared: 2, timeouts: 0, aborts: 0, errors: 0 })
})

test('race: 1,000 concurrent callers on one key run fn once; on 100 keys, 100 times', async () => {
  const group = new SingleFlight({ timeout: 60_000 })
  let runs = 0
  const fn = async () => {
    runs++
    await tick()
    return runs
  }
  const one = await Promise.all(Array.from({ length: 1000 }, () => group.do('hot', fn)))
  assert.equal(runs, 1)
  assert.ok(one.every((v) => v === 1))

  runs = 0
  const perKey = new Map()
  const many = await Promise.all(
    Array.from({ length: 1000 }, (_, i) =>
      group.do(`k${i % 100}`, async () => {
        runs++
        perKey.set(i % 100, (perKey.get(i % 100) ?? 0) + 1)
        await tick()
        return i % 100
      }),
    ),
  )
  assert.equal(runs, 100)
  assert.ok([...perKey.values()].every((n) => n === 1))
  assert.ok(many.every((v, i) => v === i % 100), 'each caller got its own key’s result')
  assert.equal(group.size, 0)
})

test('doShared says whether the result went to more than one call', async () => {
  const group = new SingleFlight()
  const d = deferred()
  const both = [group.doShared('a', () => d.promise), group.doShared('a', () => d.promise)]
  d.resolve(7)
  assert.deepEqual(await Promise.all(both), [
    { value: 7, shared: true },
    { value: 7, shared: true },
  ])
  assert.deepEqual(await group.doShared('a', async () => 8), { value: 8, shared: false })
  const ac = new AbortController()
  assert.deepEqual(await group.doShared('b', async () => 9, { signal: ac.signal }), { value: 9, shared: false })
})

test('fn may return a plain value or throw synchronously', async () => {
  const group = new SingleFlight()
  assert.equal(await group.do('v', () => 3), 3)
  const boom = new Error('boom')
  await assert.rejects(
    group.do('t', () => {
      throw boom
    }),
    (err) => err === boom,
  )
  assert.equal(group.size, 0)
  assert.equal(group.stats().errors, 1)
})

test('an error rejects every waiter of the flight and is never remembered', async () => {
  const group = new SingleFlight()
  const d = deferred()
  let runs = 0
  const fn = () => {
    runs++
    return d.promise
  }
  const ac = new AbortController()
  const calls = [group.do('a', fn), group.do('a', fn), group.do('a', fn, { signal: ac.signal })]
  const err = new Error('backend down')
  d.reject(err)
  for (const c of calls) await assert.rejects(c, (e) => e === err)
  assert.equal(group.inFlight('a'), false)
  assert.equal(await group.do('a', async () => 'recovered'), 'recovered')
  assert.equal(runs, 1)
  assert.equal(group.stats().errors, 1)
})

test('fn receives the flight’s AbortSignal as its only argument', async () => {
  const group = new SingleFlight()
  let seen
  await group.do('a', (...args) => {
    seen = args
  })
  // A rest parameter declares no parameter (fn.length is 0): it gets its signal all the same.
  assert.equal(seen.length, 1)
  assert.ok(seen[0] instanceof AbortSignal)
  // So does a destructured options parameter; `.signal` is a real AbortSignal.
  await group.do('a', ({ signal } = {}) => {
    seen = signal
  })
  assert.equal(Object.getPrototypeOf(seen), AbortSignal.prototype)
  await group.do('a', (signal) => {
    seen = signal
  })
  assert.ok(seen instanceof AbortSignal)
  assert.equal(seen.aborted, false)
  // Nobody listened: no AbortController was made for it.
  assert.equal(seen.materialized, false)
})

test('a (...args) flight function is told through its signal when its deadline passes', async () => {
  const group = new SingleFlight({ timeout: 20 })
  let signal
  const call = group.do('a', (...args) => {
    signal = args[0]
    return new Promise(() => {})
  })
  await assert.rejects(call, { code: 'ERR_TIMEOUT' })
  assert.equal(signal.aborted, true)
  assert.equal(signal.reason.code, 'ERR_TIMEOUT')
  assert.throws(() => signal.throwIfAborted(), { code: 'ERR_TIMEOUT' })
})

test('an aborted caller leaves with ERR_ABORTED; the flight goes on for the others', async () => {
  const group = new SingleFlight()
  const d = deferred()
  let flightSignal
  const fn = (signal) => {
    flightSignal = signal
    return d.promise
  }
  const a = new AbortController()
  const b = new AbortController()
  const pa = group.do('k', fn, { signal: a.signal })
  const pb = group.do('k', fn, { signal: b.signal })
  const pc = group.do('k', fn)
  a.abort(new Error('client went away'))
  await assert.rejects(pa, (err) => {
    assert.equal(err.code, 'ERR_ABORTED')
    assert.equal(err.cause.message, 'client went away')
    return true
  })
  b.abort()
  await assert.rejects(pb, { code: 'ERR_ABORTED' })
  assert.equal(flightSignal.aborted, false, 'a caller without a signal still waits')
  assert.equal(group.inFlight('k'), true)
  d.resolve('done')
  assert.equal(await pc, 'done')
  assert.equal(group.stats().aborts, 2)
})

test('the flight’s signal fires only when its last caller has left', async () => {
  const group = new SingleFlight()
  let flightSignal
  const fn = (signal) => {
    flightSignal = signal
    return new Promise(() => {})
  }
  const callers = Array.from({ length: 3 }, () => new AbortController())
  const calls = callers.map((ac) => group.do('k', fn, { signal: ac.signal }))
  callers[0].abort()
  callers[1].abort()
  assert.equal(flightSignal.aborted, false)
  assert.equal(group.inFlight('k'), true)
  callers[2].abort()
  assert.equal(flightSignal.aborted, true)
  assert.equal(flightSignal.reason.code, 'ERR_ABORTED')
  assert.equal(group.inFlight('k'), false, 'nobody waits, so the key is free')
  for (const c of calls) assert.equal(await codeOf(c), 'ERR_ABORTED')
  // A new call starts a new flight.
  assert.equal(await group.do('k', () => 'fresh'), 'fresh')
})

test('an already-aborted signal rejects at once and starts nothing', async () => {
  const group = new SingleFlight()
  let runs = 0
  await assert.rejects(
    group.do('k', () => runs++, { signal: AbortSignal.abort() }),
    { code: 'ERR_ABORTED' },
  )
  assert.equal(runs, 0)
  assert.equal(group.size, 0)
  assert.equal(group.stats().aborts, 1)
  assert.equal(group.stats().calls, 0)
})

test('no abort listener is left on a caller’s long-lived signal', async () => {
  const group = new SingleFlight({ timeout: 50 })
  const longLived = new AbortController().signal
  for (let i = 0; i < 200; i++) {
    await group.do(`ok${i % 7}`, async () => i, { signal: longLived })
    await codeOf(group.do(`err${i % 7}`, async () => Promise.reject(new Error('x')), { signal: longLived }))
  }
  const pending = group.do('slow', () => new Promise(() => {}), { signal: longLived })
  assert.equal(getEventListeners(longLived, 'abort').length, 1, 'one listener while waiting')
  assert.equal(await codeOf(pending), 'ERR_TIMEOUT')
  assert.equal(getEventListeners(longLived, 'abort').length, 0)
})

test('many calls waiting with one signal share one listener, and all leave when it fires', async () => {
  const group = new SingleFlight()
  const other = new SingleFlight()
  const ac = new AbortController()
  const flightSignals = []
  const fn = (signal) => {
    flightSignals.push(signal)
    return new Promise(() => {})
  }
  const calls = []
  for (let i = 0; i < 1000; i++) {
    calls.push(group.do(`k${i % 10}`, fn, { signal: ac.signal }), other.do(i % 10, fn, { signal: ac.signal }))
  }
  assert.equal(getEventListeners(ac.signal, 'abort').length, 1)
  assert.equal(flightSignals.length, 20)
  ac.abort()
  for (const c of calls) assert.equal(await codeOf(c), 'ERR_ABORTED')
  assert.ok(flightSignals.every((s) => s.aborted), 'every flight lost its last caller')
  assert.equal(group.size + other.size, 0)
  assert.equal(group.stats().aborts, 1000)
  assert.equal(getEventListeners(ac.signal, 'abort').length, 0)
})

test('the deadline rejects every waiter with ERR_TIMEOUT, frees the key and aborts fn', async () => {
  const group = new SingleFlight({ timeout: 30 })
  let flightSignal
  let late
  const fn = (signal) => {
    flightSignal = signal
    return new Promise((resolve) => {
      late = resolve
    })
  }
  const ac = new AbortController()
  const calls = [group.do('k', fn), group.do('k', fn), group.doShared('k', fn, { signal: ac.signal })]
  for (const c of calls) {
    await assert.rejects(c, (err) => {
      assert.equal(err.code, 'ERR_TIMEOUT')
      assert.match(err.message, /30 ms/)
      return true
    })
  }
  assert.equal(group.inFlight('k'), false)
  assert.equal(flightSignal.aborted, true)
  assert.equal(flightSignal.reason.code, 'ERR_TIMEOUT')
  assert.equal(getEventListeners(ac.signal, 'abort').length, 0)
  // A new flight for the key is not disturbed when the old call settles late.
  const d = deferred()
  const next = group.do('k', () => d.promise)
  late('stale')
  await tick()
  assert.equal(group.inFlight('k'), true)
  d.resolve('fresh')
  assert.equal(await next, 'fresh')
  assert.deepEqual(group.stats(), { flights: 2, calls: 4, shared: 2, timeouts: 1, aborts: 0, errors: 0 })
})

test('a per-call timeout sets the deadline of the flight it starts', async () => {
  const group = new SingleFlight()
  const never = () => new Promise(() => {})
  const short = group.do('short', never, { timeout: 20 })
  const d = deferred()
  const long = group.do('long', () => d.promise)
  // Joining does not change the deadline of the flight.
  const joined = group.do('short', never, { timeout: 60_000 })
  assert.equal(await codeOf(short), 'ERR_TIMEOUT')
  assert.equal(await codeOf(joined), 'ERR_TIMEOUT')
  assert.equal(group.inFlight('long'), true, 'a flight without a deadline is untouched')
  d.resolve(1)
  assert.equal(await long, 1)
  // A per-call timeout overrides the group's, in both directions.
  const g2 = new SingleFlight({ timeout: 60_000 })
  assert.equal(await codeOf(g2.do('x', never, { timeout: 15 })), 'ERR_TIMEOUT')
})

test('deadlines expire in order across many flights with mixed timeouts', async () => {
  // Short deadlines 10 ms, long ones 1 s: the 3,000 calls are made well
  // within the difference even on a loaded machine.
  const group = new SingleFlight({ timeout: 1000 })
  const never = () => new Promise(() => {})
  const order = []
  const calls = []
  for (let i = 0; i < 3000; i++) {
    const timeout = i % 3 === 0 ? 10 : undefined
    calls.push(
      group.do(i, never, { timeout }).catch((err) => {
        assert.equal(err.code, 'ERR_TIMEOUT')
        order.push(i % 3 === 0 ? 'short' : 'long')
      }),
    )
  }
  const settled = group.do('settles', async () => 'ok')
  await Promise.all(calls)
  assert.equal(await settled, 'ok')
  assert.equal(order.length, 3000)
  assert.ok(order.slice(0, 1000).every((o) => o === 'short'), 'the shorter deadlines came first')
  assert.equal(group.size, 0)
  assert.equal(group.stats().timeouts, 3000)
})

test('maxKeys bounds new flights with ERR_QUEUE_FULL; joining is always allowed', async () => {
  const group = new SingleFlight({ maxKeys: 2 })
  const a = deferred()
  const b = deferred()
  const pa = group.do('a', () => a.promise)
  const pb = group.do('b', () => b.promise)
  await assert.rejects(group.do('c', () => 'c'), (err) => {
    assert.equal(err.code, 'ERR_QUEUE_FULL')
    assert.match(err.message, /maxKeys: 2/)
    return true
  })
  const joined = group.do('a', () => 'never runs')
  a.resolve('A')
  assert.equal(await pa, 'A')
  assert.equal(await joined, 'A')
  assert.equal(await group.do('c', () => 'C'), 'C')
  // A forgotten flight still runs, so it still counts.
  group.forget('b')
  const e = deferred()
  const pe = group.do('e', () => e.promise)
  assert.equal(group.size, 1)
  await assert.rejects(group.do('d', () => 'd'), { code: 'ERR_QUEUE_FULL' })
  b.resolve('B')
  assert.equal(await pb, 'B')
  assert.equal(await group.do('d', () => 'D'), 'D')
  e.resolve('E')
  assert.equal(await pe, 'E')
})

test('forget starts a new flight while callers of the old one get its result', async () => {
  const group = new SingleFlight()
  const old = deferred()
  const fresh = deferred()
  const before = group.do('k', () => old.promise)
  assert.equal(group.forget('k'), true)
  assert.equal(group.forget('k'), false)
  assert.equal(group.inFlight('k'), false)
  const after = group.do('k', () => fresh.promise)
  const joinedAfter = group.do('k', () => 'never')
  old.resolve('old')
  assert.equal(await before, 'old')
  assert.equal(group.inFlight('k'), true, 'the old flight settling does not free the new one')
  fresh.resolve('new')
  assert.equal(await after, 'new')
  assert.equal(await joinedAfter, 'new')
})

test('a flight that calls do() for its own key is refused, not deadlocked', async () => {
  const group = new SingleFlight({ timeout: 5_000 })
  await assert.rejects(
    group.do('self', () => group.do('self', () => 'inner')),
    { code: 'ERR_RECURSIVE_FLIGHT' },
  )
  // Through other keys: a -> b -> a.
  await assert.rejects(
    group.do('a', () => group.do('b', () => group.do('a', () => 'never'))),
    { code: 'ERR_RECURSIVE_FLIGHT' },
  )
  // An async fn calling before its first await is caught too.
  await assert.rejects(
    group.do('x', async () => {
      const inner = await group.do('x', async () => 1)
      return inner
    }),
    { code: 'ERR_RECURSIVE_FLIGHT' },
  )
  // Another flight of the same key from outside is a normal join.
  const d = deferred()
  const p1 = group.do('j', () => d.promise)
  const p2 = group.do('j', () => 'never')
  d.resolve(1)
  assert.deepEqual(await Promise.all([p1, p2]), [1, 1])
  // A flight may call other keys freely.
  assert.equal(await group.do('outer', async () => (await group.do('inner', async () => 2)) + 1), 3)
  assert.equal(group.size, 0)
})

test("detectRecursion: 'async' also catches a call made after an await", async () => {
  const group = new SingleFlight({ detectRecursion: 'async', timeout: 5_000 })
  await assert.rejects(
    group.do('a', async () => {
      await tick()
      return group.do('b', async () => {
        await tick()
        return group.do('a', async () => 'never')
      })
    }),
    { code: 'ERR_RECURSIVE_FLIGHT' },
  )
  // Concurrent unrelated callers still join.
  const d = deferred()
  const p = group.do('shared', async () => {
    await tick()
    return d.promise
  })
  await tick()
  const q = group.do('shared', async () => 'never')
  d.resolve('ok')
  assert.deepEqual(await Promise.all([p, q]), ['ok', 'ok'])
})

test("detectRecursion: 'async' runs fn in the caller's context and restores the caller's after, on every path", async () => {
  const group = new SingleFlight({ detectRecursion: 'async', timeout: 5_000 })
  const request = new AsyncLocalStorage()
  await request.run('request-1', async () => {
    const seen = []
    const d = deferred()
    const p1 = group.do('k', async () => {
      seen.push(request.getStore())
      await tick()
      seen.push(request.getStore())
      return d.promise
    })
    assert.equal(request.getStore(), 'request-1')
    // The caller is outside the flight again: a second call is a join.
    const p2 = group.do('k', () => 'never')
    // A fn that throws synchronously leaves the caller's context as it was too.
    await assert.rejects(
      group.do('t', () => {
        throw new Error('boom')
      }),
      /boom/,
    )
    assert.equal(request.getStore(), 'request-1')
    assert.equal(await group.do('t', () => 'fresh'), 'fresh', 'a caller after the throw is not inside that flight')
    d.resolve(1)
    assert.deepEqual(await Promise.all([p1, p2]), [1, 1])
    assert.deepEqual(seen, ['request-1', 'request-1'])
  })
  assert.equal(request.getStore(), undefined)
})

test('keys are strings and numbers compared with SameValueZero; other types are a TypeError', async () => {
  const group = new SingleFlight()
  const d = deferred()
  let runs = 0
  const fn = () => {
    runs++
    return d.promise
  }
  const calls = [group.do(NaN, fn), group.do(Number.NaN, fn), group.do(0, fn), group.do(-0, fn), group.do('0', fn)]
  assert.equal(runs, 3, 'NaN once, 0/-0 once, "0" once')
  d.resolve(true)
  await Promise.all(calls)
  for (const bad of [undefined, null, {}, [], Symbol('s'), 1n, true]) {
    assert.throws(() => group.do(bad, fn), TypeError)
  }
  assert.throws(() => group.do('k', 'not a function'), TypeError)
})

test('options are validated with errors that name the option', () => {
  const bad = [
    [{ timeout: 0 }, /options\.timeout must be a positive number/],
    [{ timeout: -1 }, /options\.timeout/],
    [{ timeout: '10' }, /options\.timeout/],
    [{ maxKeys: 0 }, /options\.maxKeys must be a positive integer/],
    [{ maxKeys: 1.5 }, /options\.maxKeys/],
    [{ detectRecursion: 'always' }, /options\.detectRecursion/],
    [{ name: '' }, /options\.name must be a non-empty string/],
  ]
  for (const [options, message] of bad) {
    assert.throws(() => new SingleFlight(options), (err) => {
      assert.equal(err.code, 'ERR_INVALID_ARG')
      assert.match(err.message, message)
      return true
    })
  }
  const group = new SingleFlight({ timeout: Infinity, maxKeys: Infinity })
  assert.throws(() => group.do('k', () => 1, { timeout: -5 }), { code: 'ERR_INVALID_ARG' })
  assert.throws(() => group.do('k', () => 1, { signal: {} }), { code: 'ERR_INVALID_ARG' })
  assert.equal(group.size, 0)
})

test('wrap deduplicates a function by its first argument or by keyFn', async () => {
  const group = new SingleFlight()
  let runs = 0
  const load = async (id, extra) => {
    runs++
    await tick()
    return `${id}:${extra}`
  }
  const loadOnce = group.wrap(load)
  const r = await Promise.all([loadOnce('a', 1), loadOnce('a', 2), loadOnce('b', 3)])
  assert.deepEqual(r, ['a:1', 'a:1', 'b:3'])
  assert.equal(runs, 2)
  const byUser = group.wrap(load, (req) => req.user)
  runs = 0
  await Promise.all([byUser({ user: 'u' }), byUser({ user: 'u' })])
  assert.equal(runs, 1)
  assert.throws(() => group.wrap('x'), TypeError)
})

const fixture = (name) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url))

test('100k flights that never settle are all released by their deadline; the heap returns to baseline', () => {
  const child = spawnSync(process.execPath, ['--expose-gc', fixture('single-flight-leak.mjs'), '100000'], {
    encoding: 'utf8',
    timeout: 120_000,
  })
  assert.equal(child.status, 0, child.stderr)
  const r = JSON.parse(child.stdout)
  assert.ok(r.peakSize > 0)
  assert.equal(r.size, 0)
  assert.deepEqual(r.codes, { ERR_TIMEOUT: 200_000 })
  // Under load a flight can pass its deadline before its second caller
  // arrives; that caller then starts a new flight, which also expires.
  assert.ok(r.stats.flights >= 101_000)
  assert.equal(r.stats.timeouts, r.stats.flights)
  assert.equal(r.signalsSeen.aborted, r.signalsSeen.count, 'every flight’s signal fired at its deadline')
  // The flights held well over 20 MB at the peak; afterwards the heap is back
  // within 2 MB of where it started. (Most flights were alive at once; the
  // exact peak depends on how fast the machine creates them.)
  assert.ok(r.signalsSeen.count >= 1000, 'one flight in 100 took the signal')
  assert.ok(r.peak - r.before > 20e6, `peak grew by ${r.peak - r.before}`)
  assert.ok(r.after - r.before < 2e6, `heap grew by ${r.after - r.before} bytes`)
})

// Issue 16: a settled flight must leave nothing in the deadline table. The
// named group's shared table used to keep every settled flight's entry until
// its deadline, so with a 10-minute timeout it held every flight of the last
// 10 minutes (~24 bytes each: ~27 MB of RSS per 1M flights, measured).
for (const mode of ['local', 'named']) {
  test(`${mode} group: 1M short flights with a 10-minute timeout leave no deadline behind, and RSS stays flat`, () => {
    const child = spawnSync(process.execPath, ['--expose-gc', fixture('single-flight-deadlines.mjs'), mode, '1000000'], {
      encoding: 'utf8',
      timeout: 300_000,
    })
    assert.equal(child.status, 0, child.stderr)
    const r = JSON.parse(child.stdout)
    assert.equal(r.stats.flights, 1_750_000, 'warm-up and measured flights all ran')
    assert.equal(r.stats.timeouts, 0)
    const idle = { live: 0, pending: 0, queued: 0, batched: 0, slots: 0, shared: 0 }
    assert.deepEqual(r.afterWarmup, idle, 'an idle group holds no deadline, in JS or in Rust')
    assert.deepEqual(r.end, idle)
    assert.ok(r.samples > 1000)
    // While 2,000 flights run at every moment, the entries beyond the live
    // flights' own are bounded: a local group's are the removals waiting in
    // its 1,024-triple batch (each also still in Rust until the batch
    // crosses), a named group has none.
    assert.ok(r.maxStale <= (mode === 'local' ? 2 * 1024 : 0), `${r.maxStale} stale deadline entries`)
    // RSS after a GC, once warm, after each 250k flights. A leak grows it at
    // every step: the old table, ~6.5 MB per step (311, 319, 326, 332,
    // 338 MB). Without one, steps move by 0-1 MB, except for jumps of up to
    // ~30 MB where V8 or the allocator sizes itself late on a loaded machine
    // (one such run had two: 273, 298, 301, 301, 301 MB). So two of the four
    // steps must be flat: a leak makes all four grow.
    const steps = r.rssSteps.slice(1).map((v, i) => v - r.rssSteps[i])
    const secondSmallest = steps.toSorted((a, b) => a - b)[1]
    assert.ok(secondSmallest < 3e6, `RSS grew at three or more of four steps of 250k flights: ${r.rssSteps}`)
  })
}

test('an idle group does not keep the process alive; a pending deadline does until it passes', () => {
  const idle = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { SingleFlight } from ${JSON.stringify(new URL('../lib/single-flight.mjs', import.meta.url).href)}
       const g = new SingleFlight({ timeout: 600000 })
       await g.do('k', async () => 1)
       console.log('done', g.size)`,
    ],
    { encoding: 'utf8', timeout: 60_000 },
  )
  assert.equal(idle.status, 0, idle.stderr)
  assert.equal(idle.stdout.trim(), 'done 0', 'exited without waiting for the stale 10-minute deadline')
  const waiting = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { SingleFlight } from ${JSON.stringify(new URL('../lib/single-flight.mjs', import.meta.url).href)}
       const g = new SingleFlight({ timeout: 50 })
       console.log(await g.do('k', () => new Promise(() => {})).catch((e) => e.code))`,
    ],
    { encoding: 'utf8', timeout: 60_000 },
  )
  assert.equal(waiting.status, 0, waiting.stderr)
  assert.equal(waiting.stdout.trim(), 'ERR_TIMEOUT', 'the caller got its answer before the process exited')
})

test('the Rust deadline queue takes batched additions and exact removals', () => {
  const queue = new native.FlightDeadlines()
  const batch = new Float64Array(3 * 8)
  const out = new Float64Array(1 + 2 * 2)
  // Four flights (deadline, slot, id); then flight 2 settles (a removal).
  batch.set([30, 0, 1, 10, 1, 2, 20, 2, 3, 40, 3, 4, 10, -1, 2])
  assert.equal(queue.drain(batch, 5, 5, out), 0)
  assert.equal(out[0], 20, 'the next deadline is that of a live flight')
  assert.equal(queue.length, 3)
  // At 35, flights 3 and 1 are due; the output holds two pairs at a time.
  assert.equal(queue.drain(batch, 0, 35, out), 2)
  assert.deepEqual([...out], [40, 2, 3, 0, 1])
  assert.equal(queue.drain(batch, 0, 100, out), 1)
  assert.deepEqual([...out.slice(0, 3)], [-1, 3, 4])
  assert.equal(queue.length, 0)
  assert.throws(() => queue.drain(batch, 9, 0, out), { code: 'ERR_INVALID_ARG' })
})
