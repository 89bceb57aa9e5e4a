// Compiled by `tsc --noEmit` (npm run test:types). The code below is written
// the way a user of lru-cache 11 writes it; only the import differs, so it
// proves a project typed against lru-cache compiles against bulkhead.
import { LRUCache, type BackgroundFetch, type DisposeTask, type Perf } from 'bulkhead/lru-cache'

// Options and the class generics, as in lru-cache's README.
const options: LRUCache.Options<string, { id: number }, unknown> = {
  max: 500,
  maxSize: 5000,
  sizeCalculation: (value, key) => value.id + key.length,
  dispose: (value, key, reason: LRUCache.DisposeReason) => {
    void [value.id, key.toUpperCase(), reason]
  },
  onInsert: (value, key, reason: LRUCache.InsertReason) => void [value, key, reason],
  ttl: 1000 * 60 * 5,
  allowStale: false,
  updateAgeOnGet: false,
  updateAgeOnHas: false,
  fetchMethod: async (key, staleValue, { options, signal, context }) => {
    void [options.ttl, signal.aborted, context, staleValue]
    return { id: key.length }
  },
}
const cache = new LRUCache(options)
cache.set('a', { id: 1 }).set('b', { id: 2 }, { ttl: 10, size: 3, noDisposeOnSet: true })
const got: { id: number } | undefined = cache.get('a', { allowStale: true, updateAgeOnGet: true })
const fetched: Promise<{ id: number } | undefined> = cache.fetch('a', { forceRefresh: true })
const forced: Promise<{ id: number }> = cache.forceFetch('a')
void [got, fetched, forced]

// An options object built separately, then a copy of a cache's options from the cache itself.
const plainOptions = { max: 10, ttl: 100, ttlAutopurge: true }
const fromPeerOptions = new LRUCache<string, number>(new LRUCache<string, number>(plainOptions))

// A cache of numbers, statuses, iteration, dump/load.
const status: LRUCache.Status<string, number> = {}
fromPeerOptions.set('x', 1, { status })
if (status.set === 'add' && status.ttl !== undefined) void status.remainingTTL
const has: boolean = fromPeerOptions.has('x', { updateAgeOnHas: true })
const peeked: number | undefined = fromPeerOptions.peek('x', { allowStale: true })
for (const [k, v] of fromPeerOptions) void [k.length, v.toFixed()]
for (const k of fromPeerOptions.rkeys()) void k.length
fromPeerOptions.forEach((v, k, self) => void [v, k, self.size])
const found: number | undefined = fromPeerOptions.find((v) => v > 0)
const dumped: [string, LRUCache.Entry<number>][] = fromPeerOptions.dump()
fromPeerOptions.load(dumped)
const info: LRUCache.Entry<number> | undefined = fromPeerOptions.info('x')
const popped: number | undefined = fromPeerOptions.pop()
const remaining: number = fromPeerOptions.getRemainingTTL('x')
const deleted: boolean = fromPeerOptions.delete('x')
const purged: boolean = fromPeerOptions.purgeStale()
fromPeerOptions.clear()
const counts: [number, number, number, number] = [
  fromPeerOptions.size,
  fromPeerOptions.calculatedSize,
  fromPeerOptions.max,
  fromPeerOptions.maxSize,
]
fromPeerOptions.allowStale = true
fromPeerOptions.ttl = 5
const tag: string = fromPeerOptions[Symbol.toStringTag]
void [has, peeked, found, info, popped, remaining, deleted, purged, counts, tag]

// fetch with a required context (FC), as lru-cache types it.
const withContext = new LRUCache<string, string, { token: string }>({
  max: 10,
  fetchMethod: (key, _stale, { context }) => `${key}:${context.token}`,
})
void withContext.fetch('k', { context: { token: 't' } })
// @ts-expect-error: the context is required when FC is given
void withContext.fetch('k')

// memo with a memoMethod.
const memo = new LRUCache<number, number>({ max: 10, memoMethod: (n) => n * 2 })
const doubled: number = memo.memo(21)
void doubled

// Object keys, custom perf clock, exported helper types.
const perf: Perf = { now: () => 0 }
const objectKeys = new LRUCache<object, string>({ max: 2, perf })
objectKeys.set({}, 'v')
type Task = DisposeTask<string, number>
const task: Task = [1, 'k', 'evict']
type BF = BackgroundFetch<number>
const maybeBF: BF | undefined = undefined
void [task, maybeBF]

// bulkhead's extensions are typed too.
const stats: LRUCache.Stats = new LRUCache<string, number>({ max: 1, evictExpiredFirst: true }).stats()
const hitRatio: number = stats.hits / Math.max(1, stats.hits + stats.misses)
void hitRatio

// @ts-expect-error: keys may not be null
new LRUCache<null, number>({ max: 1 })
