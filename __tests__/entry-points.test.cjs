const { test } = require('node:test')
const assert = require('node:assert/strict')

const entryPoints = ['bulkhead', 'bulkhead/lru-cache', 'bulkhead/p-limit', 'bulkhead/pool', 'bulkhead/single-flight', 'bulkhead/tiered-cache', 'bulkhead/otel', 'bulkhead/prometheus']

for (const specifier of entryPoints) {
  test(`require('${specifier}') loads`, () => {
    const mod = require(specifier)
    assert.equal(typeof mod, 'object')
  })

  test(`import('${specifier}') loads and matches require`, async () => {
    const esm = await import(specifier)
    const cjs = require(specifier)
    for (const name of Object.keys(cjs)) {
      if (name === 'default') continue
      assert.equal(esm[name], cjs[name], `${specifier} exports ${name} to both module systems`)
    }
  })
}

test('the main entry point carries the error model', () => {
  const { codes, BulkheadError } = require('bulkhead')
  assert.equal(codes.QUEUE_FULL, 'ERR_QUEUE_FULL')
  assert.equal(typeof BulkheadError, 'function')
})
