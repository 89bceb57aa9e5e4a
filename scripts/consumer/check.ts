// Type-checked in a consumer app under moduleResolution node10, node16/nodenext and bundler.
import { LRUCache as Root, pLimit as rootLimit } from 'bulkhead'
import { LRUCache } from 'bulkhead/lru-cache'
import pLimit, { limitFunction, Limiter, type LimitFunction } from 'bulkhead/p-limit'
import { WorkerPool } from 'bulkhead/pool'
import { SingleFlight } from 'bulkhead/single-flight'

const cache: LRUCache<string, number> = new Root<string, number>({ max: 10 })
cache.set('a', 1)
const hit: number | undefined = cache.get('a')

const limit: LimitFunction = pLimit(2)
const doubled: Promise<number> = limit(async (n: number) => n * 2, 21)
const same: typeof pLimit = rootLimit
const limited = limitFunction(async (s: string) => s.length, { concurrency: 1 })
const length: Promise<number> = limited('four')

const limiter = new Limiter({ concurrency: 3 })
const ran: Promise<string> = limiter.run(async () => 'done', { timeout: 100 })

const pool = new WorkerPool({ filename: './task.cjs', maxThreads: 1 })
const result: Promise<unknown> = pool.run({ a: 1, b: 2 })

const group = new SingleFlight()
const shared: Promise<number> = group.do('key', async () => 1)

export { hit, doubled, same, length, ran, result, shared }
