'use strict'
// A WorkerPool task module (CommonJS).
module.exports = ({ a, b }) => a + b
