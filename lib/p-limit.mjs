// ESM twin of lib/p-limit.js: `import pLimit, { limitFunction } from 'bulkhead/p-limit'`.
import cjs from './p-limit.js'

export const pLimit = cjs.pLimit
export const limitFunction = cjs.limitFunction
export default cjs.pLimit
export const Limiter = cjs.Limiter
