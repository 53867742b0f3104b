// Builds page/verify.html: the page's script and the verifier library, with
// @noble/curves and @noble/hashes, bundled into one inline <script>, so the
// page works from file:// (where Chromium blocks module imports) and offline.
// With --check it writes nothing and fails if the committed page is stale.
import { readFileSync, writeFileSync } from 'node:fs';
import { build } from 'esbuild';

const here = (p) => new URL(p, import.meta.url);
const out = await build({
  entryPoints: [here('app.mjs').pathname],
  bundle: true,
  format: 'iife',
  minify: true,
  target: 'es2020', // BigInt
  legalComments: 'inline',
  write: false,
});
const script = out.outputFiles[0].text.replace(/<\/script/gi, '<\\/script');
const template = readFileSync(here('template.html'), 'utf8');
if (!template.includes('<!-- BUNDLE -->')) throw new Error('template.html lost its <!-- BUNDLE --> marker');
const html = template.replace('<!-- BUNDLE -->', () => `<script>\n${script}</script>`);
if (process.argv.includes('--check')) {
  // CI: the committed page must be what the sources build to.
  if (readFileSync(here('verify.html'), 'utf8') !== html) {
    console.error('page/verify.html is stale: run `npm run build` in verify-js and commit it');
    process.exit(1);
  }
  console.log('page/verify.html is up to date');
} else {
  writeFileSync(here('verify.html'), html);
  console.log(`wrote page/verify.html (${html.length.toLocaleString('en')} bytes)`);
}
