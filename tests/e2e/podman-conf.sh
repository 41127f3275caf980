#!/usr/bin/env bash
# Print a containers.conf that makes podman work on machines like the project's (see
# images/README.md): runc instead of crun (crun fails on hybrid cgroups there) and default
# ulimits no higher than this process's hard limits (it may not raise them).
# Use: CONTAINERS_CONF=$(tests/e2e/podman-conf.sh DIR/containers.conf) podman ...
set -euo pipefail
out=${1:?usage: podman-conf.sh OUTPUT}
cap() { local hard=$1 want=$2; [ "$hard" = unlimited ] || [ "$hard" -ge "$want" ] && echo "$want" || echo "$hard"; }
nofile=$(cap "$(ulimit -Hn)" 20000)
nproc=$(cap "$(ulimit -Hu)" 4096)
mkdir -p "$(dirname "$out")"
cat >"$out.part" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "$(command -v runc >/dev/null && echo runc || echo crun)"
CONF
mv "$out.part" "$out"
echo "$out"
