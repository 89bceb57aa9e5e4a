// Compiled by `tsc --noEmit` (npm run test:types): the WorkerPool types accept
// piscina-shaped code and reject what the runtime rejects.
import { WorkerPool, type PoolStats, type RunOptions } from '../lib/pool'

async function main(): Promise<void> {
  const pool = new WorkerPool({
    filename: new URL('file:///tmp/task.mjs'),
    minThreads: 1,
    maxThreads: 2,
    maxQueue: 'auto',
    idleTimeout: 100,
    concurrentTasksPerWorker: 2,
    taskTimeout: 1000,
    resourceLimits: { maxOldGenerationSizeMb: 64 },
    workerData: { any: 'thing' },
  })
  const ac = new AbortController()
  const options: RunOptions = { name: 'named', signal: ac.signal, timeout: 50, queueTimeout: 10 }
  const n: number = await pool.run<number>(1, options)
  const s: PoolStats = pool.stats()
  const p99: number = s.runTime.p99 + s.waitTime.p50 + n
  const threads: number = pool.threads.length + pool.queueSize + pool.completed + pool.utilization + p99
  const inWorker: boolean = WorkerPool.isWorkerThread
  pool.on('drain', () => {})
  await pool.close()
  await pool.destroy()
  await using disposable = new WorkerPool({ filename: '/tmp/x.js' })
  void disposable
  // @ts-expect-error maxQueue takes a number or 'auto'
  new WorkerPool({ maxQueue: 'lots' })
  // @ts-expect-error timeout is a number
  void pool.run(1, { timeout: '1s' })
  void threads
  void inWorker
}
void main
