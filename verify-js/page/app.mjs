// The verifier page: wires the inputs to lib/verify.mjs. The document is read
// in chunks through an incremental SHA-256, so a large file is never held in
// memory at once, and nothing is sent anywhere (the page's CSP forbids it).
import { sha256 } from '@noble/hashes/sha2.js';
import { toHex } from '../lib/bytes.mjs';
import { AnchorError, anchorFromClusterToml, parseAnchor, verifyReceipt } from '../lib/verify.mjs';

const CHUNK_BYTES = 4 * 1024 * 1024;
const $ = (id) => document.getElementById(id);

const state = {
  digest: null, // hex of the document's SHA-256, when a document was given
  documentName: null,
  receipt: null, // bytes of a receipt file
  receiptName: null,
  hashing: null, // the promise of the running hash
};

function setStatus(id, text, bad = false) {
  const el = $(id);
  el.textContent = text;
  el.style.color = bad ? 'var(--fail)' : '';
}

/** SHA-256 of a Blob, chunk by chunk. */
async function hashBlob(blob, onProgress) {
  const h = sha256.create();
  for (let at = 0; at < blob.size; at += CHUNK_BYTES) {
    const chunk = new Uint8Array(await blob.slice(at, at + CHUNK_BYTES).arrayBuffer());
    h.update(chunk);
    onProgress(Math.min(at + CHUNK_BYTES, blob.size), blob.size);
  }
  return toHex(h.digest());
}

function takeDocument(file) {
  state.documentName = file.name;
  state.digest = null;
  $('digest').value = '';
  setStatus('document-status', `${file.name}: hashing…`);
  state.hashing = hashBlob(file, (done, total) => {
    setStatus('document-status', `${file.name}: hashing… ${Math.floor((100 * done) / Math.max(total, 1))}%`);
  }).then((hex) => {
    state.digest = hex;
    setStatus('document-status', `${file.name} (${file.size.toLocaleString('en')} bytes), SHA-256 ${hex}`);
  });
  return state.hashing;
}

async function takeReceipt(file) {
  state.receipt = new Uint8Array(await file.arrayBuffer());
  state.receiptName = file.name;
  $('receipt-json').value = '';
  setStatus('receipt-status', `${file.name} (${state.receipt.length} bytes)`);
}

async function takeCluster(file) {
  try {
    $('anchor').value = anchorFromClusterToml(await file.text());
    setStatus('anchor-status', `trust anchor read from ${file.name}`);
  } catch (e) {
    setStatus('anchor-status', `${file.name}: ${e.message}`, true);
  }
}

/** A file dropped anywhere: a receipt, a cluster file or the document, by its name. */
function classify(file) {
  if (/\.belfry$/i.test(file.name) || /receipt.*\.json$/i.test(file.name)) return takeReceipt(file);
  if (/\.toml$/i.test(file.name)) return takeCluster(file);
  return takeDocument(file);
}

function dropZone(zoneId, inputId, take) {
  const zone = $(zoneId);
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    e.stopPropagation();
    zone.classList.remove('over');
    const files = [...e.dataTransfer.files];
    if (files.length === 1) take(files[0]);
    else files.forEach(classify);
  });
  $(inputId).addEventListener('change', (e) => { if (e.target.files[0]) take(e.target.files[0]); });
}

function show(result, verdictText, state_) {
  const v = $('verdict');
  v.dataset.state = state_;
  v.textContent = verdictText;
  $('summary').textContent = '';
  $('checks').textContent = '';
  if (!result) return;
  if (result.receipt) {
    const r = result.receipt;
    $('summary').innerHTML = '';
    const lines = [[result.ok ? 'Signed time (UTC)' : 'Claimed time (UTC, not verified)', r.timeUtc]];
    if (r.gatewayLayers > 0) {
      // An aggregated receipt (version 2): the digest, the gateway rounds it
      // went through, and the cluster's entry of the topmost round's root.
      const rounds = r.gatewayLayers === 1 ? '1 gateway round' : `${r.gatewayLayers} stacked gateway rounds`;
      lines.push(['Digest', r.digest]);
      lines.push(['Gateways', `through ${rounds} into the root ${r.loggedDigest ?? '(not a digest entry)'}`]);
      lines.push(['Entry', `the root's entry: leaf ${r.leafIndex} of tree size ${r.treeSize}`]);
    } else {
      const what = r.kind === 'digest' ? `digest ${r.digest}` : 'a Tick entry';
      lines.push(['Entry', `${what}, leaf ${r.leafIndex} of tree size ${r.treeSize}`]);
    }
    const ids = { Entry: 'entry-summary', Digest: 'digest-summary', Gateways: 'gateway-layers' };
    for (const [k, val] of lines) {
      const div = document.createElement('div');
      const b = document.createElement('b');
      b.textContent = `${k}: `;
      const s = document.createElement('span');
      s.className = 'mono';
      s.id = k.endsWith('(UTC)') ? 'signed-time' : ids[k] ?? 'claimed-time';
      s.textContent = val;
      div.append(b, s);
      $('summary').append(div);
    }
  }
  for (const c of result.checks) {
    const li = document.createElement('li');
    li.dataset.check = c.check;
    li.dataset.status = c.status;
    for (const [cls, text] of [['st', c.status.toUpperCase()], ['name', c.check], ['detail', c.detail]]) {
      const span = document.createElement('span');
      span.className = cls;
      span.textContent = text;
      li.append(span);
    }
    $('checks').append(li);
  }
}

async function verify() {
  show(null, 'verifying…', 'busy');
  try {
    if (state.hashing) await state.hashing;
    const anchorText = $('anchor').value.trim();
    if (!anchorText) throw new AnchorError('enter the trust anchor (belfry1:…) or load cluster.toml');
    const anchor = parseAnchor(anchorText);
    const pasted = $('receipt-json').value.trim();
    const receipt = pasted ? pasted : state.receipt;
    if (!receipt) throw new Error('give a receipt: drop its file or paste its JSON');
    const typed = $('digest').value.trim();
    if (typed && !/^[0-9a-fA-F]{64}$/.test(typed)) throw new Error('the digest must be 64 hex digits');
    const digest = typed || state.digest || undefined;
    const result = verifyReceipt(receipt, anchor, { digest });
    if (result.ok) {
      const doc = digest ? '' : ' (no document given: the digest was not checked)';
      show(result, `OK — in the log by ${result.receipt.timeUtc}${doc}`, 'ok');
    } else {
      show(result, `FAIL — ${result.failed} check: ${result.reason}`, 'fail');
    }
  } catch (e) {
    show(null, e.message, 'error');
  }
}

dropZone('document-drop', 'document-input', takeDocument);
dropZone('receipt-drop', 'receipt-input', takeReceipt);
$('cluster-input').addEventListener('change', (e) => { if (e.target.files[0]) takeCluster(e.target.files[0]); });
$('digest').addEventListener('input', () => {
  state.digest = null;
  state.hashing = null;
  state.documentName = null;
  setStatus('document-status', '');
});
$('receipt-json').addEventListener('input', () => {
  state.receipt = null;
  setStatus('receipt-status', '');
});
$('verify').addEventListener('click', verify);
document.addEventListener('dragover', (e) => e.preventDefault());
document.addEventListener('drop', (e) => {
  e.preventDefault();
  [...e.dataTransfer.files].forEach(classify);
});
