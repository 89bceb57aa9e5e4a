'use strict'
// The `bulkhead` entry point: every primitive, plus the error model.
module.exports = {
  ...require('./lib/errors.js'),
  ...require('./lib/lru-cache.js'),
  ...require('./lib/p-limit.js'),
  ...require('./lib/pool.js'),
  ...require('./lib/single-flight.js'),
}
