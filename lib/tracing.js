'use strict'
// Tracing channels (node:diagnostics_channel) and the `label` option shared by
// every primitive. docs/observability.md, "Tracing channels", documents the
// channel names, the context objects and when each event fires.
//
// Each primitive checks its channel's `hasSubscribers` before doing anything
// for tracing: with nobody subscribed, a call costs that one getter and
// nothing else (no context object, no closure, no extra promise). With a
// subscriber, the call goes through `tracingChannel.tracePromise`, so the
// primitive's own work (and a task that starts at once, or a flight's fn)
// runs inside `start.runStores(context)`: stores bound with `bindStore` are
// in force there, and the promise reactions made then (the ones that start a
// queued task later) keep them.

const dc = require('node:diagnostics_channel')
const { typeError, rangeError } = require('./errors.js')

/** `bulkhead:limiter`: one trace per `Limiter#run()` and per `limit()` call of pLimit / limitFunction. */
const limiterChannel = dc.tracingChannel('bulkhead:limiter')
/** `bulkhead:single-flight`: one trace per `do()` / `doShared()` call. */
const singleFlightChannel = dc.tracingChannel('bulkhead:single-flight')
/** `bulkhead:tiered-cache`: one trace per `TieredCache#fetch()` call. */
const tieredCacheChannel = dc.tracingChannel('bulkhead:tiered-cache')
/** `bulkhead:pool`: one trace per `WorkerPool#run()` call. */
const poolChannel = dc.tracingChannel('bulkhead:pool')

/**
 * Validates a `label` option: undefined, or a non-empty string. `label` only
 * names the instance in metrics and traces; it never turns on process-wide
 * sharing (that is what `name` does). Returns the label, or `fallback`.
 */
function checkLabel(label, fallback) {
  if (label === undefined) return fallback
  if (typeof label !== 'string') {
    throw typeError(`options.label must be a string, got ${label === null ? 'null' : typeof label}`)
  }
  if (label === '') throw rangeError('options.label must be a non-empty string')
  return label
}

/**
 * Runs `run.call(self, fn, options)` inside a `bulkhead:limiter` trace: the
 * context has the limiter's `label` and `name`, the task's `priority` and
 * `weight`, `waitTime` (ms), set when the task starts, and `runTime` (ms),
 * set when its function's promise settles; both before `asyncStart`. Shared
 * by the local and the distributed Limiter.
 */
function traceLimiterTask(run, self, label, name, fn, options) {
  const given = options !== null && typeof options === 'object' ? options : undefined
  const context = { label, name, priority: given?.priority ?? 0, weight: given?.weight ?? 1, waitTime: undefined, runTime: undefined }
  let task = fn
  if (typeof fn === 'function') {
    const queued = performance.now()
    task = (signal) => {
      const started = performance.now()
      context.waitTime = started - queued
      return timeRun(context, started, fn, undefined, [signal])
    }
  }
  return limiterChannel.tracePromise(run, context, self, task, options)
}

/**
 * Calls `fn.apply(self, args)` for a traced limiter task and sets
 * `context.runTime` (ms since `started`) when it returns, throws, or, for a
 * thenable, when that settles. Only traced calls come here.
 */
function timeRun(context, started, fn, self, args) {
  let result
  try {
    result = fn.apply(self, args)
  } catch (err) {
    context.runTime = performance.now() - started
    throw err
  }
  if (result !== null && (typeof result === 'object' || typeof result === 'function') && typeof result.then === 'function') {
    return Promise.resolve(result).then(
      (value) => {
        context.runTime = performance.now() - started
        return value
      },
      (err) => {
        context.runTime = performance.now() - started
        throw err
      },
    )
  }
  context.runTime = performance.now() - started
  return result
}

module.exports = { limiterChannel, singleFlightChannel, poolChannel, tieredCacheChannel, checkLabel, traceLimiterTask, timeRun }
