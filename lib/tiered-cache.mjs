export { TieredCache } from './tiered-cache.js'
