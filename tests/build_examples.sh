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
# pkg-config builds a plugin as umi_add_plugin does, from an install that was
# moved after it was made (umi.pc is relocatable).
moved="$prefix-moved"
rm -rf "$moved" && cp -a "$prefix" "$moved"
pc_dir=$(dirname "$(find "$moved" -name umi.pc | head -1)")
flags=$(PKG_CONFIG_PATH="$pc_dir" pkg-config --cflags --libs umi)
[[ $flags == *"$moved/"* && $flags != *"$prefix/"* ]] || { echo "umi.pc does not point into the moved prefix: $flags" >&2; exit 1; }
mkdir -p "$build/tests/pc-build"
# shellcheck disable=SC2086  # the flags are words
g++ -Wall -Wextra -Werror "$examples/minimal/hello.cc" $flags -o "$build/tests/pc-build/hello.so"
bash "$(dirname "$0")/check_exports.sh" "$build/tests/pc-build/hello.so" >/dev/null
listing=$("$moved/bin/umi-host" plugins --plugins "$build/tests/pc-build/hello.so" 2>/dev/null)
grep -q "^hello " <<<"$listing" || { echo "the pkg-config-built plugin did not load: $listing" >&2; exit 1; }
rm -rf "$moved"
