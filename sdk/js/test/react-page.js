// A page for the React hook test (tests/test_sdk_react.py bundles it with esbuild): two components
// that use useAnalytics(), a button that tracks, and a way to unmount everything.
import { createElement as h, useState } from "react";
import { createRoot } from "react-dom/client";
import { useAnalytics } from "../src/react.js";

/** @type {any} */
const w = window;

function Opener() {
  const analytics = useAnalytics(w.cfg);
  w.clients = [...(w.clients || []), analytics];
  return h("button", { id: "open", onClick: () => analytics.track("dialogue_open", { dialogue_id: "elder" }) }, "open");
}

function Status() {
  const analytics = useAnalytics();
  w.clients = [...(w.clients || []), analytics];
  const [enabled] = useState(() => analytics.isAnalyticsEnabled());
  return h("span", { id: "status" }, enabled ? "enabled" : "disabled");
}

const root = createRoot(/** @type {HTMLElement} */ (document.getElementById("root")));
root.render(h("div", null, h(Opener), h(Status)));
w.unmount = () => root.unmount();
