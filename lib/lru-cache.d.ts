// Types of bulkhead/lru-cache: the public shape of lru-cache 11's LRUCache
// (so code typed against lru-cache compiles unchanged) plus bulkhead's
// opt-in extensions (`stats()`, `evictExpiredFirst`).

/** A clock: anything with a `now()` in milliseconds, like `performance`. */
export interface Perf {
  now: () => number
}

/** The promise a background fetch stores in the cache while it runs. */
export type BackgroundFetch<V> = Promise<V | undefined> & {
  __returned: BackgroundFetch<V> | undefined
  __abortController: AbortController
  __staleWhileFetching: V | undefined
}

/** A queued `disposeAfter` call. */
export type DisposeTask<K, V> = [value: V, key: K, reason: LRUCache.DisposeReason]

export declare namespace LRUCache {
  type Size = number
  type Milliseconds = number
  type Count = number

  /** Why an entry left the cache (the `reason` passed to `dispose`). */
  type DisposeReason = 'evict' | 'set' | 'delete' | 'expire' | 'fetch'
  type Disposer<K, V> = (value: V, key: K, reason: DisposeReason) => void
  /** How an entry got its value (the `reason` passed to `onInsert`). */
  type InsertReason = 'add' | 'update' | 'replace'
  type Inserter<K, V> = (value: V, key: K, reason: InsertReason) => void
  type SizeCalculator<K, V> = (value: V, key: K) => Size

  /** The third argument of `fetchMethod`. */
  interface FetcherOptions<K, V, FC = unknown> {
    signal: AbortSignal
    options: FetcherFetchOptions<K, V, FC>
    context: FC
  }

  /** Filled in by an operation when passed as `status`: what happened, and why. */
  interface Status<K, V, FC = unknown> {
    op?: 'get' | 'set' | 'memo' | 'fetch' | 'delete' | 'has' | 'peek'
    set?: 'add' | 'update' | 'replace' | 'miss' | 'deleted'
    delete?: LRUCache.DisposeReason
    peek?: 'hit' | 'miss' | 'stale'
    memo?: 'hit' | 'miss'
    context?: unknown
    ttl?: Milliseconds
    start?: Milliseconds
    now?: Milliseconds
    remainingTTL?: Milliseconds
    entrySize?: Size
    totalCalculatedSize?: Size
    maxEntrySizeExceeded?: true
    key?: K
    value?: V
    oldValue?: V
    has?: 'hit' | 'stale' | 'miss'
    fetch?: 'get' | 'inflight' | 'miss' | 'hit' | 'stale' | 'refresh'
    forceRefresh?: boolean
    fetchDispatched?: true
    fetchUpdated?: true
    fetchError?: Error
    fetchAborted?: true
    fetchAbortIgnored?: true
    fetchResolved?: true
    fetchRejected?: true
    get?: 'stale' | 'hit' | 'miss' | 'fetching' | 'stale-fetching'
    returnedStale?: true
    trace?: boolean
    cache?: LRUCache<K & {}, V & {}, FC>
  }

  type FetchPicked =
    | 'allowStale'
    | 'updateAgeOnGet'
    | 'noDeleteOnStaleGet'
    | 'sizeCalculation'
    | 'ttl'
    | 'noDisposeOnSet'
    | 'noUpdateTTL'
    | 'noDeleteOnFetchRejection'
    | 'allowStaleOnFetchRejection'
    | 'ignoreFetchAbort'
    | 'allowStaleOnFetchAbort'

  interface FetcherFetchOptions<K, V, FC = unknown> extends Pick<OptionsBase<K, V, FC>, FetchPicked> {
    status?: Status<K, V, FC>
    size?: Size
  }
  interface FetchOptions<K, V, FC> extends FetcherFetchOptions<K, V, FC> {
    forceRefresh?: boolean
    context?: FC
    signal?: AbortSignal
    status?: Status<K, V, FC>
  }
  interface FetchOptionsWithContext<K, V, FC> extends FetchOptions<K, V, FC> {
    context: FC
  }
  interface FetchOptionsNoContext<K, V, FC extends undefined | void = undefined> extends FetchOptions<K, V, FC> {
    context?: FC
  }

  interface MemoOptions<K, V, FC = unknown> extends Pick<OptionsBase<K, V, FC>, FetchPicked> {
    forceRefresh?: boolean
    context?: FC
    status?: Status<K, V, FC>
  }
  interface MemoOptionsWithContext<K, V, FC> extends MemoOptions<K, V, FC> {
    context: FC
  }
  interface MemoOptionsNoContext<K, V, FC extends undefined | void = undefined> extends MemoOptions<K, V, FC> {
    context?: FC
  }
  /** The third argument of `memoMethod`. */
  interface MemoizerOptions<K, V, FC = unknown> {
    options: MemoizerMemoOptions<K, V, FC>
    context: FC
  }
  interface MemoizerMemoOptions<K, V, FC = unknown>
    extends Pick<
      OptionsBase<K, V, FC>,
      'allowStale' | 'updateAgeOnGet' | 'noDeleteOnStaleGet' | 'sizeCalculation' | 'ttl' | 'noDisposeOnSet' | 'noUpdateTTL'
    > {
    status?: Status<K, V, FC>
    size?: Size
    start?: Milliseconds
  }

  interface HasOptions<K, V, FC> extends Pick<OptionsBase<K, V, FC>, 'updateAgeOnHas'> {
    status?: Status<K, V, FC>
  }
  interface GetOptions<K, V, FC> extends Pick<OptionsBase<K, V, FC>, 'allowStale' | 'updateAgeOnGet' | 'noDeleteOnStaleGet'> {
    status?: Status<K, V, FC>
  }
  interface PeekOptions<K, V, FC> extends Pick<OptionsBase<K, V, FC>, 'allowStale'> {
    status?: Status<K, V, FC>
  }
  interface SetOptions<K, V, FC> extends Pick<OptionsBase<K, V, FC>, 'sizeCalculation' | 'ttl' | 'noDisposeOnSet' | 'noUpdateTTL'> {
    size?: Size
    start?: Milliseconds
    status?: Status<K, V, FC>
  }

  type Fetcher<K, V, FC = unknown> = (
    key: K,
    staleValue: V | undefined,
    options: FetcherOptions<K, V, FC>,
  ) => Promise<V | undefined | void> | V | undefined | void
  type Memoizer<K, V, FC = unknown> = (key: K, staleValue: V | undefined, options: MemoizerOptions<K, V, FC>) => V

  /** Constructor options; the same names, defaults and rules as lru-cache 11. */
  interface OptionsBase<K, V, FC> {
    /** Most entries (a positive integer; 0 or unset: no count limit). */
    max?: Count
    /** Default time to live in ms (0: none). */
    ttl?: Milliseconds
    /** How long a `perf.now()` reading is reused, in ms (default 1). */
    ttlResolution?: Milliseconds
    /** Remove expired entries on a timer (bulkhead: one unref'd timer per cache). */
    ttlAutopurge?: boolean
    updateAgeOnGet?: boolean
    updateAgeOnHas?: boolean
    allowStale?: boolean
    dispose?: Disposer<K, V>
    onInsert?: Inserter<K, V>
    disposeAfter?: Disposer<K, V>
    noDisposeOnSet?: boolean
    noUpdateTTL?: boolean
    maxSize?: Size
    backgroundFetchSize?: number
    maxEntrySize?: Size
    sizeCalculation?: SizeCalculator<K, V>
    fetchMethod?: Fetcher<K, V, FC>
    memoMethod?: Memoizer<K, V, FC>
    noDeleteOnFetchRejection?: boolean
    noDeleteOnStaleGet?: boolean
    allowStaleOnFetchRejection?: boolean
    allowStaleOnFetchAbort?: boolean
    ignoreFetchAbort?: boolean
    perf?: Perf
    /**
     * bulkhead extension (default false): when room is needed, drop an
     * expired entry (dispose reason `'expire'`) before the least recently
     * used live one.
     */
    evictExpiredFirst?: boolean
    /**
     * bulkhead extension: names this cache in metrics and traces. A
     * non-empty string (anything else throws a TypeError/RangeError naming
     * `options.label`); default `undefined`, or the `name` of a named cache.
     * It does not turn on process-wide sharing (that is `name`).
     */
    label?: string
    /**
     * bulkhead extension: makes this a named, process-wide cache shared by
     * every worker_thread that opens the same name, its entries in Rust
     * memory (see docs/lru-cache.md, "Named mode"). Keys must be strings or
     * numbers, values are copied, and `max` or `maxSize` is required.
     */
    name?: string
    /**
     * bulkhead extension, named caches only: split the store into this many
     * shards (1 to 256, at most `max`; default 1, one exact LRU order), each
     * with its own lock, LRU order and share of `max` and `maxSize`.
     */
    shards?: number
  }
  interface OptionsMaxLimit<K, V, FC> extends OptionsBase<K, V, FC> {
    max: Count
  }
  interface OptionsTTLLimit<K, V, FC> extends OptionsBase<K, V, FC> {
    ttl: Milliseconds
    ttlAutopurge: boolean
  }
  interface OptionsSizeLimit<K, V, FC> extends OptionsBase<K, V, FC> {
    maxSize: Size
  }
  type Options<K, V, FC> = OptionsMaxLimit<K, V, FC> | OptionsSizeLimit<K, V, FC> | OptionsTTLLimit<K, V, FC>

  /** An entry as `info()`, `dump()` and `load()` see it. */
  interface Entry<V> {
    value: V
    ttl?: Milliseconds
    size?: Size
    start?: Milliseconds
  }

  /** bulkhead extension: the counters `stats()` returns. */
  interface Stats {
    /** Reads (`get`, `fetch`, `memo`, `find`) served a fresh value. */
    hits: number
    /** Reads that found nothing fresh. */
    misses: number
    /** Entries added or replaced. */
    sets: number
    /** Entries evicted to make room, or popped. */
    evictions: number
    /** Entries removed because their TTL passed. */
    expirations: number
    /** Entries deleted (`delete`, `clear`, overwrite by `undefined`). */
    deletes: number
    size: number
    calculatedSize: number
  }
}

type FetchOpts<K, V, FC> = unknown extends FC
  ? LRUCache.FetchOptions<K, V, FC>
  : FC extends undefined | void
    ? LRUCache.FetchOptionsNoContext<K, V, FC>
    : LRUCache.FetchOptionsWithContext<K, V, FC>
type FetchOptsNoCtx<K, V, FC> = unknown extends FC
  ? LRUCache.FetchOptions<K, V, FC>
  : FC extends undefined | void
    ? LRUCache.FetchOptionsNoContext<K, V, FC>
    : never
type MemoOpts<K, V, FC> = unknown extends FC
  ? LRUCache.MemoOptions<K, V, FC>
  : FC extends undefined | void
    ? LRUCache.MemoOptionsNoContext<K, V, FC>
    : LRUCache.MemoOptionsWithContext<K, V, FC>
type MemoOptsNoCtx<K, V, FC> = unknown extends FC
  ? LRUCache.MemoOptions<K, V, FC>
  : FC extends undefined | void
    ? LRUCache.MemoOptionsNoContext<K, V, FC>
    : never
type KeyNoCtx<K, FC> = unknown extends FC ? K : FC extends undefined | void ? K : never

/**
 * A least-recently-used cache with optional TTLs and sizes; a drop-in for
 * lru-cache 11's `LRUCache`, with its policy engine in Rust.
 * Keys and values must not be `null` or `undefined`.
 */
export declare class LRUCache<K extends {}, V extends {}, FC = unknown> {
  #private
  get perf(): Perf
  ttl: LRUCache.Milliseconds
  ttlResolution: LRUCache.Milliseconds
  ttlAutopurge: boolean
  updateAgeOnGet: boolean
  updateAgeOnHas: boolean
  allowStale: boolean
  noDisposeOnSet: boolean
  noUpdateTTL: boolean
  maxEntrySize: LRUCache.Size
  sizeCalculation?: LRUCache.SizeCalculator<K, V>
  noDeleteOnFetchRejection: boolean
  noDeleteOnStaleGet: boolean
  allowStaleOnFetchAbort: boolean
  allowStaleOnFetchRejection: boolean
  ignoreFetchAbort: boolean
  backgroundFetchSize: number
  /** bulkhead extension: see {@link LRUCache.OptionsBase.evictExpiredFirst}. */
  evictExpiredFirst: boolean
  /** bulkhead extension: the `label` option (`undefined` when not given). */
  get label(): string | undefined

  get max(): LRUCache.Count
  get maxSize(): LRUCache.Count
  get calculatedSize(): LRUCache.Size
  get size(): LRUCache.Count
  get fetchMethod(): LRUCache.Fetcher<K, V, FC> | undefined
  get memoMethod(): LRUCache.Memoizer<K, V, FC> | undefined
  get dispose(): LRUCache.Disposer<K, V> | undefined
  get onInsert(): LRUCache.Inserter<K, V> | undefined
  get disposeAfter(): LRUCache.Disposer<K, V> | undefined

  constructor(options: LRUCache.Options<K, V, FC> | LRUCache<K, V, FC>)

  /** Milliseconds left of `key`'s TTL: 0 if absent, `Infinity` if it has none. */
  getRemainingTTL(key: K): number
  /** `[key, value]` pairs, most recently used first. */
  entries(): Generator<[K, V], void, unknown>
  /** `[key, value]` pairs, least recently used first. */
  rentries(): Generator<(K | V)[], void, unknown>
  keys(): Generator<K, void, unknown>
  rkeys(): Generator<K, void, unknown>
  values(): Generator<V, void, unknown>
  rvalues(): Generator<V | undefined, void, unknown>
  [Symbol.iterator](): Generator<[K, V], void, unknown>
  [Symbol.toStringTag]: string
  find(fn: (v: V, k: K, self: LRUCache<K, V, FC>) => boolean, getOptions?: LRUCache.GetOptions<K, V, FC>): V | undefined
  forEach(fn: (v: V, k: K, self: LRUCache<K, V, FC>) => unknown, thisp?: unknown): void
  rforEach(fn: (v: V, k: K, self: LRUCache<K, V, FC>) => unknown, thisp?: unknown): void
  /** Deletes every stale entry; true if any went. */
  purgeStale(): boolean
  info(key: K): LRUCache.Entry<V> | undefined
  /** Every entry, least recently used first, with portable `start` times. */
  dump(): [K, LRUCache.Entry<V>][]
  /** Clears the cache and loads `arr` (the shape `dump()` returns). */
  load(arr: [K, LRUCache.Entry<V>][]): void
  set(k: K, v: V | undefined, setOptions?: LRUCache.SetOptions<K, V, FC>): this
  /** Removes and returns the least recently used value. */
  pop(): V | undefined
  has(k: K, hasOptions?: LRUCache.HasOptions<K, V, FC>): boolean
  peek(k: K, peekOptions?: LRUCache.PeekOptions<K, V, FC>): V | undefined
  fetch(k: K, fetchOptions: FetchOpts<K, V, FC>): Promise<undefined | V>
  fetch(k: KeyNoCtx<K, FC>, fetchOptions?: FetchOptsNoCtx<K, V, FC>): Promise<undefined | V>
  forceFetch(k: K, fetchOptions: FetchOpts<K, V, FC>): Promise<V>
  forceFetch(k: KeyNoCtx<K, FC>, fetchOptions?: FetchOptsNoCtx<K, V, FC>): Promise<V>
  memo(k: K, memoOptions: MemoOpts<K, V, FC>): V
  memo(k: KeyNoCtx<K, FC>, memoOptions?: MemoOptsNoCtx<K, V, FC>): V
  get(k: K, getOptions?: LRUCache.GetOptions<K, V, FC>): V | undefined
  delete(k: K): boolean
  clear(): void
  /** bulkhead extension: aggregate counters since construction. */
  stats(): LRUCache.Stats
}
