#!/usr/bin/env bash
# The Debian packages build from this tree (cpack, cmake/UmiPackage.cmake),
# hold what the host's package must (the binaries, the plugins, the unit
# where Debian 12 keeps units, /etc/umi/hardware.yaml as a conffile), and
# lintian finds no error in them. scripts/package is the full check (a
# release build under /usr, warnings fail too); this one keeps the packaging
# from rotting in every build. Exit 77 (skipped) without lintian or
# dpkg-shlibdeps.
#
#   check_packages.sh BUILD_DIR
set -euo pipefail
build=$1
command -v lintian >/dev/null && command -v dpkg-shlibdeps >/dev/null || exit 77
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
(cd "$build" && cpack -G DEB -B "$out" >/dev/null)
host=$(ls "$out"/umi-host_*.deb)
contents=$(dpkg-deb -c "$host")
for path in ./usr/bin/umi-host ./usr/bin/umi-submit ./usr/lib/umi/plugins/noop.so ./lib/systemd/system/umi-host.service \
            ./etc/umi/hardware.yaml ./usr/share/umi/python/umi/__init__.py ./usr/share/doc/umi-host/copyright; do
  grep -q " $path\$" <<<"$contents" || { echo "umi-host has no $path" >&2; exit 1; }
done
dpkg-deb --ctrl-tarfile "$host" | tar -xO ./conffiles | grep -qx /etc/umi/hardware.yaml ||
  { echo "/etc/umi/hardware.yaml is not a conffile" >&2; exit 1; }
grep -q "libzmq5" <<<"$(dpkg-deb -f "$host" Depends)" || { echo "Depends lacks the shared libraries" >&2; exit 1; }
lintian --fail-on error "$out"/*.deb
