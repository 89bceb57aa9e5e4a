// A consumer's ES module: every primitive through its public entry point.
import assert from 'node:assert/strict'
import * as bulkhead from 'bulkhead'
import { LRUCache } from 'bulkhead/lru-cache'
import pLimit, { limitFunction, Limiter } from 'bulkhead/p-limit'
import { WorkerPool } from 'bulkhead/pool'
import { SingleFlight } from 'bulkhead/single-flight'

assert.equal(bulkhead.LRUCache, LRUCache)
assert.equal(bulkhead.pLimit, pLimit)

const cache = new LRUCache({ max: 2, ttl: 60_000 })
cache.set('a', 1)
assert.equal(cache.get('a'), 1)

const limit = pLimit(1)
assert.deepEqual(await limit.map([1, 2, 3], async (n) => n * 2), [2, 4, 6])
assert.equal(await limitFunction(async () => 'ok', { concurrency: 1 })(), 'ok')
const limiter = new Limiter({ concurrency: 2 })
assert.equal(await limiter.run(async () => 7), 7)

const pool = new WorkerPool({ filename: new URL('./task.mjs', import.meta.url), maxThreads: 1 })
assert.equal(await pool.run({ a: 20, b: 22 }), 42)
await pool.close()

const group = new SingleFlight()
let runs = 0
const results = await Promise.all(
  Array.from({ length: 5 }, () =>
    group.do('k', async () => {
      runs++
      await new Promise((resolve) => setTimeout(resolve, 5))
      return 1
    }),
  ),
)
assert.deepEqual(results, [1, 1, 1, 1, 1])
assert.equal(runs, 1)

console.log('use.mjs: all four primitives work through import')
