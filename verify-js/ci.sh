#!/bin/sh
# CI for verify-js: the independent JavaScript verifier, its command line and
# its page. Run as root on a fresh Debian machine (or anywhere with Node.js
# >= 20.19, npm and Chromium). Installs Chromium only when it is missing,
# installs the pinned npm packages, checks that the committed page is what its
# sources build to, runs the node tests and the browser test. Exits non-zero
# on any failure.
set -eu
cd "$(dirname "$0")"
start=$(date +%s)

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
export CHROMIUM
if [ ! -x "$CHROMIUM" ]; then
  echo "verify-js: installing chromium"
  apt-get update -qq && apt-get install -y -qq chromium
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "verify-js: node and npm are needed (Node.js >= 20.19)" >&2
  exit 1
fi
node -e 'const [a, b] = process.versions.node.split(".").map(Number);
if (a < 20 || (a === 20 && b < 19)) { console.error(`verify-js: Node.js ${process.version} is too old (>= 20.19 needed)`); process.exit(1); }'

t=$(date +%s)
npm ci --no-audit --no-fund --loglevel=error
echo "verify-js: npm ci in $(( $(date +%s) - t )) s"
npm run --silent build:check
t=$(date +%s)
npm test --silent
echo "verify-js: node tests in $(( $(date +%s) - t )) s"
t=$(date +%s)
npm run --silent test:browser
echo "verify-js: browser test in $(( $(date +%s) - t )) s"
echo "verify-js: all passed in $(( $(date +%s) - start )) s"
