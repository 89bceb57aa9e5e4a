export { NamedLRUCache } from './lru-cache-named.js'
