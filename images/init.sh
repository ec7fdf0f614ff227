#!/bin/sh
# boxlite initramfs /init (busybox sh, PID 1).
#
# boxlite.mode=probe|floor  print BOXLITE-PROBE-OK and power off, nothing else
# boxlite.mode=agent        (default) mount the read-only agent root from the
#                           virtio-blk disk with serial "boxlite-agent" and
#                           switch_root into the guest agent
#
# Any failure prints one "boxlite-init: <what failed>" line and powers off:
# this script never hangs and never drops to a shell. If PID 1 dies anyway the
# kernel panics, and panic=-1 plus QEMU's -no-reboot end the VM too.

PATH=/bin
export PATH

AGENT_SERIAL=boxlite-agent
NEWROOT=/newroot
AGENT_PYTHON=/usr/bin/python3
AGENT_MODULE=boxlite_agent.init
AGENT_LIB=/opt/boxlite/lib

halt_vm() {
    # ACPI power-off: QEMU exits (with or without -no-reboot) about 45 ms later.
    poweroff -f
    # Not reached. If it were: a reset also ends QEMU under -no-reboot, and
    # failing that, PID 1 exiting panics the kernel and panic=-1 resets.
    reboot -f
    exit 1
}

die() {
    echo "boxlite-init: $*" >/dev/console
    halt_vm
}

boot_mode() {
    mode=agent
    for arg in $(cat /proc/cmdline); do
        case "$arg" in
            boxlite.mode=*) mode="${arg#boxlite.mode=}" ;;
        esac
    done
    echo "$mode"
}

load_modules() {
    # One module path per line, in dependency order (written by images/build.py).
    while read -r ko; do
        [ -n "$ko" ] || continue
        insmod "$ko" || die "insmod $ko failed"
    done </etc/boxlite/modules
    # Faster implementations that may not load on every CPU (e.g. crc32c-intel
    # needs SSE4.2); the generic ones above are the fallback.
    while read -r ko; do
        [ -n "$ko" ] && insmod "$ko" 2>/dev/null
    done </etc/boxlite/modules.optional
    # virtio over PCI (cloud-hypervisor); QEMU microvm has no PCI bus and skips it.
    for dev in /sys/bus/pci/devices/*; do
        [ -e "$dev" ] || continue
        while read -r ko; do
            [ -n "$ko" ] || continue
            insmod "$ko" || die "insmod $ko failed"
        done </etc/boxlite/modules.pci
        break
    done
}

find_agent_disk() {
    # virtio-blk probes synchronously, but allow the device a moment anyway.
    tries=0
    while [ "$tries" -lt 50 ]; do
        for dev in /sys/block/vd*; do
            [ -r "$dev/serial" ] || continue
            if [ "$(cat "$dev/serial")" = "$AGENT_SERIAL" ]; then
                echo "/dev/${dev##*/}"
                return 0
            fi
        done
        tries=$((tries + 1))
        sleep 0.02
    done
    return 1
}

mount_agent_root() {
    disk=$(find_agent_disk) || die "no virtio-blk disk with serial $AGENT_SERIAL"
    mkdir -p "$NEWROOT"
    mount -t ext4 -o ro "$disk" "$NEWROOT" || die "mount $disk on $NEWROOT failed"
    mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$NEWROOT/run" || die "mount tmpfs on /run failed"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$NEWROOT/tmp" || die "mount tmpfs on /tmp failed"
    for fs in dev proc sys; do
        mount --move "/$fs" "$NEWROOT/$fs" || die "move /$fs into the agent root failed"
    done
}

start_agent() {
    [ -x "$NEWROOT$AGENT_PYTHON" ] || die "$AGENT_PYTHON missing in the agent root"
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    PYTHONPATH=$AGENT_LIB
    PYTHONDONTWRITEBYTECODE=1
    export PATH PYTHONPATH PYTHONDONTWRITEBYTECODE
    exec switch_root "$NEWROOT" "$AGENT_PYTHON" -m "$AGENT_MODULE"
    die "switch_root failed"
}

mount -t proc -o nosuid,nodev,noexec proc /proc || die "mount /proc failed"
mode=$(boot_mode)
case "$mode" in
    probe | floor)
        echo BOXLITE-PROBE-OK >/dev/console
        halt_vm
        ;;
    agent) ;;
    *) die "unknown boxlite.mode=$mode" ;;
esac
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys || die "mount /sys failed"
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev || die "mount /dev failed"
load_modules
mount_agent_root
start_agent
