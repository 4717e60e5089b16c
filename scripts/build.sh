#!/usr/bin/env bash
# Builds edgemig: the host binaries (edgemig, edgemigd), the statically
# linked guest agent, and the guest image (target/guest-image).
# Usage: scripts/build.sh [--release]   (host binaries in debug by default)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

profile=debug
cargo_profile=()
if [[ ${1:-} == --release ]]; then profile=release; cargo_profile=(--release); fi

# The guest agent runs inside a busybox initramfs: link it statically.
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --locked -q -p edgemig-guest --release --target x86_64-unknown-linux-gnu
cargo build --locked -q "${cargo_profile[@]}" -p edgemig -p edgemig-linkemu --bins
"target/$profile/edgemig" image build \
  --kernel-dir target/guest-kernel \
  --guest-agent target/x86_64-unknown-linux-gnu/release/edgemig-guest \
  --out target/guest-image
bash scripts/package-debs.sh "${cargo_profile[@]}"   # target/debian/edgemig{,-guest}_<version>_amd64.deb
