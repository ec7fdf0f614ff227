"""Disk images: ext4 bases from rootfs trees, qcow2 overlays."""
