#!/bin/sh
# rootfs.sh BINARY DIR -- lay out the container image's whole file system in
# DIR: microd as /usr/bin/microd and exactly the shared libraries ldd names
# for it (the dynamic loader included), nothing else. The Dockerfile runs it
# in its build stage; tests/dist.py runs it on a local build and starts
# microd in a chroot of the result.
set -eu
bin=$1
dir=$2
mkdir -p "$dir/usr/bin"
cp "$bin" "$dir/usr/bin/microd"
strip "$dir/usr/bin/microd" 2>/dev/null || true
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
while read -r lib; do
	mkdir -p "$dir$(dirname "$lib")"
	cp -L "$lib" "$dir$lib"
done
