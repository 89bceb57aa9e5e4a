// `name` is how a user reaches the process-wide cache: through the same
// LRUCache class they already import (issue: named LRUCache).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { LRUCache } from 'bulkhead/lru-cache'
import { NamedLRUCache } from '../lib/lru-cache-named.js'

test('new LRUCache({ name }) opens the named cache and is still an LRUCache', () => {
  const cache = new LRUCache({ name: 'name-option-test', max: 3 })
  try {
    assert.ok(cache instanceof NamedLRUCache)
    assert.ok(cache instanceof LRUCache)
    cache.set('a', 'one')
    const other = new NamedLRUCache({ name: 'name-option-test', max: 3 })
    assert.equal(other.get('a'), 'one', 'both handles see one cache')
    other.close()
  } finally {
    cache.close()
  }
})

test('a local cache is unchanged by the name hook', () => {
  const cache = new LRUCache({ max: 3 })
  assert.ok(cache instanceof LRUCache)
  assert.ok(!(cache instanceof NamedLRUCache))
  assert.ok(!({} instanceof LRUCache))
  const obj = {}
  cache.set(obj, obj)
  assert.equal(cache.get(obj), obj, 'local mode keeps identity')
})

test('shards without a name is refused with ERR_INVALID_ARG, not silently ignored', () => {
  assert.throws(() => new LRUCache({ max: 10, shards: 4 }), {
    code: 'ERR_INVALID_ARG',
    message: 'options.shards applies only to a named cache: set options.name too',
  })
  const cache = new LRUCache({ name: 'name-option-shards', max: 10, shards: 2 })
  assert.equal(cache.shards, 2)
  cache.close()
})
