#!/usr/bin/env node
// Command line wrapper around lib/: verifies one belfry receipt (version 1, or
// version 2 aggregated through gateways) offline.
//   node verify.mjs (--anchor belfry1:HEX | --cluster cluster.toml) RECEIPT [FILE | --digest HEX] [--json]
// Exit 0 valid, 1 invalid (the failing check named on stderr), 2 usage or I/O error.
import { createReadStream, readFileSync } from 'node:fs';
import { sha256 } from '@noble/hashes/sha2.js';
import { toHex } from './lib/bytes.mjs';
import { stringifyExact } from './lib/receipt.mjs';
import { AnchorError, anchorFromClusterToml, parseAnchor, verifyReceipt } from './lib/verify.mjs';

const USAGE = `usage: node verify.mjs (--anchor belfry1:<96 hex> | --cluster cluster.toml) RECEIPT [FILE | --digest HEX] [--json]

Verifies a belfry receipt (binary .belfry or JSON form; version 1 from the
cluster, or version 2 aggregated through gateways) offline against the trust
anchor alone. FILE is the document: its SHA-256 must be the receipt's digest
(or give the digest itself with --digest). Checks, in order: format, anchor,
cluster_id, digest, aggregation (version 2 only), entry, inclusion_proof,
signature.
Exit 0 valid, 1 invalid (the failing check is named on stderr), 2 usage or I/O error.`;

class UsageError extends Error {}

function parseArgs(argv) {
  const a = { anchor: null, cluster: null, digest: null, json: false, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new UsageError(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === '--anchor') a.anchor = value();
    else if (arg === '--cluster') a.cluster = value();
    else if (arg === '--digest') a.digest = value();
    else if (arg === '--json') a.json = true;
    else if (arg === '-h' || arg === '--help') a.help = true;
    else if (arg.startsWith('-') && arg !== '-') throw new UsageError(`unknown option ${arg}`);
    else a.positional.push(arg);
  }
  if (a.help) return a;
  if ((a.anchor === null) === (a.cluster === null)) throw new UsageError('give the trust anchor: --anchor or --cluster (one of them)');
  if (a.positional.length < 1) throw new UsageError('name the RECEIPT to verify');
  if (a.positional.length > 2) throw new UsageError(`one RECEIPT and at most one FILE, got ${a.positional.length} arguments`);
  if (a.positional.length === 2 && a.digest !== null) throw new UsageError('give FILE or --digest, not both');
  if (a.digest !== null && !/^[0-9a-fA-F]{64}$/.test(a.digest)) throw new UsageError('--digest must be 64 hex digits');
  return a;
}

async function sha256File(path) {
  const h = sha256.create();
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk);
  return h.digest();
}

function read(path, what) {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new UsageError(`cannot read ${what} ${path}: ${e.code ?? e.message}`);
  }
}

async function main(argv) {
  const a = parseArgs(argv);
  if (a.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const anchorText = a.anchor ?? anchorFromClusterToml(read(a.cluster, 'cluster file').toString('utf8'));
  const anchor = parseAnchor(anchorText);
  const [receiptPath, filePath] = a.positional;
  const receipt = new Uint8Array(read(receiptPath, 'receipt'));
  let digest = a.digest;
  if (filePath !== undefined) {
    read(filePath, 'file').length; // a missing file is a usage error (2), before hashing
    digest = toHex(await sha256File(filePath));
  }
  const r = verifyReceipt(receipt, anchor, { digest: digest ?? undefined });
  const name = filePath ?? receiptPath;
  if (a.json) {
    process.stdout.write(`${stringifyExact({
      ok: r.ok,
      check_failed: r.failed,
      error: r.ok ? undefined : r.reason,
      digest: r.receipt?.digest ?? null,
      leaf_index: r.receipt?.leafIndex ?? null,
      tree_size: r.receipt?.treeSize ?? null,
      time: r.receipt?.time ?? null,
      time_utc: r.receipt?.timeUtc ?? null,
      gateway_layers: r.receipt?.gatewayLayers ?? null,
      file: filePath ?? null,
      receipt: receiptPath,
      checks: r.checks,
    })}\n`);
  }
  if (r.ok) {
    if (!a.json) {
      const s = r.receipt;
      const via = s.gatewayLayers === 0 ? ''
        : s.gatewayLayers === 1 ? ' through 1 gateway round' : ` through ${s.gatewayLayers} stacked gateway rounds`;
      process.stdout.write(`OK ${name}: leaf ${s.leafIndex} of tree size ${s.treeSize}${via}, in the log by ${s.timeUtc}${digest ? '' : ' (no document given: digest not checked)'}\n`);
    }
    return 0;
  }
  process.stderr.write(`FAIL ${name}: ${r.failed} check: ${r.reason}\n`);
  return 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    if (e instanceof UsageError || e instanceof AnchorError) {
      process.stderr.write(`error: ${e.message}\n${e instanceof UsageError ? 'run with --help for usage\n' : ''}`);
      process.exit(2);
    }
    process.stderr.write(`error: ${e.stack ?? e}\n`);
    process.exit(2);
  },
);
