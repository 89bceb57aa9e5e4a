'use strict'
// The compiled addon, loaded through the loader napi-rs generates
// (`binding.js`, built by `npm run build`). Everything in lib/ reaches Rust
// through this one module.
let binding
try {
  binding = require('../binding.js')
} catch (err) {
  throw new Error(
    "bulkhead's native addon could not be loaded. It is built from source on install: " +
      'run `npm install` (or `npm run build`) in the package folder; this needs cargo. ' +
      `Cause: ${err && err.message}`,
    { cause: err },
  )
}
module.exports = binding
