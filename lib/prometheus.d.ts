/**
 * Prometheus metrics (prom-client) for every live bulkhead instance:
 * limiters, pools, caches, single-flight groups and tiered caches, read from their
 * `stats()` when the registry is scraped. Needs the optional peer dependency
 * `prom-client`; importing this entry point without it throws an error that
 * names the package.
 *
 * Loading this entry point starts tracking the instances made from then on
 * (weakly); instances made before it was first loaded are not reported
 * (except in the duration histograms, which every instance feeds).
 *
 * See docs/observability.md for the metric list.
 * @module
 */
import type { Registry, Metric } from 'prom-client'

/** Options of `instrument()`. */
export interface PrometheusInstrumentOptions {
  /**
   * The registry the metrics are registered in.
   * @default prom-client's global `register`
   */
  register?: Registry
  /**
   * The first part of every metric name: `<prefix>_limiter_active`. Letters,
   * digits, `_` and `:`, not starting with a digit.
   * @default 'bulkhead'
   */
  prefix?: string
  /**
   * Whether to record each task's wait and run time into histograms
   * (`<prefix>_limiter_wait_duration_seconds`,
   * `<prefix>_limiter_run_duration_seconds`, `<prefix>_pool_wait_duration_seconds`,
   * `<prefix>_pool_run_duration_seconds`).
   * They are recorded from the `bulkhead:limiter` and `bulkhead:pool` tracing
   * channels, so they cover every instance (also those made before this
   * entry point loaded), and every task takes the traced path while they
   * are on (its cost is in docs/observability.md).
   * @default true
   */
  histograms?: boolean
}

/** What `instrument()` returns. */
export interface PrometheusInstrumentation {
  /** The prom-client metrics: one per bulkhead metric, then the duration histograms. */
  readonly metrics: Metric[]
  /** Removes the metrics from the registry and stops recording. */
  close(): void
}

/**
 * Registers a prom-client Gauge or Counter per bulkhead metric
 * (`bulkhead_limiter_active`, `bulkhead_limiter_completed_total`,
 * `bulkhead_pool_wait_time_seconds{quantile="0.99"}`, …), filled from every
 * live bulkhead instance of this thread when the registry is scraped.
 * Instances are held weakly: one that is garbage-collected is no longer
 * reported. An instance with a label (else a name) gets the label `name`;
 * instances that share it are merged. Unless `histograms: false`, each
 * task's wait and run time is also observed into Histograms
 * (`bulkhead_limiter_wait_duration_seconds`, …, buckets from 100 µs to 60 s).
 * @throws {TypeError} with code `ERR_INVALID_ARG` for bad options.
 * @throws {Error} from prom-client when a metric of that name is already registered.
 */
export declare function instrument(options?: PrometheusInstrumentOptions): PrometheusInstrumentation
