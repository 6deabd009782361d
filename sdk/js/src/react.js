// React hook: `const analytics = useAnalytics(config)` in any component. Components that pass the
// same endpoint, write key and storage key share one client; it flushes on unload and on unmount.

import { useEffect, useRef } from "react";
import { init } from "./client.js";

/** @type {Map<string, import("./client.js").AnalyticsClient>} */
const clients = new Map();

/** @param {import("./client.js").Config} config */
function clientFor(config) {
  const key = [config.endpoint, config.writeKey, config.storageKey || ""].join("\n");
  let client = clients.get(key);
  if (!client) {
    client = init(config);
    clients.set(key, client);
  }
  return client;
}

/** The shared client for `config` (the first one started, when called without a config).
 * @param {import("./client.js").Config} [config]
 * @returns {import("./client.js").AnalyticsClient} */
export function useAnalytics(config) {
  /** @type {import("react").MutableRefObject<import("./client.js").AnalyticsClient | null>} */
  const ref = useRef(null);
  if (ref.current === null) {
    if (config) ref.current = clientFor(config);
    else {
      const first = clients.values().next().value;
      if (!first) throw new Error("useAnalytics() needs a config the first time");
      ref.current = first;
    }
  }
  const client = ref.current;
  useEffect(() => {
    const onUnload = () => void client.flush({ keepalive: true });
    window.addEventListener("beforeunload", onUnload);
    return () => {
      window.removeEventListener("beforeunload", onUnload);
      void client.flush();
    };
  }, [client]);
  return client;
}
