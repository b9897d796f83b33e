#!/bin/sh
# SPDX-License-Identifier: MIT
# debian.sh DIR -- one Debian 12 tree for both engine suites, made with
# debootstrap from the mirror this machine's apt already uses: the VM boots
# it as its root file system (tests/vm.py), and the container build uses it,
# without the kernel, as its base image (tests/podman.py). It holds what
# `make install` and dist/Dockerfile's build stage need, so neither reaches
# a network. DIR is made once; DIR.done marks a finished tree and holds its
# package list, so a tree made from another list is made again (and the
# suites' image caches, which compare with DIR.done, follow).
set -eu
dir=$1
pkgs=systemd-sysv,udev,dbus,linux-image-amd64,openssh-server,curl,ca-certificates
pkgs=$pkgs,gcc,libc6-dev,make,pkg-config,binutils,libmicrohttpd-dev,libjansson-dev
pkgs=$pkgs,libpq-dev
[ "$(cat "$dir.done" 2>/dev/null)" = "$pkgs" ] && exit 0
[ "$(id -u)" = 0 ] || { echo "debian.sh: debootstrap needs root" >&2; exit 1; }

# The mirror apt is configured with (deb822 or one-line sources).
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources \
           2>/dev/null | grep -v security | head -n 1)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ { print $2; exit }' \
           /etc/apt/sources.list 2>/dev/null)
[ -n "$mirror" ] || { echo "debian.sh: no Debian mirror in apt's sources" >&2; exit 1; }

rm -rf "$dir" "$dir.done"
debootstrap --variant=minbase --include="$pkgs" bookworm "$dir" "$mirror"

# The VM: a root login by key only, DHCP from qemu's user network, a serial
# console, and no apt lists or caches (nothing inside may reach out).
echo microd-vm > "$dir/etc/hostname"
printf '/dev/vda / ext4 rw,relatime 0 1\n' > "$dir/etc/fstab"
mkdir -p "$dir/etc/systemd/network" "$dir/root/.ssh"
printf '[Match]\nName=en* eth*\n[Network]\nDHCP=ipv4\n' \
    > "$dir/etc/systemd/network/10-dhcp.network"
chroot "$dir" systemctl enable systemd-networkd ssh >/dev/null 2>&1
chroot "$dir" passwd -d root >/dev/null
rm -rf "$dir/var/cache/apt/archives/"*.deb "$dir/var/lib/apt/lists/"*
echo "$pkgs" > "$dir.done"
