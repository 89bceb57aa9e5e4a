export type LimitFunction = {
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
): ((...arguments_: Arguments) => Promise<ReturnType>) & Pick<LimitFunction, 'clearQueue'>

export { pLimit }
export default pLimit
