// Hex, big-endian integers and a bounded reader: the byte-level helpers the
// receipt formats need. Integers are BigInt throughout, since u64 fields
// (times, keys, tree sizes) do not fit a JavaScript number exactly.

/** Lowercase hex of a byte array. */
export function toHex(bytes) {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

/**
 * Bytes from hex (either case). `len` is the exact byte length required;
 * `what` names the field in the error.
 */
export function fromHex(hex, len, what) {
  if (typeof hex !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(hex)) {
    throw new Error(`${what}: not hex`);
  }
  if (len !== undefined && hex.length !== 2 * len) {
    throw new Error(`${what}: ${hex.length / 2} bytes, must be ${len}`);
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Big-endian encoding of the unsigned integer `v` (BigInt or number) in `width` bytes. */
export function uintBE(v, width) {
  let x = BigInt(v);
  if (x < 0n || x >= 1n << BigInt(8 * width)) throw new Error(`${v} does not fit ${width} bytes`);
  const out = new Uint8Array(width);
  for (let i = width - 1; i >= 0; i--) {
    out[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}

/** Concatenation of byte arrays (strings are taken as ASCII/UTF-8). */
export function concat(...parts) {
  const enc = new TextEncoder();
  const arrays = parts.map((p) => (typeof p === 'string' ? enc.encode(p) : p));
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a, at);
    at += a.length;
  }
  return out;
}

/** Constant-shape equality of two byte arrays. */
export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

/** Reads fields in order from a byte array; every read is bounds-checked. */
export class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.at = 0;
  }

  take(n, what) {
    if (this.at + n > this.bytes.length) {
      throw new Error(
        `truncated: ${what} needs ${n} bytes at offset ${this.at}, the receipt has ${this.bytes.length}`,
      );
    }
    const out = this.bytes.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }

  uint(width, what) {
    let v = 0n;
    for (const b of this.take(width, what)) v = (v << 8n) | BigInt(b);
    return v;
  }

  peek() {
    return this.at < this.bytes.length ? this.bytes[this.at] : undefined;
  }

  remaining() {
    return this.bytes.length - this.at;
  }
}
