#!/usr/bin/env bash
# Compiles each file given after `--` and expects it to fail with the
# message given after it, in pairs:  check.sh CXX INCLUDE -- FILE MESSAGE ...
set -uo pipefail
cxx=$1 include=$2
shift 3
status=0
while (($#)); do
  file=$1 message=$2
  shift 2
  out=$("$cxx" -std=c++20 -fsyntax-only -I"$include" "$file" 2>&1)
  if [[ $? -eq 0 ]]; then
    echo "FAIL: $file compiled"; status=1
  elif ! grep -qF "$message" <<<"$out"; then
    echo "FAIL: $file did not say: $message"; echo "$out" | head -20; status=1
  else
    echo "ok: $file: $message"
  fi
done
exit $status
