#!/usr/bin/env bash
# Installs the umi build in $1 into prefix $2, then builds every example
# plugin under $4 as its own CMake project against that prefix, collecting
# the plugin libraries in $3.
set -euo pipefail
build=$1 prefix=$2 plugins=$3 examples=$4
rm -rf "$prefix" "$plugins"
cmake --install "$build" --prefix "$prefix" >/dev/null
mkdir -p "$plugins"
for example in "$examples"/*/; do
  [[ -f "$example/CMakeLists.txt" ]] || continue  # python/: plugins that need no build
  name=$(basename "$example")
  out="$build/tests/oot-build/$name"
  cmake -S "$example" -B "$out" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror" >/dev/null
  cmake --build "$out" >/dev/null
  cp "$out"/*.so "$plugins"/
done
ls "$plugins"
# The installed host runs Python plugins with the installed umi package.
listing=$(UMI_PYTHON="${UMI_PYTHON:-/usr/bin/python3}" "$prefix/bin/umi-host" plugins --plugins "$examples/python" 2>/dev/null)
grep -q "^loudness " <<<"$listing" || { echo "the installed umi-host did not load examples/plugins/python: $listing" >&2; exit 1; }
