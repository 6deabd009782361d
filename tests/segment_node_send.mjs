// Sends a plan of messages (JSON on stdin) with the stock @segment/analytics-node SDK, unmodified,
// to the collector at plan.host; prints {"delivered": n, "errors": [...]} (tests/test_segment_sdks.py).
import { Analytics } from '@segment/analytics-node'

let input = ''
for await (const chunk of process.stdin) input += chunk
const plan = JSON.parse(input)

const analytics = new Analytics({ writeKey: plan.writeKey, host: plan.host, flushAt: 20, flushInterval: 200 })
const errors = []
let delivered = 0
analytics.on('error', (err) => errors.push(String(err?.reason ?? err?.code ?? err)))
const done = (err) => { if (err) errors.push(String(err)); else delivered += 1 }

for (const m of plan.messages) {
  const who = m.userId ? { userId: m.userId } : { anonymousId: m.anonymousId }
  if (m.type === 'identify') {
    analytics.identify({ ...who, traits: m.traits }, done)
  } else {
    analytics.track({ ...who, event: m.event, properties: m.properties, timestamp: new Date(m.timestamp) }, done)
  }
}
await analytics.closeAndFlush({ timeout: 60000 })
console.log(JSON.stringify({ delivered, errors }))
