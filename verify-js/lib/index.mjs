// belfry-verify: an independent verifier of belfry receipts (README "Verify a
// receipt without belfry", docs/design.md §3.7; aggregated receipts, version
// 2: docs/gateway.md), for Node and browsers.
export {
  AnchorError, CHECKS, DST, anchorFromClusterToml, checksFor, formatAnchor, parseAnchor, utcMicros,
  verifyReceipt, verifySignature,
} from './verify.mjs';
export {
  AGGREGATED_VERSION, MAX_AGGREGATION_STEPS, MAX_PROOF_LEN, ReceiptError, clusterId, decodeEntry,
  encodeEntry, readBinary, readBinaryAggregated, readJson, readJsonText, readReceipt, stringifyExact,
  toBinary, toJsonValue, treeHeadMessage,
} from './receipt.mjs';
export {
  AGGREGATE_LEAF_TAG, aggregateLeafHash, leafHash, nodeHash, rootFromInclusion,
} from './merkle.mjs';
export { fromHex, toHex } from './bytes.mjs';
export { parseJson } from './json.mjs';
