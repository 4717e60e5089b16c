#!/usr/bin/env bash
# Writes the Debian packages of edgemig into target/debian/ with dpkg-deb:
#   edgemig-guest_<version>_amd64.deb  the static guest agent, its systemd
#       unit (started when the virtio-serial port org.edgemig.agent appears),
#       its udev rule, and the networkd / NetworkManager files that leave the
#       VM's virtio-net NICs to the agent;
#   edgemig_<version>_amd64.deb        edgemig + edgemigd, edgemigd.service,
#       /etc/edgemig/site.toml.example and the guest image.
# <version> is the workspace version (root Cargo.toml). Run after
# scripts/build.sh (which calls it): host binaries from target/release with
# --release, else target/debug. Packages are reproducible: every file gets
# the modification time of the newest input binary.
# Usage: scripts/package-debs.sh [--release]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

log() { printf 'package-debs: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

profile=debug
build_cmd="scripts/build.sh"
if [[ ${1:-} == --release ]]; then profile=release; build_cmd="scripts/build.sh --release"; fi

version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' Cargo.toml)
[[ -n $version ]] || die "no version in [workspace.package] of Cargo.toml"

guest_bin=target/x86_64-unknown-linux-gnu/release/edgemig-guest
host_bins=(target/$profile/edgemig target/$profile/edgemigd)
image=(target/guest-image/vmlinuz target/guest-image/initramfs.cpio)
for f in "$guest_bin" "${host_bins[@]}" "${image[@]}"; do
  [[ -f $f ]] || die "$f missing: run $build_cmd first"
done
# The guest package must run on any distribution: no ELF interpreter.
if LC_ALL=C readelf -lW "$guest_bin" | grep -q 'program interpreter'; then
  die "$guest_bin is dynamically linked; scripts/build.sh builds it statically"
fi

out=target/debian
mkdir -p "$out"
work=$(mktemp -d "$out/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# up_to_date NAME INPUT...: the package exists and was built from these
# very inputs (path, size, mtime of each file, recorded in a stamp file).
up_to_date() {
  local name=$1
  shift
  local deb="$out/${name}_${version}_amd64.deb" stamp="$out/.${name}.inputs"
  find "$@" scripts/package-debs.sh -type f -printf '%p %s %T@\n' | LC_ALL=C sort > "$work/$name.inputs"
  if [[ -f $deb && -f $stamp ]] && cmp -s "$stamp" "$work/$name.inputs"; then
    log "$deb is up to date"
    return 0
  fi
  return 1
}

# build_deb TREE NAME SRC EPOCH [SHLIBS]: copyright, changelog, control
# fields, maintainer scripts, md5sums, then dpkg-deb into
# $out/NAME_VERSION_amd64.deb (atomically).
build_deb() {
  local tree=$1 name=$2 src=$3 epoch=$4
  local deb="$out/${name}_${version}_amd64.deb"
  local doc="$tree/usr/share/doc/$name"
  install -d "$tree/DEBIAN" "$doc"
  cat > "$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: edgemig

Files: *
Copyright: $(date -u -d "@$epoch" +%Y) the edgemig authors
License: Apache-2.0
 On Debian systems the full text of the license is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
  printf '%s (%s) unstable; urgency=medium\n\n  * Built by scripts/package-debs.sh.\n\n -- %s  %s\n' \
    "$name" "$version" "$(sed -n 's/^Maintainer: //p' "$src/control")" \
    "$(LC_ALL=C date -u -R -d "@$epoch")" | gzip -9n > "$doc/changelog.gz"
  local size
  size=$(du -sk --apparent-size --exclude=DEBIAN "$tree" | cut -f1)
  sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$size/" -e "s/@SHLIBS_DEPENDS@/${5:-}/" \
    "$src/control" > "$tree/DEBIAN/control"
  for s in postinst prerm postrm; do install -m 0755 "$src/$s" "$tree/DEBIAN/$s"; done
  [[ ! -f $src/conffiles ]] || install -m 0644 "$src/conffiles" "$tree/DEBIAN/conffiles"
  (cd "$tree" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) \
    > "$tree/DEBIAN/md5sums"
  find "$tree" -exec touch -h -d "@$epoch" {} +
  SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group -Zxz -z3 --build "$tree" "$deb.tmp" >/dev/null
  mv "$deb.tmp" "$deb"
  mv "$work/$name.inputs" "$out/.${name}.inputs"
  log "wrote $deb ($(du -k "$deb" | cut -f1) KiB)"
}

newest() { stat -c %Y "$@" | sort -n | tail -n1; }

# The guest agent.
if ! up_to_date edgemig-guest "$guest_bin" packaging/guest; then
g=$work/guest
install -D -m 0755 "$guest_bin" "$g/usr/bin/edgemig-guest"
install -D -m 0644 packaging/guest/edgemig-guest.service "$g/usr/lib/systemd/system/edgemig-guest.service"
install -D -m 0644 packaging/guest/60-edgemig-guest.rules "$g/usr/lib/udev/rules.d/60-edgemig-guest.rules"
install -D -m 0644 packaging/guest/05-edgemig.network "$g/usr/lib/systemd/network/05-edgemig.network"
install -D -m 0644 packaging/guest/edgemig-guest-nm.conf "$g/usr/lib/NetworkManager/conf.d/edgemig-guest.conf"
build_deb "$g" edgemig-guest packaging/guest "$(newest "$guest_bin" packaging/guest/*)"
fi

# The host agent and CLI (dynamically linked: their library dependencies
# come from dpkg-shlibdeps, which wants the tree at debian/<package>).
if ! up_to_date edgemig "${host_bins[@]}" "${image[@]}" packaging/host; then
command -v dpkg-shlibdeps >/dev/null || die "dpkg-shlibdeps missing: apt-get install dpkg-dev"
h=$work/debian/edgemig
for b in "${host_bins[@]}"; do
  install -D -m 0755 "$b" "$h/usr/bin/$(basename "$b")"
  strip --strip-unneeded "$h/usr/bin/$(basename "$b")"
done
install -D -m 0644 packaging/host/edgemigd.service "$h/usr/lib/systemd/system/edgemigd.service"
install -D -m 0644 packaging/host/site.toml.example "$h/etc/edgemig/site.toml.example"
install -D -m 0644 packaging/host/60-edgemig.conf "$h/usr/lib/sysctl.d/60-edgemig.conf"
install -D -m 0644 packaging/host/60-edgemig-userfaultfd.rules "$h/usr/lib/udev/rules.d/60-edgemig-userfaultfd.rules"
for f in "${image[@]}"; do install -D -m 0644 "$f" "$h/usr/share/edgemig/guest-image/$(basename "$f")"; done
printf 'Source: edgemig\n\nPackage: edgemig\nArchitecture: amd64\n' > "$work/debian/control"
shlibs=$(cd "$work" && dpkg-shlibdeps -O -e debian/edgemig/usr/bin/edgemig -e debian/edgemig/usr/bin/edgemigd 2>/dev/null |
  sed -n 's/^shlibs:Depends=//p')
[[ -n $shlibs ]] || die "dpkg-shlibdeps found no library dependencies of the host binaries"
build_deb "$h" edgemig packaging/host "$(newest "${host_bins[@]}" "${image[@]}" packaging/host/*)" "$shlibs"
fi
