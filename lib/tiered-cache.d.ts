import type { RedisOption } from './errors'
import type { RedisConnectionStats } from './p-limit'

/** How values cross processes and live in Redis (default JSON, readable by every Node version). */
export interface TieredCacheSerializer {
  serialize(value: unknown): string
  deserialize(text: string): unknown
}

/** Options of the loader: its signal fires when every caller waiting on the load, in every instance, has left. */
export interface TieredCacheFetcherOptions {
  signal: AbortSignal
}

/** Loads the value of a key that is in neither tier. `undefined` is returned but not cached. */
export type TieredCacheFetchMethod<K extends string | number, V> =
  (key: K, staleValue: V | undefined, options: TieredCacheFetcherOptions) => V | undefined | Promise<V | undefined>

/** Options of a `TieredCache`. */
export interface TieredCacheOptions<K extends string | number = string, V = unknown> {
  /** The cache's name: every instance opening the same name on the same Redis shares L2, the bus and the loads. */
  name: string
  /** `redis://` / `rediss://` URL or `{ url, keyPrefix, commandTimeout, connectTimeout, tls }` (docs/redis.md). */
  redis: RedisOption
  /** L1 bound in entries (default 10000 when `maxSize` is not given either). */
  max?: number
  /** L1 bound in the units of `sizeCalculation`. */
  maxSize?: number
  /** Size of one L1 entry, for `maxSize`. */
  sizeCalculation?: (value: V, key: string) => number
  /** ms a value is fresh (required: every L2 entry carries a TTL). */
  ttl: number
  /** ms after `ttl` during which a stale value is served while one refresh runs, or when the loader fails (default 0). */
  grace?: number
  /** Longest time (ms) an L1 entry is served without reading Redis: the staleness bound after a missed invalidation (default `ttl`). */
  l1Ttl?: number
  /** Default loader for `fetch()`. */
  fetchMethod?: TieredCacheFetchMethod<K, V>
  /** When Redis does not answer: `'local'` (default: serve L1, load in this process, deduplicated) or `'reject'` (`ERR_UNAVAILABLE` on an L1 miss). */
  onRedisDown?: 'local' | 'reject'
  /** Value encoding in Redis (default JSON). */
  serializer?: TieredCacheSerializer
  /** Names this cache in traces (`bulkhead:tiered-cache`); default: `name`. Shares nothing. */
  label?: string
}

/** Options of one `fetch()`. */
export interface TieredCacheFetchOptions<K extends string | number = string, V = unknown> {
  fetchMethod?: TieredCacheFetchMethod<K, V>
  /** Fresh time of a value this call loads (ms). */
  ttl?: number
  /** Grace of a value this call loads (ms). */
  grace?: number
  /** This caller leaves when it fires (`ERR_ABORTED`); the load goes on while others wait. */
  signal?: AbortSignal
  /** Skip L1 and L2 and load (the current value, if within grace, is served if the loader fails). */
  forceRefresh?: boolean
}

/** Options of `set()`. */
export interface TieredCacheSetOptions {
  ttl?: number
  grace?: number
}

/** This process's counters of one `TieredCache`. */
export interface TieredCacheStats {
  l1Hits: number
  l2Hits: number
  /** Stale values served within grace (stale-while-revalidate). */
  staleHits: number
  misses: number
  /** Loader runs in this process. */
  loads: number
  /** Calls that joined a load already running in this process. */
  loadsJoinedLocally: number
  /** Loads whose value came from another instance (its load, or L2 written meanwhile). */
  loadsJoinedRemote: number
  loadErrors: number
  /** Stale values served because the loader failed. */
  staleIfError: number
  /** Background refreshes started. */
  refreshes: number
  invalidationsSent: number
  invalidationsReceived: number
  /** Times the bus subscriber reconnected (each one cleared L1). */
  busReconnects: number
  /** Redis commands that failed and opened the breaker. */
  fallbacks: number
  /** Calls refused with `ERR_UNAVAILABLE` (`onRedisDown: 'reject'`). */
  rejectedWhileDown: number
  l1Size: number
  l1CalculatedSize: number
  /** Whether the breaker is open (Redis skipped for now). */
  redisDown: boolean
  redis?: RedisConnectionStats
}

/**
 * An in-process LRU (L1) in front of Redis (L2), kept coherent across
 * instances by an invalidation bus, with one load per key across the fleet.
 * See docs/tiered-cache.md.
 */
export declare class TieredCache<K extends string | number = string, V = unknown> {
  constructor(options: TieredCacheOptions<K, V>)
  readonly name: string
  /** The label naming this cache in traces: `options.label`, else `name`. */
  readonly label: string
  /** Entries in this process's L1. */
  readonly size: number
  /** L1 → L2 → one load across every instance. */
  fetch(key: K, options?: TieredCacheFetchOptions<K, V>): Promise<V | undefined>
  /** L1 only, if fresh (sync). */
  get(key: K): V | undefined
  /** Writes to L2 then L1; other instances drop the key. */
  set(key: K, value: V, options?: TieredCacheSetOptions): Promise<void>
  /** Deletes from L2 and every instance's L1; resolves to whether L2 had it. */
  delete(key: K): Promise<boolean>
  /** Deletes every key of this cache from L2 and every instance's L1. */
  clear(): Promise<void>
  stats(): TieredCacheStats
  /** Lets go of the Redis connections; later calls reject with `ERR_CLOSED`. */
  close(): void
}
