import { EventEmitter } from 'node:events'
import type { Worker, ResourceLimits, TransferListItem } from 'node:worker_threads'

/** Options of `new WorkerPool()`. Defaults as in piscina 5 unless noted. */
export interface WorkerPoolOptions {
  /** Task module: a path or `file://` URL, CommonJS or ESM; checked to exist when the pool is made. A relative path resolves against `process.cwd()`. Default: none (then every `run()` names one). */
  filename?: string | URL | null
  /** Export to call: `'default'` (default) or a named export. */
  name?: string | null
  /**
   * Workers kept while idle.
   * @default half the default maxThreads, at least 1 (never above maxThreads)
   */
  minThreads?: number
  /**
   * Most workers: one per core but the main thread's.
   * @default Math.max(os.availableParallelism() - 1, 1)
   */
  maxThreads?: number
  /** Milliseconds an idle worker beyond `minThreads` lives. Default: 0. */
  idleTimeout?: number
  /** Most tasks waiting for a worker. Default: `maxThreads * 1024` (piscina: Infinity). `'auto'` is `maxThreads ** 2`. */
  maxQueue?: number | 'auto'
  /** Tasks one worker runs at once (useful for async tasks). Default: 1. */
  concurrentTasksPerWorker?: number
  /** Passed to each `Worker`. */
  resourceLimits?: ResourceLimits
  /** Passed to each `Worker`. */
  env?: NodeJS.ProcessEnv | typeof import('node:worker_threads').SHARE_ENV
  /** Passed to each `Worker`. */
  argv?: unknown[]
  /** Passed to each `Worker`. */
  execArgv?: string[]
  /** Available inside workers as `WorkerPool.workerData`. */
  workerData?: unknown
  /** Default `timeout` of `run()`, in milliseconds. Default: none. */
  taskTimeout?: number
  /** Nice levels to lower each worker thread's priority by (Linux; ignored elsewhere). Default: 0. */
  niceIncrement?: number
  /** Milliseconds a worker has to return an aborted or timed-out task before it is terminated. Default: 1000. */
  abortGrace?: number
  /**
   * Names this pool in metrics and traces (the `label` of its `bulkhead:pool` tracing context).
   * A non-empty string; default `undefined` (a pool's `name` option is the export to call, not
   * the pool's name).
   */
  label?: string
}

/** Options of `pool.run()`. */
export interface RunOptions {
  /** Task module for this task (path or `file://` URL). */
  filename?: string | URL | null
  /** Export to call for this task. */
  name?: string | null
  /** Aborts the task: rejects with `ERR_ABORTED` and fires the task's own signal. */
  signal?: AbortSignal | { aborted: boolean; addEventListener: (...args: any[]) => unknown } | null
  /** Longest running time in milliseconds (the clock starts when a worker takes the task). */
  timeout?: number
  /** Longest wait in the queue in milliseconds. */
  queueTimeout?: number
  /** ArrayBuffers (or views of them) moved to the worker instead of copied; the caller's are detached. */
  transferList?: TransferListItem[]
}

/** A histogram summary in milliseconds. */
export interface PoolHistogram {
  count: number
  min: number
  max: number
  mean: number
  p50: number
  p90: number
  p99: number
}

/** What `pool.stats()` returns. */
export interface PoolStats {
  submitted: number
  completed: number
  failed: number
  rejected: number
  timedOut: number
  aborted: number
  workerExits: number
  spawned: number
  queued: number
  running: number
  workers: number
  waitTime: PoolHistogram
  runTime: PoolHistogram
  runTimeTotal: number
}

/** The second argument of a task function. */
export interface TaskContext {
  /** Fires when the caller aborts or the task's `timeout` passes. */
  readonly signal: AbortSignal
}

/** A pool of worker threads running a task module's function, with piscina 5's `run()` shape. */
export declare class WorkerPool extends EventEmitter {
  constructor(options?: WorkerPoolOptions)
  /** Runs `task` on a worker; resolves with the task function's (awaited) result. */
  run<T = any>(task?: unknown, options?: RunOptions): Promise<T>
  /** Finishes queued and running tasks, then stops the workers. `{ force: true }` is `destroy()`. */
  close(options?: { force?: boolean }): Promise<void>
  /** Rejects queued and running tasks with `ERR_CLOSED` and terminates the workers. */
  destroy(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
  /** Counters and wait/run-time histograms. */
  stats(): PoolStats
  readonly options: Readonly<Required<Omit<WorkerPoolOptions, 'filename' | 'label'>>> & {
    filename: string | null
    label: string | undefined
  }
  /** The `label` option (`undefined` when not given). */
  readonly label: string | undefined
  readonly maxThreads: number
  readonly minThreads: number
  /** The live `Worker` objects. */
  readonly threads: Worker[]
  /** Tasks waiting for a worker. */
  readonly queueSize: number
  /** Tasks that ran to the end (returned or threw). */
  readonly completed: number
  /** Milliseconds since the pool was made. */
  readonly duration: number
  /** Fraction of thread time spent running tasks (0..1). */
  readonly utilization: number
  /** Whether a full queue asked callers to wait for `'drain'`. */
  readonly needsDrain: boolean
  /** Whether this code runs inside a WorkerPool worker. */
  static readonly isWorkerThread: boolean
  /** Inside a worker: the pool's `workerData` option. */
  static readonly workerData: any
}

/**
 * The context object of a `bulkhead:pool` trace (`diagnostics_channel.tracingChannel`): one per
 * `WorkerPool#run()` call. See docs/observability.md.
 */
export interface PoolTraceContext {
  /** The pool's `label` (`undefined` when it has none). */
  label: string | undefined
  /** The task module's absolute path (set by `end`; `undefined` if run() rejected before it was known). */
  filename: string | undefined
  /** The export called (set by `end`). */
  name: string | undefined
  /** Ms the task waited in the queue; set before `asyncStart` when the pool knows it. */
  waitTime: number | undefined
  /** Ms the task ran in a worker; set before `asyncStart` if it started. */
  runTime: number | undefined
  /**
   * Set before `asyncStart` (`undefined` until then): `'returned'` (the task function returned),
   * `'threw'` (it threw; the error is `error`) or `'failed'` (the pool ended or refused the
   * call: `error.code` says why).
   */
  outcome: 'returned' | 'threw' | 'failed' | undefined
  /** The task's result (set before `asyncStart`). */
  result?: unknown
  /** Why the call failed (set before `error`). */
  error?: unknown
}
