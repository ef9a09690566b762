#!/usr/bin/env bash
# The project's test command. It needs only Go, plus Debian's and npm's
# package registries for the browser interoperability and cluster tests:
# the tests install and start their own LiveKit server (see calltest),
# interop/setup.sh installs Chromium and livekit-client, and
# calltest/setup-redis.sh installs Redis for the tests of a multi-node
# cluster. When a setup cannot run here, its tests are skipped (with a
# message) and the rest still runs.
set -euo pipefail
cd "$(dirname "$0")"
if [ "${CALLSTATE_CLUSTER_TESTS:-}" != "0" ]; then
	if bash calltest/setup-redis.sh; then
		export CALLSTATE_CLUSTER_TESTS=1
	else
		echo "test.sh: Redis setup failed; the cluster tests are skipped" >&2
		export CALLSTATE_CLUSTER_TESTS=0
	fi
fi
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
