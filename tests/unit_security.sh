#!/usr/bin/env bash
# The systemd unit's exposure (systemd-analyze security, offline): reports
# the score and fails above 3.0. Skips (77) where systemd-analyze is missing.
set -euo pipefail
unit_in=$1
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found: skipped"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed -e 's#@CMAKE_INSTALL_FULL_BINDIR@#/usr/bin#; s#@CMAKE_INSTALL_FULL_SYSCONFDIR@#/etc#' "$unit_in" >"$dir/umi-host.service"
report=$(systemd-analyze security --offline=true "$dir/umi-host.service" 2>&1)
score=$(grep -oP 'Overall exposure level for umi-host.service: \K[0-9.]+' <<<"$report")
echo "umi-host.service exposure: $score (at most 3.0)"
grep '^✗' <<<"$report" || true
awk -v s="$score" 'BEGIN { exit !(s <= 3.0) }'
