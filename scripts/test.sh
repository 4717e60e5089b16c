#!/usr/bin/env bash
# The test command: installs what is missing (scripts/setup.sh), builds the
# guest image, then runs every test of the workspace, including the ones
# that boot real QEMU guests inside network namespaces (needs root).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

bash scripts/setup.sh
bash scripts/build.sh
export EDGEMIG_KERNEL_DIR="$repo/target/guest-kernel"
export EDGEMIG_IMAGE_DIR="$repo/target/guest-image"
cargo test --locked --workspace "$@"
