/** Options of a `SingleFlight` group. */
export interface SingleFlightOptions {
  /**
   * Deadline of every flight, in milliseconds (default: 30000; `Infinity` for none). When it
   * passes, every caller of the flight rejects with `ERR_TIMEOUT`, the key
   * is freed, the flight's signal fires, and the group keeps no reference to
   * the call or its result. `Infinity` opts out.
   * @default 30000
   */
  timeout?: number
  /**
   * How many flights may be in progress at once. A call that would start a
   * new one beyond it rejects with `ERR_QUEUE_FULL`; joining a flight in
   * progress is always allowed. `Infinity` opts out.
   * @default 10000
   */
  maxKeys?: number
  /**
   * A group shared by every worker_thread of the process: a flight started
   * in one thread is joined by callers in the others, who receive a
   * structured-clone copy of the result. Every thread must open the name
   * with the same `timeout` and `maxKeys`. If the thread leading a flight
   * exits, its waiters elsewhere reject with `ERR_WORKER_EXITED`.
   */
  name?: string
  /**
   * Names this instance in metrics and traces (the `label` of its tracing context); it does
   * not turn on process-wide sharing (that is `name`). A non-empty string. Default: `name`.
   */
  label?: string
  /**
   * How a flight that calls `do()` for its own key (directly or through
   * other keys) is caught, so it rejects with `ERR_RECURSIVE_FLIGHT` instead
   * of waiting on itself. `'sync'` (free) catches such a call made before
   * the flight's first `await`; `'async'` follows the whole async context
   * with an `AsyncLocalStorage`. Default: `'async'` where AsyncLocalStorage
   * runs on AsyncContextFrame (Node 24 and later; Node 22 with
   * `--experimental-async-context-frame`), where it costs nothing measurable;
   * `'sync'` on Node 22, where an enabled AsyncLocalStorage slows every
   * `await` in the process (~90 -> ~220-290 ns; see docs/single-flight.md).
   */
  detectRecursion?: 'sync' | 'async'
  /**
   * Distributed mode: one run of `fn` per key across every process that opens the same `name`
   * on this Redis (at-least-once, not exactly-once; docs/redis.md). Supports `name`
   * (required), `timeout` and `maxKeys` (both per process), `lease`, `onRedisDown` and
   * `serializer`; keys must be strings.
   */
  redis?: import('./errors').RedisOption
  /** Distributed mode: ms a flight lock outlives a process that died leading it (default 30000). */
  lease?: number
  /** Distributed mode, when Redis does not answer: `'local'` (default: dedupe in this process) or `'reject'`. */
  onRedisDown?: 'local' | 'reject'
  /** Distributed mode: how values cross processes (default JSON, readable by every Node version). */
  serializer?: { serialize(value: unknown): string; deserialize(text: string): unknown }
}

/** Options of one call. */
export interface SingleFlightCallOptions {
  /** This caller leaves when it fires (rejects with `ERR_ABORTED`); the flight goes on while others wait. */
  signal?: AbortSignal
  /** Deadline of the flight this call starts (a call that joins is bound by the flight's deadline). */
  timeout?: number
}

/** What `doShared` resolves to. */
export interface SharedResult<T> {
  /** The flight's result. */
  value: T
  /** Whether the result went to more than one call. */
  shared: boolean
}

/** Counters since the group was made (in distributed mode: this process's, plus the optional fields). */
export interface SingleFlightStats {
  /** Flights started (calls of `fn`). */
  flights: number
  /** Calls that started or joined a flight. */
  calls: number
  /** Calls that joined a flight another call started. */
  shared: number
  /** Flights that passed their deadline. */
  timeouts: number
  /** Callers that left because their signal fired. */
  aborts: number
  /** Flights whose `fn` threw or rejected. */
  errors: number
  /** Distributed mode: flights this process led (ran `fn` for every process). */
  led?: number
  /** Distributed mode: flights this process followed (another process ran `fn`). */
  followed?: number
  /** Distributed mode: calls that joined this process's call for the key without a Redis call. */
  joinedLocally?: number
  /** Distributed mode: flights taken over after their leader died or gave up. */
  takeovers?: number
  /** Distributed mode: flights deduplicated in this process only because Redis did not answer. */
  fallbacks?: number
  /**
   * Distributed mode: waits for another process's flight that ended by the
   * backstop poll (1 s, or a third of the lease) instead of the settle
   * message; above zero only while messages are lost (a subscriber
   * reconnecting) or a flight runs longer than the poll interval.
   */
  polled?: number
  /** Distributed mode: keys this process has a call in progress for. */
  inFlight?: number
  /** Distributed mode: the process's connection to this Redis. */
  redis?: import('./p-limit').RedisConnectionStats
}

/** Keys compare with SameValueZero (`NaN` equals `NaN`, `-0` equals `0`). */
export type FlightKey = string | number

/** Per-key deduplication of concurrent async calls. */
export declare class SingleFlight {
  constructor(options?: SingleFlightOptions)
  /** The group's process-wide `name` (`undefined` when it has none). */
  readonly name: string | undefined
  /** The `label` option, else the `name`, else `undefined`. */
  readonly label: string | undefined
  /**
   * Runs `fn` once for every caller of `key` that arrives while it is in
   * progress; they all get its result or its error. Errors are never
   * remembered. `fn` receives the flight's `AbortSignal`, which fires when
   * the last caller has left or the deadline passed.
   */
  do<T>(key: FlightKey, fn: (signal: AbortSignal) => T | PromiseLike<T>, options?: SingleFlightCallOptions): Promise<T>
  /** Like `do`, resolving to `{ value, shared }`. */
  doShared<T>(
    key: FlightKey,
    fn: (signal: AbortSignal) => T | PromiseLike<T>,
    options?: SingleFlightCallOptions,
  ): Promise<SharedResult<T>>
  /**
   * The next call for `key` starts a new flight; callers of the old one still get its result. Returns whether one was in progress.
   * Distributed mode: whether this process had a call for `key` in progress; Redis (and so the other processes) is told asynchronously.
   */
  forget(key: FlightKey): boolean
  /** Whether a flight for `key` is in progress (distributed mode: a call of this process). */
  inFlight(key: FlightKey): boolean
  /** How many keys have a flight in progress (distributed mode: in this process). */
  readonly size: number
  /** Distributed mode only: lets go of the Redis connection; later calls reject with `ERR_CLOSED`. */
  close?(): void
  /** Counters since the group was made. */
  stats(): SingleFlightStats
  /**
   * A function that deduplicates concurrent calls of `fn` by
   * `keyFn(...args)` (default: the first argument); `fn` runs with the
   * arguments of the call that started the flight.
   */
  wrap<A extends unknown[], R>(
    fn: (...args: A) => R | PromiseLike<R>,
    keyFn?: (...args: A) => FlightKey,
  ): (...args: A) => Promise<R>
}

/**
 * The context object of a `bulkhead:single-flight` trace (`diagnostics_channel.tracingChannel`):
 * one per `do()` / `doShared()` call. See docs/observability.md.
 */
export interface SingleFlightTraceContext {
  /** The group's `label` (`undefined` when it has none). */
  label: string | undefined
  /** The group's `name` (`undefined` unless it is process-wide). */
  name: string | undefined
  /** The call's key. */
  key: FlightKey
  /** Whether the call joined a flight already in progress (set by `end`). */
  joined: boolean
  /** Whether the call started the flight, and (in a named group) this thread runs its `fn` (set by `end`). */
  leader: boolean
  /** What the call resolved to (set before `asyncStart`; `{ value, shared }` for `doShared`). */
  result?: unknown
  /** Why the call failed (set before `error`). */
  error?: unknown
}
