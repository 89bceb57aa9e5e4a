/// <reference types="node" />
// Types of the named (process-wide) mode of LRUCache. See docs/named-cache.md.

/** Keys a named cache accepts: strings and numbers (SameValueZero). */
export type NamedKey = string | number

/** Why an entry left the cache (lru-cache's dispose reasons). */
export type NamedDisposeReason = 'evict' | 'set' | 'delete' | 'expire'

export interface NamedLRUCacheOptions<K extends NamedKey, V> {
  /** The process-wide name: every thread that opens it shares one cache. */
  name: string
  /** Names this handle in metrics and traces; a non-empty string. Default: `name`. */
  label?: string
  /** Most entries held. A named cache needs `max` or `maxSize`. */
  max?: number
  /** Most bytes held: key + value + fixed per-entry overhead, counted exactly. */
  maxSize?: number
  /** Largest single entry in bytes (default: `maxSize`). */
  maxEntrySize?: number
  /** Default time to live in ms (0: none). */
  ttl?: number
  /**
   * Splits the store into this many parts by key hash (1 to 256, at most
   * `max`; default 1), each with its own lock, LRU order and share of `max`
   * and `maxSize`, so threads contend less. With 1 the cache keeps one exact
   * LRU order; with more it is LRU per shard (approximate overall), and an
   * entry larger than one shard's share of `maxSize` is refused. Every
   * handle on one name must pass the same value.
   */
  shards?: number
  /** An object whose `now()` gives the time in ms (for tests). */
  perf?: { now(): number }
  allowStale?: boolean
  updateAgeOnGet?: boolean
  updateAgeOnHas?: boolean
  noDeleteOnStaleGet?: boolean
  noDisposeOnSet?: boolean
  noUpdateTTL?: boolean
  /**
   * Loads a missing or stale value for `fetch()`. Concurrent fetches of one
   * key in any threads of the process call it once.
   */
  fetchMethod?: (
    key: K,
    staleValue: V | undefined,
    options: { signal: AbortSignal; options: NamedFetchOptions; context: unknown },
  ) => Promise<V | undefined> | V | undefined
  /** Called in the thread whose operation removed the entry. */
  dispose?: (value: V, key: K, reason: NamedDisposeReason) => void
  /** Called after the operation, in the thread that caused it. */
  disposeAfter?: (value: V, key: K, reason: NamedDisposeReason) => void
}

export interface NamedGetOptions {
  allowStale?: boolean
  updateAgeOnGet?: boolean
  noDeleteOnStaleGet?: boolean
}

export interface NamedSetOptions {
  ttl?: number
  start?: number
  noDisposeOnSet?: boolean
  noUpdateTTL?: boolean
  /** Ignored: a named cache measures sizes itself. */
  size?: number
}

export interface NamedFetchOptions extends NamedGetOptions, NamedSetOptions {
  /** Fetch even if a fresh value is cached. */
  forceRefresh?: boolean
  /** Leaves this call's wait (or aborts this thread's fetchMethod call). */
  signal?: AbortSignal
  /** Passed to fetchMethod. */
  context?: unknown
}

export interface NamedEntry<V> {
  value: V
  ttl?: number
  start?: number
  size?: number
}

export interface NamedLRUCacheStats {
  hits: number
  misses: number
  sets: number
  evictions: number
  expirations: number
  deletes: number
  size: number
  calculatedSize: number
}

/**
 * A handle on a process-wide LRU cache kept in Rust memory. Values are
 * copied in and out (strings, numbers and byte arrays directly, anything
 * else through the V8 serializer): `get` returns a copy, never the object
 * that was `set`.
 */
export declare class NamedLRUCache<K extends NamedKey = NamedKey, V = unknown> implements Iterable<[K, V]> {
  constructor(options: NamedLRUCacheOptions<K, V>)
  readonly name: string
  /** The `label` option, else the `name`. */
  readonly label: string
  readonly max: number
  readonly maxSize: number
  /** The largest entry stored, in bytes (0: no limit); with shards, at most one shard's share of `maxSize`. */
  readonly maxEntrySize: number
  readonly ttl: number
  /** How many shards the store has (the `shards` option; 1: one exact LRU order). */
  readonly shards: number
  readonly size: number
  readonly calculatedSize: number
  readonly closed: boolean
  readonly dispose: NamedLRUCacheOptions<K, V>['dispose']
  readonly disposeAfter: NamedLRUCacheOptions<K, V>['disposeAfter']
  readonly perf: { now(): number } | undefined
  readonly fetchMethod: NamedLRUCacheOptions<K, V>['fetchMethod']
  allowStale: boolean
  updateAgeOnGet: boolean
  updateAgeOnHas: boolean
  noDeleteOnStaleGet: boolean
  noDisposeOnSet: boolean
  noUpdateTTL: boolean
  get(key: K, options?: NamedGetOptions): V | undefined
  /**
   * A fresh cached value, or `fetchMethod`'s result (stored). Rejects with
   * `ERR_WORKER_EXITED` if the thread running the fetch this call waits for
   * exits or closes its cache first.
   */
  fetch(key: K, options?: NamedFetchOptions): Promise<V | undefined>
  peek(key: K, options?: { allowStale?: boolean }): V | undefined
  has(key: K, options?: { updateAgeOnHas?: boolean }): boolean
  set(key: K, value: V | undefined, options?: NamedSetOptions): this
  delete(key: K): boolean
  clear(): void
  pop(): V | undefined
  purgeStale(): boolean
  getRemainingTTL(key: K): number
  entries(): Generator<[K, V], void, void>
  rentries(): Generator<[K, V], void, void>
  keys(): Generator<K, void, void>
  rkeys(): Generator<K, void, void>
  values(): Generator<V, void, void>
  rvalues(): Generator<V, void, void>
  [Symbol.iterator](): Generator<[K, V], void, void>
  readonly [Symbol.toStringTag]: string
  forEach(fn: (value: V, key: K, cache: this) => unknown, thisp?: unknown): void
  rforEach(fn: (value: V, key: K, cache: this) => unknown, thisp?: unknown): void
  find(fn: (value: V, key: K, cache: this) => boolean | undefined | void, options?: NamedGetOptions): V | undefined
  info(key: K): NamedEntry<V> | undefined
  dump(): Array<[K, NamedEntry<V>]>
  load(entries: Array<[K, NamedEntry<V>]>): void
  /** Counters of the shared cache (all threads) and its current size. */
  stats(): NamedLRUCacheStats
  /** Lets go of this handle; the last handle closed frees the cache. */
  close(): void
  [Symbol.dispose](): void
  /** Live named caches in the process. */
  static liveCount(): number
  /** Fixed bytes each entry is charged besides its key and value. */
  static entryOverhead(): number
}
