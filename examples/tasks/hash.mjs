// A CPU-bound task for WorkerPool: hashes for about `ms` milliseconds.
import { createHash } from 'node:crypto'

export default function hash({ ms, seed }) {
  let digest = String(seed)
  const end = performance.now() + ms
  do {
    digest = createHash('sha256').update(digest).digest('hex')
  } while (performance.now() < end)
  return digest
}

/** A named export: `pool.run(value, { name: 'echo' })`. */
export function echo(value) {
  return value
}
