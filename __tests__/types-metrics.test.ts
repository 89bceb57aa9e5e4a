// Compiled by `tsc --noEmit` (npm run test:types): the bulkhead/otel and
// bulkhead/prometheus types take the peers' own MeterProvider and Registry,
// and reject what the runtime rejects.
import { MeterProvider } from '@opentelemetry/sdk-metrics'
import { Registry, type Metric } from 'prom-client'
import { instrument as instrumentOtel, type OtelInstrumentation } from '../lib/otel'
import { instrument as instrumentProm, type PrometheusInstrumentation } from '../lib/prometheus'

const otel: OtelInstrumentation = instrumentOtel({ meterProvider: new MeterProvider(), prefix: 'svc' })
otel.close()
instrumentOtel()
// @ts-expect-error a prefix is a string
instrumentOtel({ prefix: 7 })
// @ts-expect-error meterProvider must be a MeterProvider
instrumentOtel({ meterProvider: {} })

const prom: PrometheusInstrumentation = instrumentProm({ register: new Registry(), prefix: 'svc' })
const metrics: Metric[] = prom.metrics
void metrics
prom.close()
instrumentProm()
// @ts-expect-error register must be a Registry
instrumentProm({ register: {} })

instrumentOtel({ histograms: false }).close()
instrumentProm({ register: new Registry(), histograms: true }).close()
// @ts-expect-error histograms is a boolean
instrumentOtel({ histograms: 'yes' })
// @ts-expect-error histograms is a boolean
instrumentProm({ histograms: 1 })
