export { instrument } from './otel.js'
