// Compiled by `tsc --noEmit`: the named cache's hand-written types.
import { NamedLRUCache, type NamedLRUCacheStats } from '../lib/lru-cache-named.js'
import { LRUCache } from '../lib/lru-cache.js'

// The drop-in class takes `name` (and `shards`) too, as the docs' examples do.
const viaDropIn = new LRUCache<string, string>({ name: 'sessions-dropin', max: 100, shards: 4 })
viaDropIn.set('a', 'b')

const cache = new NamedLRUCache<string, { id: number }>({
  name: 'sessions',
  maxSize: 256 * 1024 * 1024,
  ttl: 60_000,
  dispose: (value, key, reason) => void [value.id, key.length, reason],
})
cache.set('a', { id: 1 }, { ttl: 10 }).set('b', { id: 2 })
const v: { id: number } | undefined = cache.get('a', { allowStale: true })
const stats: NamedLRUCacheStats = cache.stats()
for (const [k, value] of cache) void [k.toUpperCase(), value.id]
// @ts-expect-error: keys are strings or numbers
new NamedLRUCache<object, string>({ name: 'x', max: 1 })
const fetching = new NamedLRUCache<string, string>({
  name: 'users',
  max: 100,
  fetchMethod: async (key, stale, { signal }) => (signal.aborted ? stale : key.toUpperCase()),
})
const fetched: Promise<string | undefined> = fetching.fetch('a', { forceRefresh: true })
const sharded = new NamedLRUCache<string, string>({ name: 'hot', max: 10_000, shards: 16 })
const shardCount: number = sharded.shards
// @ts-expect-error: shards is a number
new NamedLRUCache<string, string>({ name: 'hot2', max: 10, shards: '4' })
sharded.close()
fetching.close()
cache.close()
void [v, stats, fetched, shardCount, viaDropIn]
