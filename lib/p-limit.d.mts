// Types for `import ... from 'bulkhead/p-limit'` (ESM): the same declarations
// as p-limit.d.ts, with `pLimit` as the default export.
import { pLimit } from './p-limit.js'

export * from './p-limit.js'
export default pLimit
