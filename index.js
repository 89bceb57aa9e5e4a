'use strict'
// The `bulkhead` entry point: every primitive, plus the error model.
// The error model's public part; lib/errors.js also holds internal helpers.
const { codes, BulkheadError, isBulkheadError } = require('./lib/errors.js')

module.exports = {
  codes,
  BulkheadError,
  isBulkheadError,
  ...require('./lib/lru-cache.js'),
  ...require('./lib/p-limit.js'),
  ...require('./lib/pool.js'),
  ...require('./lib/single-flight.js'),
  ...require('./lib/tiered-cache.js'),
}
