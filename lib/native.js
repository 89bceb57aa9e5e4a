'use strict'
// The compiled addon, loaded through the loader napi-rs generates
// (`binding.js`): it tries `bulkhead.<platform>.node` next to package.json
// (built from source by scripts/install.js at `npm install`), then the
// prebuilt platform package `bulkhead-<platform>`. Everything in lib/ reaches
// Rust through this one module.
let binding
try {
  binding = require('../binding.js')
} catch (err) {
  throw new Error(
    "bulkhead's native addon could not be loaded. It comes from a prebuilt platform package " +
      '(bulkhead-<platform>) or is built from source with cargo when bulkhead is installed. ' +
      'If the install ran with --ignore-scripts or without cargo, install a Rust toolchain ' +
      '(https://rustup.rs) and run `npm rebuild bulkhead`. ' +
      `Cause: ${err && err.message}`,
    { cause: err },
  )
}
module.exports = binding
