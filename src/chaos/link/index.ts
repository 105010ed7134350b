/** The WAN link emulator (`isthmus link`): see docs/link.md. */
export { LinkEmulator, type LinkEmulatorOptions } from './emulator.js';
export { LinkProxy, type LinkProxyConfig, type LinkProxyJson } from './proxy.js';
export type { LinkStats } from './connection.js';
export { linkApiHandler, selectCuts, startLinkApi, HELPER_PREFIX, type LinkApi } from './api.js';
export { parseLinkConfigText, parseProxySpec, type LinkProxySpec } from './config.js';
export {
  parseToxic,
  TOXIC_TYPES,
  TOXIC_TYPE_NAMES,
  type Toxic,
  type ToxicJson,
  type ToxicStream,
} from './toxics.js';
export { connectionRandom, deriveSeed, sampleLatencyMs, sampleLossStallMs, sliceSizes } from './sampling.js';
