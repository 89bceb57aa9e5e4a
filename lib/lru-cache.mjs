export { LRUCache } from './lru-cache.js'
