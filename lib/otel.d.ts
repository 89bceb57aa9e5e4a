/**
 * OpenTelemetry metrics for every live bulkhead instance: limiters, pools,
 * caches, single-flight groups and tiered caches, read from their `stats()` when the
 * MeterProvider's reader collects. Needs the optional peer dependency
 * `@opentelemetry/api`; importing this entry point without it throws an
 * error that names the package.
 *
 * Loading this entry point starts tracking the instances made from then on
 * (weakly); instances made before it was first loaded are not reported
 * (except in the duration histograms, which every instance feeds).
 *
 * See docs/observability.md for the metric list.
 * @module
 */
import type { MeterProvider } from '@opentelemetry/api'

/** Options of `instrument()`. */
export interface OtelInstrumentOptions {
  /**
   * Where the instruments are created (on its meter `bulkhead`).
   * @default metrics.getMeterProvider() (the global one)
   */
  meterProvider?: MeterProvider
  /**
   * The first part of every instrument name: `<prefix>.limiter.active`. An
   * OpenTelemetry instrument name: a letter, then letters, digits, `_ . - /`.
   * @default 'bulkhead'
   */
  prefix?: string
  /**
   * Whether to record each task's wait and run time into histograms
   * (`<prefix>.limiter.wait.duration`, `<prefix>.limiter.run.duration`,
   * `<prefix>.pool.wait.duration`, `<prefix>.pool.run.duration`, in seconds).
   * They are recorded from the `bulkhead:limiter` and `bulkhead:pool` tracing
   * channels, so they cover every instance (also those made before this
   * entry point loaded), and every task takes the traced path while they
   * are on (its cost is in docs/observability.md).
   * @default true
   */
  histograms?: boolean
}

/** What `instrument()` returns. */
export interface OtelInstrumentation {
  /** Stops observing and recording: from the next collection on, the instruments report nothing new. */
  close(): void
}

/**
 * Registers observable instruments (`bulkhead.limiter.active`,
 * `bulkhead.pool.utilization`, `bulkhead.cache.hits`,
 * `bulkhead.single_flight.flights`, …) for every live bulkhead instance of
 * this thread, held weakly: an instance that is garbage-collected is no
 * longer reported. Attributes: `bulkhead.primitive`, and `bulkhead.name` (the
 * instance's label, else its name) when it has one; instances that share
 * both are merged. Percentiles carry `bulkhead.quantile`. Unless
 * `histograms: false`, each task's wait and run time also goes into
 * histograms (`bulkhead.limiter.wait.duration`, …, explicit bucket
 * boundaries from 100 µs to 60 s).
 * @throws {TypeError} with code `ERR_INVALID_ARG` for bad options.
 */
export declare function instrument(options?: OtelInstrumentOptions): OtelInstrumentation
