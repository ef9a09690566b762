#!/usr/bin/env bash
# The project's test command. It needs only Go: the tests install and start
# their own LiveKit server (see calltest).
set -euo pipefail
cd "$(dirname "$0")"
go test -race -count=1 -timeout 20m ./...
