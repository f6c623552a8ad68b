#!/usr/bin/env bash
# Every plugin library given exports only UMI_* entry points.
set -euo pipefail
status=0
for library in "$@"; do
  extra=$(nm -D --defined-only "$library" | awk '{print $3}' | grep -v '^UMI_' || true)
  if [[ -n $extra ]]; then
    echo "$library exports non-ABI symbols:"; echo "$extra" | head -20; status=1
  fi
done
exit $status
