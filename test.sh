#!/usr/bin/env bash
# The project's test command. It needs only Go, plus Debian's and npm's
# package registries for the browser interoperability tests: the tests
# install and start their own LiveKit server (see calltest), and
# interop/setup.sh installs Chromium and livekit-client. When that setup
# cannot run here, the browser tests are skipped (with a message) and the
# rest still runs.
set -euo pipefail
cd "$(dirname "$0")"
if [ "${CALLSTATE_BROWSER_TESTS:-}" != "0" ]; then
	if bash interop/setup.sh; then
		export CALLSTATE_BROWSER_TESTS=1
	else
		echo "test.sh: browser interop setup failed; the browser tests are skipped" >&2
		export CALLSTATE_BROWSER_TESTS=0
	fi
fi
# The browser test runs on its own, after the rest: Chromium and the
# other test binaries would otherwise compete for the same two cores.
go test -race -count=1 -timeout 20m $(go list ./... | grep -v /interop$)
go test -race -count=1 -timeout 5m ./interop
