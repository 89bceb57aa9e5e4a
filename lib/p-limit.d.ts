export type LimitFunction = {
  /** bulkhead extension: the `label` option (`undefined` when not given). */
  readonly label: string | undefined
  /** The number of promises that are currently running. */
  readonly activeCount: number
  /** The number of promises that are waiting to run (their `fn` was not called yet). */
  readonly pendingCount: number
  /** Get or set the concurrency limit. Raising it starts queued tasks (in a microtask). */
  concurrency: number
  /**
   * Discard pending promises that are waiting to run. Running ones are not cancelled.
   * With `rejectOnClear`, pending promises reject with an `AbortError`.
   */
  clearQueue: () => void
  /**
   * Process an iterable of inputs with limited concurrency; the mapper receives the item and its index.
   * Equivalent to `Promise.all(Array.from(iterable, (item, index) => limit(mapperFunction, item, index)))`.
   */
  map: <Input, ReturnType>(
    iterable: Iterable<Input>,
    mapperFunction: (input: Input, index: number) => PromiseLike<ReturnType> | ReturnType,
  ) => Promise<ReturnType[]>
  /**
   * Runs `fn(...arguments)` when a slot is free.
   * @returns The promise returned by calling `fn(...arguments)`.
   */
  <Arguments extends unknown[], ReturnType>(
    function_: (...arguments_: Arguments) => PromiseLike<ReturnType> | ReturnType,
    ...arguments_: Arguments
  ): Promise<ReturnType>
}

export type Options = {
  /** Concurrency limit. Minimum: `1` (`Infinity` allowed). */
  readonly concurrency: number
  /** Reject pending promises with an `AbortError` when `clearQueue()` is called. Default: `false`. */
  readonly rejectOnClear?: boolean
  /**
   * bulkhead extension: names this limit in metrics and traces (the `label` of its
   * `bulkhead:limiter` tracing context). A non-empty string; default `undefined`.
   */
  readonly label?: string
}

/**
 * Run multiple promise-returning and async functions with limited concurrency (p-limit 7 semantics).
 * @param concurrency - Concurrency limit, or an options object with a `concurrency` property.
 * @returns A `limit` function.
 */
declare function pLimit(concurrency: number | Options): LimitFunction

/** `function_` wrapped so that at most `options.concurrency` calls run at once. */
export declare function limitFunction<Arguments extends unknown[], ReturnType>(
  function_: (...arguments_: Arguments) => PromiseLike<ReturnType>,
  options: Options,
): ((...arguments_: Arguments) => Promise<ReturnType>) & Pick<LimitFunction, 'clearQueue' | 'label'>

export { pLimit }
export default pLimit

/** Options of `new Limiter()`. */
export interface LimiterOptions {
  /** Permits (tasks of weight 1 running at once). Integer >= 1 or `Infinity`. Required unless `rate` is given (then default `Infinity`). */
  concurrency?: number
  /**
   * Most tasks that may wait; one more is rejected at once with `ERR_QUEUE_FULL`. `Infinity` opts out.
   * Distributed mode: this process's tasks waiting (from `run()` until granted, the acquire's
   * round trip included), an integer from 1.
   * @default 1024
   */
  maxPending?: number
  /** Default per-task timeout in ms, covering queue wait and run time together (`ERR_TIMEOUT`). `Infinity` or omitted: none. */
  timeout?: number
  /**
   * Most ms a task may wait for a permit; a task still waiting then rejects with `ERR_TIMEOUT`
   * (a running task is not bound by it). `Infinity` opts out.
   * @default 30000
   */
  queueTimeout?: number
  /**
   * At most `limit` starts in any window of `interval` ms. Distributed mode: all processes
   * together, `interval` an integer, `limit` at most 100000 (a sliding log in Redis, one
   * entry per start in the window).
   */
  rate?: { limit: number; interval: number }
  /**
   * A process-wide limiter shared by every worker_thread that opens the same name (its permits,
   * queue, deadlines, rate and stats live in Rust). Every handle must pass the same
   * `concurrency`, `maxPending` and `rate`.
   */
  name?: string
  /**
   * Names this instance in metrics and traces (the `label` of its tracing context); it does
   * not turn on process-wide sharing (that is `name`). A non-empty string. Default: `name`.
   */
  label?: string
  /**
   * Distributed mode: the limit (and rate) is shared through Redis by every process and
   * thread that opens the same `name` there (docs/redis.md). Supports `name` (required),
   * `concurrency`, `maxPending`, `timeout`, `queueTimeout`, `rate`, `lease` and
   * `onRedisDown`; the queue bounds, pause/resume, clear and onIdle act per process, and
   * `concurrency` cannot be changed after construction.
   */
  redis?: import('./errors').RedisOption
  /** Distributed mode: ms a permit outlives a process that died holding it (default 30000). */
  lease?: number
  /**
   * Distributed mode, when Redis does not answer: `'reject'` (default, `ERR_UNAVAILABLE`),
   * `'local'` (this process's own limit) or `'allow'`.
   */
  onRedisDown?: 'reject' | 'local' | 'allow'
}

/** Options of `limiter.run()`. */
export interface LimiterRunOptions {
  /** Aborts the task: removed from the queue at once, or told through its own signal if running (`ERR_ABORTED`). */
  signal?: AbortSignal
  /** Ms from `run()` until the task times out, waiting or running (`ERR_TIMEOUT`). Overrides the limiter's; `Infinity`: none. */
  timeout?: number
  /** Most ms this task may wait for a permit (`ERR_TIMEOUT`). Overrides the limiter's `queueTimeout`; `Infinity`: no limit. */
  queueTimeout?: number
  /** Higher runs first; FIFO within a priority. Default 0. 32-bit integer. */
  priority?: number
  /** Permits the task takes, 1 to `concurrency`. Default 1. */
  weight?: number
}

/** Options of `limiter.map()` and `limiter.mapIterable()`. */
export interface LimiterMapOptions {
  /** Items in flight (and, for `mapIterable`, finished but unread). Default: the limiter's concurrency, or 16 if that is Infinity. */
  concurrency?: number
  /** Resolve to `Promise.allSettled`-shaped outcomes instead of rejecting on the first error. Default false. */
  settle?: boolean
  /** Stops pulling the source and aborts the tasks in flight (`ERR_ABORTED`). */
  signal?: AbortSignal
}

/** Counters of a process's connection to one Redis URL (distributed mode). */
export interface RedisConnectionStats {
  roundTrips: number
  unavailable: number
  scriptReloads: number
  connects: number
  redisWaitMs: number
  renewals: number
  lostLeases: number
}

/**
 * Counters and percentiles of a limiter; times in milliseconds. In distributed mode they count
 * this process's tasks (`permitsInUse`: the weight it holds), and the optional fields are set.
 */
export interface LimiterStats {
  active: number
  pending: number
  permitsInUse: number
  completed: number
  rejected: number
  timedOut: number
  aborted: number
  queueFull: number
  waitP50: number
  waitP90: number
  waitP99: number
  runP50: number
  runP90: number
  runP99: number
  /** Distributed mode: permits this process was granted. */
  acquired?: number
  /** Distributed mode: tasks run by the `onRedisDown: 'local'` fallback. */
  fallbacks?: number
  /** Distributed mode: running tasks whose permit lease was lost (`ERR_LEASE_LOST`). */
  lostLeases?: number
  /** Distributed mode: tasks run unlimited by `onRedisDown: 'allow'`. */
  allowedWhileDown?: number
  /** Distributed mode: tasks rejected with `ERR_UNAVAILABLE`. */
  rejectedWhileDown?: number
  /** Distributed mode: the process's connection to this Redis. */
  redis?: RedisConnectionStats
}

/** A bounded, cancellable concurrency limiter with priorities, weights, rate limits and stats. */
export declare class Limiter {
  constructor(options?: LimiterOptions)
  /** The limiter's name (`undefined` for an unnamed local limiter). */
  readonly name: string | undefined
  /** The `label` option, else the `name`, else `undefined`. */
  readonly label: string | undefined
  /** Tasks running now. */
  readonly activeCount: number
  /** Tasks waiting for permits. */
  readonly pendingCount: number
  /**
   * Permits; raising it starts waiting tasks. Distributed mode: fixed at construction
   * (setting it throws `ERR_INVALID_ARG`: every process passes its own value to Redis).
   */
  concurrency: number
  /** Whether `pause()` is in force. */
  readonly isPaused: boolean
  /** Native task slots held (for leak tests). */
  readonly nativeSlots: number
  /** Runs `fn(signal)` when permits are free; the promise settles as `fn` does, or with `ERR_TIMEOUT`/`ERR_ABORTED`/`ERR_QUEUE_FULL`. */
  run<T>(fn: (signal: AbortSignal) => PromiseLike<T> | T, options?: LimiterRunOptions): Promise<T>
  /** Stops starting waiting tasks. */
  pause(): void
  /** Starts waiting tasks again. */
  resume(): void
  /** Rejects every waiting task with `ERR_ABORTED`. */
  clear(): void
  /** Refuses new tasks (`ERR_CLOSED`), clears the queue, resolves when running tasks finished. */
  close(): Promise<void>
  /** Resolves when nothing runs and nothing waits. */
  onIdle(): Promise<void>
  /** Resolves when nothing waits. */
  onEmpty(): Promise<void>
  /** Resolves when fewer than `limit` tasks wait. */
  onSizeLessThan(limit: number): Promise<void>
  /** Counters and wait/run percentiles. */
  stats(): LimiterStats
  /** Results of `fn` over `source`, in input order, pulling the source lazily. */
  map<T, R>(
    source: Iterable<T> | AsyncIterable<T>,
    fn: (item: T, index: number, signal: AbortSignal) => PromiseLike<R> | R,
    options: LimiterMapOptions & { settle: true },
  ): Promise<PromiseSettledResult<R>[]>
  map<T, R>(
    source: Iterable<T> | AsyncIterable<T>,
    fn: (item: T, index: number, signal: AbortSignal) => PromiseLike<R> | R,
    options?: LimiterMapOptions & { settle?: false },
  ): Promise<R[]>
  /** Results of `fn` over `source` as an async iterable, in input order, with bounded read-ahead and buffering. */
  mapIterable<T, R>(
    source: Iterable<T> | AsyncIterable<T>,
    fn: (item: T, index: number, signal: AbortSignal) => PromiseLike<R> | R,
    options: LimiterMapOptions & { settle: true },
  ): AsyncGenerator<PromiseSettledResult<R>, void, undefined>
  mapIterable<T, R>(
    source: Iterable<T> | AsyncIterable<T>,
    fn: (item: T, index: number, signal: AbortSignal) => PromiseLike<R> | R,
    options?: LimiterMapOptions & { settle?: false },
  ): AsyncGenerator<R, void, undefined>
}

/**
 * The context object of a `bulkhead:limiter` trace (`diagnostics_channel.tracingChannel`): one per
 * `Limiter#run()` call and per call of a pLimit / limitFunction limit. See docs/observability.md.
 */
export interface LimiterTraceContext {
  /** The instance's `label` (`undefined` when it has none). */
  label: string | undefined
  /** The Limiter's `name`; `undefined` for an unnamed one and for pLimit. */
  name: string | undefined
  /** The task's priority (`options.priority`, default 0; always 0 for pLimit). */
  priority: number
  /** The task's weight (`options.weight`, default 1; always 1 for pLimit). */
  weight: number
  /** Ms from the call until the task started; set when it starts (so by `asyncStart`), `undefined` if it never did. */
  waitTime: number | undefined
  /** Ms the task's function ran, until its promise settled; set before `asyncStart`, `undefined` if it never started. */
  runTime: number | undefined
  /** What the task resolved to (set before `asyncStart`). */
  result?: unknown
  /** Why the call failed (set before `error`). */
  error?: unknown
}
