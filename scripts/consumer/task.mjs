// A WorkerPool task module (ESM).
export default ({ a, b }) => a + b
