// Compiled by `tsc --noEmit` (npm run test:types): the `label` option and
// getter of every class, and the tracing context types (docs/observability.md).
import { pLimit, limitFunction, Limiter, type LimiterTraceContext } from 'bulkhead/p-limit'
import { SingleFlight, type SingleFlightTraceContext } from 'bulkhead/single-flight'
import { WorkerPool, type PoolTraceContext } from 'bulkhead/pool'
import { LRUCache } from 'bulkhead/lru-cache'
import diagnostics_channel from 'node:diagnostics_channel'

const limit = pLimit({ concurrency: 2, label: 'a' })
const limitLabel: string | undefined = limit.label
const limited = limitFunction(async (x: number) => x, { concurrency: 1, label: 'f' })
const limitedLabel: string | undefined = limited.label
// @ts-expect-error: label is read-only
limit.label = 'b'
// @ts-expect-error: a label is a string
pLimit({ concurrency: 1, label: 1 })

const limiter = new Limiter({ concurrency: 1, name: 'n', label: 'l' })
const limiterLabel: string | undefined = limiter.label
// @ts-expect-error: a label is a string
new Limiter({ concurrency: 1, label: 1 })

const group = new SingleFlight({ label: 'g' })
const groupLabel: string | undefined = group.label
const groupName: string | undefined = group.name

const pool = new WorkerPool({ filename: 'task.js', label: 'p' })
const poolLabel: string | undefined = pool.label
const poolOptionLabel: string | undefined = pool.options.label

const cache = new LRUCache<string, number>({ max: 1, label: 'c' })
const cacheLabel: string | undefined = cache.label
void [limitLabel, limitedLabel, limiterLabel, groupLabel, groupName, poolLabel, poolOptionLabel, cacheLabel]

diagnostics_channel.tracingChannel<unknown, LimiterTraceContext & object>('bulkhead:limiter').subscribe({
  start(context) {
    const priority: number = context.priority
    const wait: number | undefined = context.waitTime
    const run: number | undefined = context.runTime
    void [priority, wait, run]
  },
  end() {},
  asyncStart() {},
  asyncEnd() {},
  error() {},
})
const flight = (context: SingleFlightTraceContext): boolean => context.joined || context.leader
const outcome = (context: PoolTraceContext): 'returned' | 'threw' | 'failed' | undefined => context.outcome
void [flight, outcome]
