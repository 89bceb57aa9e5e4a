'use strict'
// A consumer's CommonJS program: every primitive through its public entry point.
const assert = require('node:assert/strict')
const path = require('node:path')
const bulkhead = require('bulkhead')
const { LRUCache } = require('bulkhead/lru-cache')
const pLimit = require('bulkhead/p-limit').default
const { limitFunction, Limiter } = require('bulkhead/p-limit')
const { WorkerPool } = require('bulkhead/pool')
const { SingleFlight } = require('bulkhead/single-flight')

async function main() {
  assert.equal(bulkhead.LRUCache, LRUCache)
  assert.equal(bulkhead.pLimit, pLimit)

  const cache = new LRUCache({ max: 2 })
  cache.set('a', 1).set('b', 2).set('c', 3)
  assert.deepEqual([...cache.keys()], ['c', 'b'])

  let running = 0
  let peak = 0
  const limit = pLimit(2)
  const work = async (n) => {
    peak = Math.max(peak, ++running)
    await new Promise((resolve) => setTimeout(resolve, 2))
    running--
    return n * 2
  }
  assert.deepEqual(await Promise.all([1, 2, 3, 4, 5].map((n) => limit(work, n))), [2, 4, 6, 8, 10])
  assert.equal(peak, 2)
  assert.equal(await limitFunction(async (x) => x + 1, { concurrency: 1 })(41), 42)

  const limiter = new Limiter({ concurrency: 1 })
  assert.equal(await limiter.run(async () => 'ran'), 'ran')
  const hung = limiter.run(() => new Promise(() => {}), { timeout: 20 })
  await assert.rejects(hung, { code: 'ERR_TIMEOUT' })

  const pool = new WorkerPool({ filename: path.join(__dirname, 'task.cjs'), maxThreads: 1 })
  assert.equal(await pool.run({ a: 2, b: 3 }), 5)
  await pool.close()

  const group = new SingleFlight()
  let runs = 0
  const load = async () => {
    runs++
    await new Promise((resolve) => setTimeout(resolve, 5))
    return 'value'
  }
  const values = await Promise.all(Array.from({ length: 10 }, () => group.do('key', load)))
  assert.deepEqual(new Set(values), new Set(['value']))
  assert.equal(runs, 1)

  console.log('use.cjs: all four primitives work through require()')
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
