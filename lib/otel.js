'use strict'
// bulkhead/otel: OpenTelemetry metrics for every live bulkhead instance.
//
// `instrument()` creates observable instruments on a Meter and one batch
// callback that, when the MeterProvider's reader collects, reads each live
// instance's stats() once (lib/metrics.js, lib/instances.js). Instances are
// held weakly: a garbage-collected one is simply no longer observed. The
// duration histograms are recorded per task, from the tracing channels
// (`recordDurations`), unless `histograms: false`.
// `@opentelemetry/api` is an optional peer dependency; this file is the only
// one that loads it.

const { typeError } = require('./errors.js')
const { METRICS, QUANTILES, HISTOGRAMS, DURATION_BUCKETS, snapshot, recordDurations, loadPeer } = require('./metrics.js')
const { enable } = require('./instances.js')
const { version } = require('../package.json')

const api = loadPeer('@opentelemetry/api', 'bulkhead/otel')

// Loading this entry point opts the process in: instances made from now on
// are tracked (lib/instances.js). Instances made before are not reported.
enable()

// OpenTelemetry's instrument name syntax.
const NAME = /^[A-Za-z][\w.\-/]*$/

/**
 * Registers observable instruments for every live bulkhead instance on
 * `meterProvider` (default: the global one, `metrics.getMeterProvider()`).
 * Instrument names are `<prefix>.<primitive>.<metric>`, e.g.
 * `bulkhead.limiter.active`; attributes `bulkhead.primitive` and, for an
 * instance with a label or name, `bulkhead.name`. Unless `histograms` is
 * false, it also records each task's wait and run time into histograms
 * (`bulkhead.limiter.wait.duration`, …). Returns a handle whose `close()`
 * stops observing and recording.
 * @param {{ meterProvider?: import('@opentelemetry/api').MeterProvider, prefix?: string, histograms?: boolean }} [options]
 */
function instrument(options = {}) {
  if (options === null || typeof options !== 'object') throw typeError('options must be an object')
  const { meterProvider = api.metrics.getMeterProvider(), prefix = 'bulkhead', histograms = true } = options
  if (typeof histograms !== 'boolean') throw typeError(`options.histograms must be a boolean, got ${histograms === null ? 'null' : typeof histograms}`)
  if (meterProvider === null || typeof meterProvider !== 'object' || typeof meterProvider.getMeter !== 'function') {
    throw typeError('options.meterProvider must be an OpenTelemetry MeterProvider (an object with getMeter())')
  }
  if (typeof prefix !== 'string' || !NAME.test(prefix) || prefix.length > 200) {
    throw typeError('options.prefix must be a string that starts with a letter and holds only letters, digits, _ . - / (at most 200 characters)')
  }
  const meter = meterProvider.getMeter('bulkhead', version)
  const instruments = new Map()
  for (const metric of METRICS) {
    const name = `${prefix}.${metric.id}`
    const opts = { unit: metric.unit, description: metric.description }
    const instrument = metric.kind === 'counter'
      ? meter.createObservableCounter(name, opts)
      : metric.kind === 'updown'
        ? meter.createObservableUpDownCounter(name, opts)
        : meter.createObservableGauge(name, opts)
    instruments.set(metric, instrument)
  }
  const observe = (result) => {
    for (const { primitive, label, values } of snapshot()) {
      const attributes = label === undefined
        ? { 'bulkhead.primitive': primitive }
        : { 'bulkhead.primitive': primitive, 'bulkhead.name': label }
      for (const [metric, value] of values) {
        const instrument = instruments.get(metric)
        if (metric.quantiles) {
          QUANTILES.forEach((quantile, i) => {
            result.observe(instrument, value[i], { ...attributes, 'bulkhead.quantile': quantile })
          })
        } else {
          result.observe(instrument, value, attributes)
        }
      }
    }
  }
  const observables = [...instruments.values()]
  meter.addBatchObservableCallback(observe, observables)
  let stopRecording = () => {}
  if (histograms) {
    const recorders = new Map()
    for (const histogram of HISTOGRAMS) {
      recorders.set(histogram, meter.createHistogram(`${prefix}.${histogram.id}`, {
        unit: 's',
        description: histogram.description,
        advice: { explicitBucketBoundaries: DURATION_BUCKETS },
      }))
    }
    // One attributes object per label, reused for every recording.
    const attributesByLabel = new Map()
    const attributesOf = (primitive, label) => {
      const key = `${primitive}\0${label ?? ''}`
      let attributes = attributesByLabel.get(key)
      if (attributes === undefined) {
        attributes = label === undefined
          ? { 'bulkhead.primitive': primitive }
          : { 'bulkhead.primitive': primitive, 'bulkhead.name': label }
        attributesByLabel.set(key, attributes)
      }
      return attributes
    }
    stopRecording = recordDurations((histogram, seconds, label) => {
      recorders.get(histogram).record(seconds, attributesOf(histogram.primitive, label))
    })
  }
  let closed = false
  return {
    /** Stops observing and recording: the instruments report nothing new from the next collection on. */
    close() {
      if (closed) return
      closed = true
      meter.removeBatchObservableCallback(observe, observables)
      stopRecording()
    },
  }
}

module.exports = { instrument }
