#!/usr/bin/env bash
# Installs what the browser interoperability test needs: Debian's chromium,
# the web app's npm packages (livekit-client, esbuild, playwright-core), and
# the bundled app in web/dist/app.js. Safe to run again.
#
#	bash interop/setup.sh && CALLSTATE_BROWSER_TESTS=1 go test ./interop
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
	sudo=""
	if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
	$sudo apt-get update -qq
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi

cd web
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
	npm ci --no-audit --no-fund
fi
npx --no-install esbuild app.js --bundle --format=esm --target=es2020 \
	--outfile=dist/app.js --log-level=warning
npx --no-install esbuild datatrack.js --bundle --format=esm --target=es2020 \
	--outfile=dist/datatrack.js --log-level=warning
echo "interop: ready (chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}'))"
