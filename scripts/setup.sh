#!/usr/bin/env bash
# Idempotent machine setup for edgemig on Debian 12 (bookworm), run as root.
# Installs QEMU >= 10 from bookworm-backports, iproute2, busybox-static, cpio,
# mptcpd (mptcpize), socat, zstd, etcd-server (directory tests), protobuf-compiler +
# libprotobuf-dev (etcd-client build), fonts-dejavu-core (plots), the disk-image tools of
# `edgemig image build --distro` (mmdebstrap, fdisk, dosfstools, mtools, e2fsprogs; OVMF
# for UEFI boots) and of scripts/package-debs.sh (dpkg-dev), and extracts the Debian
# cloud kernel + the guest modules
# into $EDGEMIG_KERNEL_DIR (default: <repo>/target/guest-kernel).
# Everything comes from the Debian package archive; nothing else is fetched.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
kernel_dir=${EDGEMIG_KERNEL_DIR:-$repo/target/guest-kernel}

log() { printf 'setup: %s\n' "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
  log "must run as root (it installs packages)"; exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# 1. bookworm-backports (QEMU 10 lives there; bookworm has 7.2).
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  log "adding bookworm-backports to apt sources"
  cat > /etc/apt/sources.list.d/edgemig-backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt_updated=no
fi

qemu_ok() {
  command -v qemu-system-x86_64 >/dev/null || return 1
  local major
  major=$(qemu-system-x86_64 --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -n1)
  [[ -n $major && $major -ge 10 ]]
}

need=()
qemu_ok || need+=(qemu-system-x86)
for bin in ip:iproute2 busybox:busybox-static cpio:cpio mptcpize:mptcpize socat:socat zstd:zstd \
           etcd:etcd-server protoc:protobuf-compiler nft:nftables qemu-img:qemu-utils cc:build-essential curl:curl; do
  command -v "${bin%%:*}" >/dev/null || need+=("${bin#*:}")
done
[[ -x /bin/busybox ]] || need+=(busybox-static)
# etcd-client's build compiles etcd's protos, which import Google's well-known types.
[[ -f /usr/include/google/protobuf/descriptor.proto ]] || need+=(libprotobuf-dev)
# The plots of `edgemig bench paper` are drawn with this font.
[[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || need+=(fonts-dejavu-core)

if ((${#need[@]})) || [[ ${apt_updated:-yes} == no ]]; then
  log "installing: ${need[*]:-(sources only)}"
  apt-get update -qq
  if ((${#need[@]})); then
    apt-get install -y -qq --no-install-recommends -t bookworm-backports "${need[@]}" >/dev/null
  fi
fi
qemu_ok || { log "QEMU >= 10 still missing after install"; exit 1; }

# 1b. Tools of `edgemig image build --distro` (Debian disk images; GRUB
# comes from the image's own packages) and of scripts/package-debs.sh, from
# bookworm itself (not backports). OVMF: UEFI firmware for QEMU.
img_need=()
for bin in mmdebstrap:mmdebstrap sfdisk:fdisk mkfs.vfat:dosfstools mcopy:mtools \
           mkfs.ext4:e2fsprogs debugfs:e2fsprogs dpkg-deb:dpkg dpkg-shlibdeps:dpkg-dev; do
  command -v "${bin%%:*}" >/dev/null || img_need+=("${bin#*:}")
done
[[ -f /usr/share/OVMF/OVMF_CODE_4M.fd && -f /usr/share/OVMF/OVMF_VARS_4M.fd ]] || img_need+=(ovmf)
if ((${#img_need[@]})); then
  log "installing image tools: ${img_need[*]}"
  [[ -n $(apt-cache policy mmdebstrap | sed -n 's/ *Candidate: //p' | grep -v none) ]] || apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${img_need[@]}" >/dev/null
fi

# 2. Guest kernel: the Debian cloud kernel, vmlinuz + the modules the guest needs.
if [[ ! -f $kernel_dir/vmlinuz || ! -f $kernel_dir/modules/.complete-v3 ]]; then
  log "fetching the Debian cloud kernel into $kernel_dir"
  [[ -n $(apt-cache policy linux-image-cloud-amd64 | sed -n 's/ *Candidate: //p' | grep -v none) ]] || apt-get update -qq
  pkg=$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/ *Depends: \(linux-image-[0-9].*\)/\1/p' | head -n1)
  [[ -n $pkg ]] || { log "cannot resolve linux-image-cloud-amd64"; exit 1; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "$pkg")
  dpkg-deb -x "$work"/*.deb "$work/root"
  rm -rf "$kernel_dir"
  mkdir -p "$kernel_dir/modules"
  cp "$work"/root/boot/vmlinuz-* "$kernel_dir/vmlinuz"
  kver=$(ls "$work/root/lib/modules")
  echo "$kver" > "$kernel_dir/version"
  # Modules in load order (dependencies first). Missing ones are built in.
  # inet_diag + tcp_diag + mptcp_diag: the guest agent lists connections through sock_diag.
  for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net virtio_blk virtio_console \
           inet_diag tcp_diag mptcp_diag; do
    f=$(find "$work/root/lib/modules/$kver" -name "$m.ko*" | head -n1)
    if [[ -n $f ]]; then cp "$f" "$kernel_dir/modules/"; echo "$(basename "$f")" >> "$kernel_dir/modules/order"; fi
  done
  touch "$kernel_dir/modules/.complete-v3"
fi
# 3. The kernel of the BPF hook tests (edgemig-mptcpify, edgemig-guest): the
# bookworm-backports cloud kernel (6.12, BTF), booted under QEMU because
# this host refuses BPF trampoline programs.
hook_dir=${EDGEMIG_HOOK_KERNEL_DIR:-$repo/target/guest-kernel-6.12}
if [[ ! -f $hook_dir/vmlinuz ]]; then
  log "fetching the bookworm-backports cloud kernel into $hook_dir"
  hook_pkg=$(apt-cache depends linux-image-cloud-amd64/bookworm-backports | sed -n 's/ *Depends: \(linux-image-[0-9].*\)/\1/p' | head -n1)
  [[ -n $hook_pkg ]] || { log "cannot resolve linux-image-cloud-amd64 in bookworm-backports"; exit 1; }
  hook_work=$(mktemp -d)
  (cd "$hook_work" && apt-get download -qq -o APT::Sandbox::User=root "$hook_pkg/bookworm-backports")
  dpkg-deb -x "$hook_work"/*.deb "$hook_work/root"
  mkdir -p "$hook_dir"
  cp "$hook_work"/root/boot/vmlinuz-* "$hook_dir/vmlinuz.tmp" && mv "$hook_dir/vmlinuz.tmp" "$hook_dir/vmlinuz"
  rm -rf "$hook_work"
fi

# 4. The unprivileged user QEMU runs as (edgemigd's [qemu] user).
if ! id edgemig-qemu >/dev/null 2>&1; then
  log "creating the system user edgemig-qemu"
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin edgemig-qemu
fi
# Postcopy migration: QEMU, running as edgemig-qemu, opens /dev/userfaultfd
# (as the host package's udev rule allows on real hosts).
if [[ -c /dev/userfaultfd ]] && [[ $(stat -c %G:%a /dev/userfaultfd) != edgemig-qemu:660 ]]; then
  log "giving edgemig-qemu access to /dev/userfaultfd (postcopy)"
  chgrp edgemig-qemu /dev/userfaultfd && chmod 0660 /dev/userfaultfd
fi
log "ready: $(qemu-system-x86_64 --version | head -n1); kernel $(cat "$kernel_dir/version")"
