#!/usr/bin/env bash
# The demo (README's main command). Until the testbed and migration land it
# shows the foundation end to end: an edgemigd in its own network namespace
# boots a real guest under QEMU, the guest agent reports ready over
# virtio-serial, memory and disk workloads run and are verified, the guest
# answers on its site network, and everything is torn down again (also on
# Ctrl-C). Usage: scripts/demo.sh [--keep]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
keep=no
[[ ${1:-} == --keep ]] && keep=yes

bash scripts/setup.sh
bash scripts/build.sh --release
bin=target/release

prefix="emdemo$$"
work=$(mktemp -d "/tmp/$prefix-XXXX")
agent_pid=
cleanup() {
  [[ $keep == yes ]] && { echo "kept: namespace $prefix, state $work (agent pid $agent_pid)"; return; }
  [[ -n $agent_pid ]] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
  for pidfile in "$work"/state/vms/*/qemu.pid; do
    [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile")
    grep -qs "$work" "/proc/$pid/cmdline" && kill -9 "$pid" 2>/dev/null || true
  done
  ip netns delete "$prefix" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

ip netns add "$prefix"
ip -n "$prefix" link set lo up
cat > "$work/site.toml" <<TOML
site = "site-a"
api_socket = "$work/api.sock"
state_dir = "$work/state"
image_dir = "$repo/target/guest-image"
[vm_network]
bridge = "${prefix:0:10}br"
subnet = "10.10.0.0/24"
TOML
ip netns exec "$prefix" "$bin/edgemigd" --config "$work/site.toml" 2>"$work/edgemigd.log" &
agent_pid=$!
export EDGEMIG_SOCKET="$work/api.sock"
for _ in $(seq 100); do [[ -S $EDGEMIG_SOCKET ]] && break; sleep 0.1; done
em() { "$bin/edgemig" "$@"; }

em site
em vm create demo --memory 256M --disk 256M
t0=$(date +%s%N)
em vm start demo >/dev/null
echo "waiting for the guest agent..."
em vm guest demo hello
t1=$(date +%s%N)
echo "guest ready $(( (t1 - t0) / 1000000 )) ms after start"
em vm guest demo mem-write --mib 64 --rate 32
em vm guest demo disk-write --mib 64 --seed 7
sleep 3
em vm guest demo mem-status
em vm guest demo mem-verify
em vm guest demo disk-verify --mib 64 --seed 7
ip netns exec "$prefix" ping -c 3 -i 0.2 10.10.0.2
em vm list
em vm stop demo >/dev/null
em vm delete demo
echo "demo finished: VM booted, workloads verified, everything removed"
