// belfry-verify: an independent verifier of belfry receipts (README "Verify a
// receipt without belfry", docs/design.md §3.7), for Node and browsers.
export {
  AnchorError, CHECKS, DST, anchorFromClusterToml, formatAnchor, parseAnchor, utcMicros,
  verifyReceipt, verifySignature,
} from './verify.mjs';
export {
  MAX_PROOF_LEN, ReceiptError, clusterId, decodeEntry, encodeEntry, readBinary, readJson,
  readJsonText, readReceipt, stringifyExact, toBinary, toJsonValue, treeHeadMessage,
} from './receipt.mjs';
export { leafHash, nodeHash, rootFromInclusion } from './merkle.mjs';
export { fromHex, toHex } from './bytes.mjs';
export { parseJson } from './json.mjs';
