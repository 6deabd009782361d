// @village-analytics/sdk: the browser client. `init(config)` returns a client with identify,
// track, flush, optOut, optIn and isAnalyticsEnabled (see README.md).

export { AnalyticsClient, VERSION, init } from "./client.js";
export { backoffDelay, classify, retryAfterMs } from "./retry.js";
export { sampled, sampleFraction, uuid4 } from "./util.js";
