// The same behavioural checks run against p-limit 7.3 (the peer, a
// devDependency) and against bulkhead's drop-in; every check must pass for
// both, so a check that only bulkhead passes is a bug in the check or a break
// of drop-in compatibility.
//
// A third subject runs the checks that concern scheduling (counts, order,
// microtask timing, async context, concurrency changes) through a p-limit
// shaped wrapper over `Limiter`, whose state machine is the Rust core: the
// JS fast path of pLimit and the Rust core must agree. It skips what Limiter
// does differently on purpose (its errors are ERR_* codes, and clear()
// rejects instead of leaving promises pending).
import { test as baseTest, describe } from 'node:test'
import assert from 'node:assert/strict'
import { AsyncLocalStorage } from 'node:async_hooks'
import { setImmediate as tick } from 'node:timers/promises'

import peerPLimit, { limitFunction as peerLimitFunction } from 'p-limit'
import bulkheadPLimit, { limitFunction as bulkheadLimitFunction, Limiter } from 'bulkhead/p-limit'

function limiterAsPLimit(options) {
  const concurrency = typeof options === 'object' ? options.concurrency : options
  const limiter = new Limiter({ concurrency })
  const limit = (fn, ...args) => limiter.run(() => fn(...args))
  Object.defineProperties(limit, {
    activeCount: { get: () => limiter.activeCount },
    pendingCount: { get: () => limiter.pendingCount },
    concurrency: {
      get: () => limiter.concurrency,
      set: (value) => {
        limiter.concurrency = value
      },
    },
    clearQueue: { value: () => limiter.clear() },
    map: {
      async value(iterable, mapper) {
        const promises = []
        try {
          for (const item of iterable) promises.push(limit(mapper, item, promises.length))
        } catch (error) {
          for (const promise of promises) promise.catch(() => {})
          throw error
        }
        return Promise.all(promises)
      },
    },
  })
  return limit
}

const LIMITER_SKIPS = new Set([
  'clearQueue() drops pending tasks, which never settle, and lets running ones finish',
  'with rejectOnClear, clearQueue() rejects pending tasks with an AbortError',
  'throws the same TypeError for a bad concurrency, in the factory and the setter',
  'limitFunction() limits a function and exposes clearQueue',
  'limitFunction() with rejectOnClear rejects pending calls on clearQueue()',
])

const subjects = [
  { name: 'p-limit', pLimit: peerPLimit, limitFunction: peerLimitFunction, skips: new Set() },
  { name: 'bulkhead', pLimit: bulkheadPLimit, limitFunction: bulkheadLimitFunction, skips: new Set() },
  { name: 'Limiter (Rust core) as p-limit', pLimit: limiterAsPLimit, limitFunction: undefined, skips: LIMITER_SKIPS },
]

function deferred() {
  let resolve, reject
  const promise = new Promise((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

// Settles after every microtask and one macrotask turn: long enough for any
// work the limiter scheduled to run.
const settle = () => tick()

for (const { name, pLimit, limitFunction, skips } of subjects) {
  const test = (title, fn) => baseTest(title, { skip: skips.has(title) && 'differs on purpose' }, fn)
  describe(`${name} behaves as p-limit 7`, () => {
    test('never runs more than `concurrency` tasks and returns every result in order', async () => {
      for (const concurrency of [1, 3, 10]) {
        const limit = pLimit(concurrency)
        let running = 0
        let peak = 0
        const tasks = Array.from({ length: 40 }, (_, i) =>
          limit(async () => {
            running++
            peak = Math.max(peak, running)
            await tick()
            running--
            return i * 2
          }),
        )
        const results = await Promise.all(tasks)
        assert.deepEqual(results, Array.from({ length: 40 }, (_, i) => i * 2))
        assert.equal(peak, concurrency)
        assert.equal(limit.activeCount, 0)
        assert.equal(limit.pendingCount, 0)
      }
    })

    test('counts update synchronously and fn runs one microtask later', async () => {
      const limit = pLimit(2)
      const calls = []
      const gates = [deferred(), deferred(), deferred()]
      const promises = gates.map((gate, i) =>
        limit(() => {
          calls.push(i)
          return gate.promise
        }),
      )
      assert.equal(limit.activeCount, 2)
      assert.equal(limit.pendingCount, 1)
      assert.deepEqual(calls, [], 'fn is not called synchronously')
      await Promise.resolve()
      assert.deepEqual(calls, [0, 1])
      gates[0].resolve('a')
      await settle()
      assert.deepEqual(calls, [0, 1, 2])
      assert.equal(limit.activeCount, 2)
      assert.equal(limit.pendingCount, 0)
      gates[1].resolve('b')
      gates[2].resolve('c')
      assert.deepEqual(await Promise.all(promises), ['a', 'b', 'c'])
      assert.equal(limit.activeCount, 0)
    })

    test('starts tasks in FIFO order', async () => {
      const limit = pLimit(1)
      const order = []
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          limit(async () => {
            order.push(i)
            if (i % 3 === 0) await tick()
          }),
        ),
      )
      assert.deepEqual(
        order,
        Array.from({ length: 20 }, (_, i) => i),
      )
    })

    test('passes arguments through and calls fn without a receiver', async () => {
      const limit = pLimit(1)
      const seen = await limit(
        function (a, b, c) {
          return [this, a, b, c]
        },
        1,
        'two',
        { three: 3 },
      )
      assert.deepEqual(seen, [undefined, 1, 'two', { three: 3 }])
      assert.deepEqual(await limit((...args) => args), [])
    })

    test('returns plain values, promises and thenables alike', async () => {
      const limit = pLimit(2)
      assert.equal(await limit(() => 7), 7)
      assert.equal(await limit(async () => 8), 8)
      assert.equal(await limit(() => ({ then: (resolve) => resolve(9) })), 9)
      const obj = { x: 1 }
      assert.equal(await limit(() => obj), obj)
    })

    test('a sync throw and a rejection reach the caller and free the slot', async () => {
      const limit = pLimit(1)
      const boom = new Error('boom')
      await assert.rejects(
        limit(() => {
          throw boom
        }),
        (err) => err === boom,
      )
      await assert.rejects(
        limit(async () => {
          throw new TypeError('async boom')
        }),
        { name: 'TypeError', message: 'async boom' },
      )
      await assert.rejects(limit(() => Promise.reject(new RangeError('r'))), RangeError)
      await assert.rejects(limit('not a function'), TypeError)
      assert.equal(await limit(() => 'still works'), 'still works')
      assert.equal(limit.activeCount, 0)
    })

    test("keeps the caller's AsyncLocalStorage context inside fn, even when queued", async () => {
      const als = new AsyncLocalStorage()
      const limit = pLimit(1)
      const blocker = deferred()
      const first = limit(() => blocker.promise)
      const promises = Array.from({ length: 5 }, (_, i) =>
        als.run({ id: i }, () =>
          limit(async () => {
            const before = als.getStore()?.id
            await tick()
            return [before, als.getStore()?.id]
          }),
        ),
      )
      // Released from outside any context: the queued tasks still see their own.
      blocker.resolve()
      await first
      const results = await Promise.all(promises)
      assert.deepEqual(
        results,
        Array.from({ length: 5 }, (_, i) => [i, i]),
      )
    })

    test('clearQueue() drops pending tasks, which never settle, and lets running ones finish', async () => {
      const limit = pLimit(1)
      const gate = deferred()
      const running = limit(() => gate.promise)
      let settledCount = 0
      let ran = 0
      for (let i = 0; i < 3; i++)
        limit(() => {
          ran++
        }).then(
          () => settledCount++,
          () => settledCount++,
        )
      assert.equal(limit.pendingCount, 3)
      limit.clearQueue()
      assert.equal(limit.pendingCount, 0)
      assert.equal(limit.activeCount, 1)
      gate.resolve('done')
      assert.equal(await running, 'done')
      await settle()
      assert.equal(ran, 0)
      assert.equal(settledCount, 0)
      assert.equal(await limit(() => 'after'), 'after')
    })

    test('with rejectOnClear, clearQueue() rejects pending tasks with an AbortError', async () => {
      const limit = pLimit({ concurrency: 1, rejectOnClear: true })
      const gate = deferred()
      const running = limit(() => gate.promise)
      const pending = [limit(() => 1), limit(() => 2)]
      limit.clearQueue()
      const outcomes = await Promise.allSettled(pending)
      for (const outcome of outcomes) {
        assert.equal(outcome.status, 'rejected')
        assert.equal(outcome.reason.name, 'AbortError')
      }
      gate.resolve(5)
      assert.equal(await running, 5)
    })

    test('raising concurrency at run time starts queued tasks', async () => {
      const limit = pLimit(1)
      const gates = Array.from({ length: 4 }, () => deferred())
      const calls = []
      const promises = gates.map((gate, i) =>
        limit(() => {
          calls.push(i)
          return gate.promise
        }),
      )
      await settle()
      assert.deepEqual(calls, [0])
      limit.concurrency = 3
      assert.equal(limit.concurrency, 3)
      await settle()
      assert.deepEqual(calls, [0, 1, 2])
      assert.equal(limit.activeCount, 3)
      assert.equal(limit.pendingCount, 1)
      limit.concurrency = 1
      gates[0].resolve()
      gates[1].resolve()
      await settle()
      assert.deepEqual(calls, [0, 1, 2], 'lowering waits until the running count drops below it')
      gates[2].resolve()
      await settle()
      assert.deepEqual(calls, [0, 1, 2, 3])
      gates[3].resolve()
      await Promise.all(promises)
    })

    test('throws the same TypeError for a bad concurrency, in the factory and the setter', () => {
      const message = 'Expected `concurrency` to be a number from 1 and up'
      for (const bad of [0, -1, 1.5, Number.NaN, '2', undefined, -Infinity]) {
        assert.throws(() => pLimit(bad), { name: 'TypeError', message }, String(bad))
        assert.throws(() => pLimit({ concurrency: bad }), { name: 'TypeError', message })
      }
      assert.throws(() => pLimit({ concurrency: 1, rejectOnClear: 'yes' }), {
        name: 'TypeError',
        message: 'Expected `rejectOnClear` to be a boolean',
      })
      assert.throws(() => pLimit(null), TypeError)
      const limit = pLimit(Infinity)
      assert.equal(limit.concurrency, Infinity)
      assert.throws(() => {
        limit.concurrency = 0
      }, { name: 'TypeError', message })
      assert.equal(limit.concurrency, Infinity)
    })

    test('Infinity runs everything at once', async () => {
      const limit = pLimit(Infinity)
      const gates = Array.from({ length: 50 }, () => deferred())
      const promises = gates.map((gate) => limit(() => gate.promise))
      assert.equal(limit.activeCount, 50)
      assert.equal(limit.pendingCount, 0)
      for (const gate of gates) gate.resolve(1)
      assert.equal((await Promise.all(promises)).length, 50)
    })

    test('map() runs the mapper with item and index under the limit', async () => {
      const limit = pLimit(2)
      let running = 0
      let peak = 0
      const results = await limit.map(new Set(['a', 'b', 'c', 'd', 'e']), async (item, index) => {
        running++
        peak = Math.max(peak, running)
        await tick()
        running--
        return `${item}${index}`
      })
      assert.deepEqual(results, ['a0', 'b1', 'c2', 'd3', 'e4'])
      assert.equal(peak, 2)
      assert.deepEqual(await limit.map([], () => 1), [])
    })

    test('map() rejects with the error of a throwing iterable, and reports no unhandled rejection', async () => {
      const limit = pLimit(1)
      const unhandled = []
      const onUnhandled = (reason) => unhandled.push(reason)
      process.on('unhandledRejection', onUnhandled)
      try {
        function* items() {
          yield 1
          yield 2
          throw new Error('iteration failed')
        }
        await assert.rejects(
          limit.map(items(), async (x) => {
            throw new Error(`task ${x}`)
          }),
          { message: 'iteration failed' },
        )
        await settle()
        await settle()
        assert.deepEqual(unhandled, [])
      } finally {
        process.off('unhandledRejection', onUnhandled)
      }
    })

    test('map() rejects with the first task error', async () => {
      const limit = pLimit(3)
      await assert.rejects(
        limit.map([1, 2, 3], async (x) => {
          if (x === 2) throw new Error('two')
          return x
        }),
        { message: 'two' },
      )
    })

    test('limitFunction() limits a function and exposes clearQueue', async () => {
      let running = 0
      let peak = 0
      const limited = limitFunction(
        async (a, b) => {
          running++
          peak = Math.max(peak, running)
          await tick()
          running--
          return a + b
        },
        { concurrency: 2 },
      )
      const results = await Promise.all(Array.from({ length: 9 }, (_, i) => limited(i, 1)))
      assert.deepEqual(
        results,
        Array.from({ length: 9 }, (_, i) => i + 1),
      )
      assert.equal(peak, 2)
      assert.equal(typeof limited.clearQueue, 'function')
      assert.ok(!Object.keys(limited).includes('clearQueue'), 'clearQueue is not enumerable')
    })

    test('limitFunction() with rejectOnClear rejects pending calls on clearQueue()', async () => {
      const gate = deferred()
      const limited = limitFunction(() => gate.promise, { concurrency: 1, rejectOnClear: true })
      const first = limited()
      const second = limited()
      limited.clearQueue()
      await assert.rejects(second, { name: 'AbortError' })
      gate.resolve('ok')
      assert.equal(await first, 'ok')
    })

    test('the limit function has the properties of p-limit and none enumerable', () => {
      const limit = pLimit(4)
      assert.equal(typeof limit, 'function')
      assert.deepEqual(Object.keys(limit), [])
      assert.equal(limit.activeCount, 0)
      assert.equal(limit.pendingCount, 0)
      assert.equal(limit.concurrency, 4)
      assert.equal(typeof limit.clearQueue, 'function')
      assert.equal(typeof limit.map, 'function')
    })

    test('a task can queue more work on its own limiter without losing order', async () => {
      const limit = pLimit(2)
      const order = []
      const inner = []
      await Promise.all(
        [0, 1, 2].map((i) =>
          limit(async () => {
            order.push(i)
            inner.push(limit(async () => order.push(`${i}'`)))
          }),
        ),
      )
      await Promise.all(inner)
      assert.deepEqual(order, [0, 1, 2, "0'", "1'", "2'"])
    })
  })
}
