#!/usr/bin/env bash
# Installs what the cluster tests (calltest.NewCluster) need besides the
# LiveKit server: Debian's redis-server. The tests start and stop their own
# Redis on a free port of 127.0.0.1, without persistence; the package's
# service is not needed and is left as the package sets it up. Safe to run
# again.
#
#	bash calltest/setup-redis.sh && CALLSTATE_CLUSTER_TESTS=1 go test -run Cluster .
set -euo pipefail

if command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; then
	echo "calltest: redis-server present ($(/usr/bin/redis-server --version 2>/dev/null || redis-server --version))"
	exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
$sudo apt-get update -qq
# Where an init system runs, the package also starts its own service on
# port 6379; the tests never use it (they pick free ports).
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server
/usr/bin/redis-server --version
