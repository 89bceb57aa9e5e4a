'use strict'
// The weak registry of live bulkhead instances, which the metrics entry
// points (lib/otel.js, lib/prometheus.js) read when they are collected.
//
// Each constructor calls `track(this, kind)` once, after it has succeeded.
// Tracking starts when bulkhead/otel or bulkhead/prometheus is first loaded
// (`enable()`); until then `track` returns at once, so a process that does
// not export metrics pays one boolean test per construction. Tracking is not
// free: a WeakRef and a FinalizationRegistry cell per instance, and V8 keeps
// weakly referenced objects through minor GCs, so code that makes and drops
// many instances a second (constructions 2-9 us slower in that churn,
// measured) would pay it for nothing. Nothing is tracked per operation.
//
// The registry never keeps an instance alive: an instance that is
// garbage-collected leaves the set (through the FinalizationRegistry, or
// when `live()` next meets its emptied WeakRef, whichever comes first), so
// it disappears from the metrics.

/** @typedef {'limiter' | 'pool' | 'cache' | 'single_flight' | 'tiered_cache'} Kind */

/** @type {Set<{ ref: WeakRef<object>, kind: Kind }>} */
const entries = new Set()
const finalizer = new FinalizationRegistry((entry) => entries.delete(entry))
let enabled = false

/** Starts tracking the instances made from now on (the metrics entry points call it when loaded). */
function enable() {
  enabled = true
}

/**
 * Registers a live instance of a primitive. Called once per constructor.
 * @param {object} instance
 * @param {Kind} kind
 */
function track(instance, kind) {
  if (!enabled) return
  const entry = { ref: new WeakRef(instance), kind }
  entries.add(entry)
  finalizer.register(instance, entry)
}

/**
 * The instances alive now, as `[instance, kind]` pairs, oldest first.
 * @returns {Array<[object, Kind]>}
 */
function live() {
  const out = []
  for (const entry of entries) {
    const instance = entry.ref.deref()
    if (instance === undefined) entries.delete(entry)
    else out.push([instance, entry.kind])
  }
  return out
}

module.exports = { track, live, enable }
