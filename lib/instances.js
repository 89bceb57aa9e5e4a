'use strict'
// The weak registry of live bulkhead instances, which the metrics entry
// points (lib/otel.js, lib/prometheus.js) read when they are collected.
//
// Each constructor calls `track(this, kind)` once, after it has succeeded.
// That is the whole cost when nothing is instrumented: one WeakRef and one
// FinalizationRegistry cell per instance, nothing per operation. The registry
// never keeps an instance alive: an instance that is garbage-collected leaves
// the set (through the FinalizationRegistry, or when `live()` next meets its
// emptied WeakRef, whichever comes first), so it disappears from the metrics.

/** @typedef {'limiter' | 'pool' | 'cache' | 'single_flight'} Kind */

/** @type {Set<{ ref: WeakRef<object>, kind: Kind }>} */
const entries = new Set()
const finalizer = new FinalizationRegistry((entry) => entries.delete(entry))

/**
 * Registers a live instance of a primitive. Called once per constructor.
 * @param {object} instance
 * @param {Kind} kind
 */
function track(instance, kind) {
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

module.exports = { track, live }
