'use strict'
// bulkhead/prometheus: prom-client metrics for every live bulkhead instance.
//
// `instrument()` registers one prom-client Gauge or Counter per metric of
// lib/metrics.js; their collect() callbacks, run when the registry is
// scraped, fill them from one snapshot of the live instances' stats() (taken
// once per scrape: every collect() of a scrape runs in the same synchronous
// pass of `register.metrics()`). Instances are held weakly: a
// garbage-collected one is no longer reported. `prom-client` is an optional
// peer dependency; this file is the only one that loads it. The duration
// histograms are prom-client Histograms observed per task, from the tracing
// channels (`recordDurations`), unless `histograms: false`.

const { typeError } = require('./errors.js')
const { METRICS, QUANTILES, HISTOGRAMS, DURATION_BUCKETS, snapshot, recordDurations, loadPeer } = require('./metrics.js')
const { enable } = require('./instances.js')

const client = loadPeer('prom-client', 'bulkhead/prometheus')

// Loading this entry point opts the process in: instances made from now on
// are tracked (lib/instances.js). Instances made before are not reported.
enable()

// Prometheus's metric name syntax.
const NAME = /^[A-Za-z_:][\w:]*$/

const UNIT_SUFFIX = { s: '_seconds', By: '_bytes' }

/** The Prometheus name of `metric`: `<prefix>_<primitive>_<metric>[_<unit>][_total]`
 * (the unit suffix is not repeated: `bulkhead_cache_bytes`). */
function promName(prefix, metric) {
  let name = `${prefix}_${metric.id.replaceAll('.', '_')}`
  const suffix = UNIT_SUFFIX[metric.unit] ?? (metric.kind === 'gauge' && metric.unit === '1' ? '_ratio' : '')
  if (!name.endsWith(suffix)) name += suffix
  return metric.kind === 'counter' ? `${name}_total` : name
}

/**
 * Registers, on `register` (default: prom-client's global registry), a
 * metric per bulkhead metric, filled from every live instance when the
 * registry is scraped. Names are `<prefix>_<primitive>_<metric>`, e.g.
 * `bulkhead_limiter_active`, `bulkhead_limiter_completed_total`,
 * `bulkhead_limiter_wait_time_seconds{quantile="0.99"}`; an instance with a
 * label or name gets the label `name`. Unless `histograms` is false, each
 * task's wait and run time is also observed into histograms
 * (`bulkhead_limiter_wait_duration_seconds`, …). Returns
 * `{ metrics, close() }`: `close()` removes them from the registry and stops
 * recording.
 * @param {{ register?: import('prom-client').Registry, prefix?: string, histograms?: boolean }} [options]
 */
function instrument(options = {}) {
  if (options === null || typeof options !== 'object') throw typeError('options must be an object')
  const { register = client.register, prefix = 'bulkhead', histograms = true } = options
  if (typeof histograms !== 'boolean') throw typeError(`options.histograms must be a boolean, got ${histograms === null ? 'null' : typeof histograms}`)
  if (register === null || typeof register !== 'object' || typeof register.registerMetric !== 'function') {
    throw typeError('options.register must be a prom-client Registry')
  }
  if (typeof prefix !== 'string' || !NAME.test(prefix)) {
    throw typeError('options.prefix must be a Prometheus metric name prefix (letters, digits, _ and :, not starting with a digit)')
  }
  // One snapshot per scrape: the first collect() of a scrape takes it, and
  // it is dropped once that synchronous pass is over.
  let current = null
  const rows = () => {
    if (current === null) {
      current = snapshot()
      queueMicrotask(() => {
        current = null
      })
    }
    return current
  }
  const metrics = []
  let stopRecording = () => {}
  try {
    for (const metric of METRICS) {
      const Kind = metric.kind === 'counter' ? client.Counter : client.Gauge
      metrics.push(new Kind({
        name: promName(prefix, metric),
        help: metric.description,
        labelNames: metric.quantiles ? ['name', 'quantile'] : ['name'],
        registers: [register],
        collect() {
          this.reset()
          for (const { label, values } of rows()) {
            const value = values.get(metric)
            if (value === undefined) continue
            const labels = label === undefined ? {} : { name: label }
            if (metric.quantiles) {
              QUANTILES.forEach((quantile, i) => this.set({ ...labels, quantile }, value[i]))
            } else if (metric.kind === 'counter') {
              this.inc(labels, value)
            } else {
              this.set(labels, value)
            }
          }
        },
      }))
    }
    if (histograms) {
      const observers = new Map()
      for (const histogram of HISTOGRAMS) {
        const metric = new client.Histogram({
          name: `${prefix}_${histogram.id.replaceAll('.', '_')}_seconds`,
          help: histogram.description,
          labelNames: ['name'],
          buckets: DURATION_BUCKETS,
          registers: [register],
        })
        metrics.push(metric)
        observers.set(histogram, metric)
      }
      // A child per label, so a task's observation does not hash its labels.
      const children = new Map()
      const childOf = (histogram, label) => {
        const key = `${histogram.id}\0${label ?? ''}`
        let child = children.get(key)
        if (child === undefined) {
          child = observers.get(histogram).labels(label === undefined ? {} : { name: label })
          children.set(key, child)
        }
        return child
      }
      stopRecording = recordDurations((histogram, seconds, label) => childOf(histogram, label).observe(seconds))
    }
  } catch (err) {
    // A name already taken in this registry: leave nothing half-registered.
    for (const m of metrics) register.removeSingleMetric(m.name)
    throw err
  }
  let closed = false
  return {
    /** The prom-client metrics: one per bulkhead metric, then the duration histograms. */
    metrics,
    /** Removes the metrics from the registry and stops recording. */
    close() {
      if (closed) return
      closed = true
      stopRecording()
      for (const m of metrics) register.removeSingleMetric(m.name)
    },
  }
}

module.exports = { instrument }
