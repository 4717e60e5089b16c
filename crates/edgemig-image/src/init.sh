#!/bin/sh
# edgemig guest /init (PID 1), run by busybox sh. Built into the initramfs by
# the edgemig-image crate; see docs/guest-image.md for the contract.
#
# Kernel command line: console=ttyS0 panic=-1 quiet edgemig.ip0=ADDR/PREFIX [edgemig.gw=ADDR]
#
# PID 1 must never exit (the kernel would panic), so nothing here uses
# `set -e` and the script ends in an endless respawn loop.

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root
umask 022

log() { echo "edgemig-init: $*"; }

# 1. Pseudo file systems.
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc || log "mount /proc failed"
mount -t sysfs sysfs /sys || log "mount /sys failed"
if ! mount -t devtmpfs devtmpfs /dev 2>/dev/null; then
    # No devtmpfs: a tmpfs populated by mdev.
    log "devtmpfs unavailable, using tmpfs + mdev"
    mount -t tmpfs -o mode=0755 tmpfs /dev
    mknod -m 600 /dev/console c 5 1 2>/dev/null
    mknod -m 666 /dev/null c 1 3 2>/dev/null
    mdev -s
fi
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620 devpts /dev/pts 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /tmp || log "mount /tmp failed"
mount -t tmpfs -o mode=0755 tmpfs /run 2>/dev/null
# Every other busybox applet, for the agent and for debugging.
/bin/busybox --install -s 2>/dev/null

# Kernel modules, in dependency order. A module that is already loaded (or
# built in) counts as loaded.
loaded=0
total=0
if [ -f /lib/modules/order ]; then
    while read -r mod; do
        [ -n "$mod" ] || continue
        total=$((total + 1))
        if out=$(insmod "/lib/modules/$mod" 2>&1); then
            loaded=$((loaded + 1))
        else
            case "$out" in
            *"File exists"* | *"already"*) loaded=$((loaded + 1)) ;;
            *) log "insmod $mod failed: $out" ;;
            esac
        fi
    done </lib/modules/order
fi
log "modules loaded: $loaded of $total"

# 2. Network: loopback; eth0 from the kernel command line; eth1 (the handoff
# NIC) stays down until the agent configures it.
ip link set lo up
ip0=""
gw=""
set -f # no globbing of the command line words
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    edgemig.ip0=*) ip0=${arg#edgemig.ip0=} ;;
    edgemig.gw=*) gw=${arg#edgemig.gw=} ;;
    esac
done
set +f
if [ -n "$ip0" ]; then
    # virtio_net probes synchronously, but give the device a moment anyway.
    n=0
    while [ ! -e /sys/class/net/eth0 ] && [ "$n" -lt 50 ]; do
        sleep 0.1
        n=$((n + 1))
    done
    if ip addr add "$ip0" dev eth0 && ip link set eth0 up; then
        log "eth0 $ip0"
        if [ -n "$gw" ]; then
            if ip route add default via "$gw" dev eth0; then
                log "default via $gw"
            else
                log "default route via $gw failed"
            fi
        fi
    else
        log "configuring eth0 with $ip0 failed"
    fi
else
    log "no edgemig.ip0 on the kernel command line; eth0 left down"
fi

# 4. MPTCP on (it is the default on most kernels; ignore failure).
if { echo 1 >/proc/sys/net/mptcp/enabled; } 2>/dev/null; then
    log "mptcp enabled"
else
    log "mptcp sysctl unavailable"
fi
# An ADD_ADDR rides on one ACK; when that ACK is lost (say, while the
# tunnel to the old site comes up) the kernel re-sends it only after
# add_addr_timeout (120 s by default), longer than the handoff's grace.
if { echo 2 >/proc/sys/net/mptcp/add_addr_timeout; } 2>/dev/null; then
    log "mptcp add_addr_timeout 2 s"
fi

# 3. The guest agent, respawned forever.
log "starting agent"
while :; do
    /bin/edgemig-guest agent
    rc=$?
    log "agent exited with status $rc; restarting in 1 s"
    sleep 1
done
