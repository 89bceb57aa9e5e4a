// Compiled by `tsc --noEmit` (npm run test:types). This file is CommonJS (the
// package has no "type": "module"), so it checks lib/p-limit.d.ts, the types
// `require('bulkhead/p-limit')` resolves to; types-p-limit-esm.test.mts checks
// the ESM side, the one p-limit's own users compile against.
import pLimitDefault, { pLimit, limitFunction, type LimitFunction, type Options } from 'bulkhead/p-limit'

const limit: LimitFunction = pLimit(2)
const same: LimitFunction = pLimitDefault({ concurrency: 2, rejectOnClear: true })
const options: Options = { concurrency: Infinity }
void [same, options]

const n: Promise<number> = limit(async (a: number, b: string) => a + b.length, 1, 'x')
const s: Promise<string> = limit(() => 'sync')
// @ts-expect-error: arguments are checked against fn's parameters
limit(async (a: number) => a, 'not a number')
const counts: number = limit.activeCount + limit.pendingCount + limit.concurrency
limit.concurrency = 4
// @ts-expect-error: activeCount is read-only
limit.activeCount = 1
limit.clearQueue()
const mapped: Promise<string[]> = limit.map([1, 2, 3], async (item: number, index: number) => `${item}:${index}`)

const limited = limitFunction(async (x: number) => x * 2, { concurrency: 1 })
const doubled: Promise<number> = limited(2)
limited.clearQueue()
void [n, s, counts, mapped, doubled]

import { Limiter, type LimiterStats, type LimiterRunOptions } from 'bulkhead/p-limit'

const limiter = new Limiter({ concurrency: 4, maxPending: 100, timeout: 1000, rate: { limit: 10, interval: 1000 } })
const runOptions: LimiterRunOptions = { signal: AbortSignal.timeout(10), timeout: 5, priority: 1, weight: 2 }
const ran: Promise<number> = limiter.run(async (signal: AbortSignal) => (signal.aborted ? 0 : 1), runOptions)
const stats: LimiterStats = limiter.stats()
const p99: number = stats.waitP99 + stats.runP99
const all: Promise<string[]> = limiter.map([1, 2], async (item, index, signal) => `${item}${index}${signal.aborted}`)
const settled: Promise<PromiseSettledResult<number>[]> = limiter.map(new Set([1]), (x) => x, { settle: true })
async function consume(): Promise<void> {
  for await (const value of limiter.mapIterable([1, 2, 3], async (x: number) => x * 2, { concurrency: 2 })) {
    const n: number = value
    void n
  }
}
const shared: Limiter = new Limiter({ concurrency: 1, name: 'shared' })
void shared
// @ts-expect-error: a name is a string
new Limiter({ concurrency: 1, name: 42 })
limiter.concurrency = 8
limiter.pause()
limiter.resume()
void [ran, p99, all, settled, consume, limiter.onIdle(), limiter.onEmpty(), limiter.onSizeLessThan(3), limiter.close()]

// Distributed mode: the same class and members, with the Redis options.
const distributed: Limiter = new Limiter({
  name: 'api',
  redis: { url: 'redis://127.0.0.1:6379/0', commandTimeout: 500 },
  concurrency: 5,
  maxPending: 100,
  queueTimeout: 2000,
  timeout: 5000,
  rate: { limit: 10, interval: 1000 },
  lease: 3000,
  onRedisDown: 'local',
})
// @ts-expect-error onRedisDown is 'reject', 'local' or 'allow'
new Limiter({ name: 'api', redis: 'redis://127.0.0.1:6379/0', concurrency: 1, onRedisDown: 'retry' })
const distStats: LimiterStats = distributed.stats()
const trips: number | undefined = distStats.redis?.roundTrips
const limiterName: string | undefined = distributed.name
distributed.pause()
distributed.resume()
distributed.clear()
void [trips, limiterName, distributed.isPaused, distributed.onIdle(), distributed.close()]
