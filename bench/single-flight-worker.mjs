// Worker side of the cross-thread rows of single-flight.bench.mjs: leads
// `n` flights of a named group and settles them all when told to.
import { parentPort, workerData } from 'node:worker_threads'
import { SingleFlight } from '../lib/single-flight.mjs'

const group = new SingleFlight({ name: workerData.name, timeout: 60_000 })
let resolvers = []
parentPort.on('message', ({ cmd, n, round }) => {
  if (cmd === 'lead') {
    resolvers = []
    for (let i = 0; i < n; i++) {
      group.do(`r${round}:k${i}`, () => new Promise((resolve) => resolvers.push(resolve)))
    }
    parentPort.postMessage('led')
  } else if (cmd === 'go') {
    for (let i = 0; i < resolvers.length; i++) resolvers[i]({ i, user: 'someone', roles: ['a', 'b'] })
    resolvers = []
  }
})
