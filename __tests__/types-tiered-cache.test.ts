// Compiled by `tsc --noEmit` (npm run test:types): the hand-written types of
// bulkhead/tiered-cache accept what the API accepts and reject the rest.
import { TieredCache, type TieredCacheStats } from 'bulkhead/tiered-cache'
import { TieredCache as FromMain } from 'bulkhead'

const cache = new TieredCache<string, { id: number }>({
  name: 'users',
  redis: { url: 'redis://127.0.0.1:6379/0', commandTimeout: 200 },
  ttl: 60_000,
  grace: 10_000,
  l1Ttl: 5_000,
  max: 1000,
  fetchMethod: async (key, stale, { signal }) => (signal.aborted ? stale : { id: key.length }),
  onRedisDown: 'reject',
})
new FromMain({ name: 'n', redis: 'redis://h:6379', ttl: 1, maxSize: 10, sizeCalculation: () => 1 })

async function use(): Promise<void> {
  const v: { id: number } | undefined = await cache.fetch('k', { ttl: 5, grace: 1, signal: AbortSignal.timeout(5), forceRefresh: true })
  const w: { id: number } | undefined = cache.get('k')
  await cache.set('k', { id: 2 }, { ttl: 10 })
  const had: boolean = await cache.delete('k')
  await cache.clear()
  const stats: TieredCacheStats = cache.stats()
  const n: number = stats.l1Hits + stats.l2Hits + stats.loads + stats.loadsJoinedLocally + stats.loadsJoinedRemote +
    stats.invalidationsSent + stats.invalidationsReceived + stats.busReconnects + stats.fallbacks
  cache.close()
  // @ts-expect-error ttl is required
  new TieredCache({ name: 'x', redis: 'redis://h' })
  // @ts-expect-error values must match V
  await cache.set('k', 'not a user')
  // @ts-expect-error onRedisDown is 'local' | 'reject'
  new TieredCache({ name: 'x', redis: 'redis://h', ttl: 1, onRedisDown: 'allow' })
  void v; void w; void had; void n
}
void use
