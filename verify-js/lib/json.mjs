// A strict JSON reader that keeps integers exact. `JSON.parse` turns
// 18446744073709551615 into a rounded float; a receipt's u64 fields (key,
// times, sizes) may exceed 2^53, so integers are read as BigInt here.
// Duplicate keys are refused: a verifier must not pick one of two values.

const MAX_DEPTH = 32;

/** Parses JSON text; integers become BigInt, other numbers are refused. */
export function parseJson(text) {
  const p = { s: text, i: 0 };
  const v = value(p, 0);
  ws(p);
  if (p.i !== p.s.length) fail(p, 'trailing text after the JSON value');
  return v;
}

function fail(p, why) {
  throw new Error(`JSON at offset ${p.i}: ${why}`);
}

function ws(p) {
  while (p.i < p.s.length && ' \t\n\r'.includes(p.s[p.i])) p.i++;
}

function value(p, depth) {
  if (depth > MAX_DEPTH) fail(p, `nested deeper than ${MAX_DEPTH}`);
  ws(p);
  const c = p.s[p.i];
  if (c === '{') return object(p, depth);
  if (c === '[') return array(p, depth);
  if (c === '"') return string(p);
  if (c === '-' || (c >= '0' && c <= '9')) return number(p);
  for (const [word, v] of [['true', true], ['false', false], ['null', null]]) {
    if (p.s.startsWith(word, p.i)) {
      p.i += word.length;
      return v;
    }
  }
  return fail(p, c === undefined ? 'unexpected end' : `unexpected ${JSON.stringify(c)}`);
}

function object(p, depth) {
  p.i++;
  const out = Object.create(null);
  ws(p);
  if (p.s[p.i] === '}') {
    p.i++;
    return out;
  }
  for (;;) {
    ws(p);
    if (p.s[p.i] !== '"') fail(p, 'expected a key');
    const key = string(p);
    if (Object.prototype.hasOwnProperty.call(out, key)) fail(p, `duplicate key ${JSON.stringify(key)}`);
    ws(p);
    if (p.s[p.i] !== ':') fail(p, 'expected ":"');
    p.i++;
    out[key] = value(p, depth + 1);
    ws(p);
    if (p.s[p.i] === ',') {
      p.i++;
    } else if (p.s[p.i] === '}') {
      p.i++;
      return out;
    } else {
      fail(p, 'expected "," or "}"');
    }
  }
}

function array(p, depth) {
  p.i++;
  const out = [];
  ws(p);
  if (p.s[p.i] === ']') {
    p.i++;
    return out;
  }
  for (;;) {
    out.push(value(p, depth + 1));
    ws(p);
    if (p.s[p.i] === ',') {
      p.i++;
    } else if (p.s[p.i] === ']') {
      p.i++;
      return out;
    } else {
      fail(p, 'expected "," or "]"');
    }
  }
}

function string(p) {
  const m = /^"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/.exec(p.s.slice(p.i));
  if (!m) fail(p, 'bad string');
  p.i += m[0].length;
  return JSON.parse(m[0]);
}

function number(p) {
  const m = /^-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(p.s.slice(p.i));
  if (!m) fail(p, 'bad number');
  if (m[1] !== undefined || m[2] !== undefined) fail(p, `${m[0]}: only integers appear in a receipt`);
  p.i += m[0].length;
  return BigInt(m[0]);
}
