#!/usr/bin/env bash
# The demo (README's main command): installs what is missing, builds, then
# runs `edgemig demo` — alice's Debian 12 VM (built from Debian packages,
# nginx-light given MPTCP by the guest agent) follows her from the far
# edge site to the near one over both inter-site paths while her stock
# client (`mptcpize run curl`) downloads from it; her download survives the
# change of address and gets faster. The Debian image is built once
# (about 70 s) and cached under target/distro-cache. The testbed is removed
# afterwards (also on Ctrl-C) unless --keep is given.
# Usage: scripts/demo.sh [--keep] [--json] [--baseline] [--seconds N] [--memory-mib N]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

bash scripts/setup.sh
bash scripts/build.sh --release
json=()
args=()
for a in "$@"; do
  case $a in
    --json) json=(--json) ;;
    *) args+=("$a") ;;
  esac
done
exec target/release/edgemig "${json[@]}" demo --name "demo$$" "${args[@]}"
