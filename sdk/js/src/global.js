// Entry of the IIFE build (dist/sdk.js, served by the collector at GET /sdk.js): esbuild's
// --global-name=Analytics makes this module's exports the global `Analytics`.

export { init, VERSION } from "./client.js";
