export { instrument } from './prometheus.js'
