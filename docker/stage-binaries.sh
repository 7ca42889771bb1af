#!/usr/bin/env bash
# Stages the release binaries for the runtime image (docker/Dockerfile): every executable product
# of Package.swift from BIN_DIR into OUT_DIR/bin (stripped), and the Swift runtime libraries they
# load (found with ldd: whatever resolves into the toolchain's .../swift/linux/ directory) into
# OUT_DIR/lib. The products that exchanger-multicall serves (`exchanger-multicall --programs`) are
# symbolic links to it rather than binaries of their own: each would otherwise carry its own copy
# of SwiftNIO, BoringSSL, Hummingbird and the rest. Used by the Dockerfile's build stage and, on
# the host, for the runtime-prebuilt target. Replaces OUT_DIR/bin and OUT_DIR/lib; keeps other
# files there.
#
#   docker/stage-binaries.sh .build/release docker/staging
set -euo pipefail

[[ $# == 2 ]] || { echo "usage: $0 BIN_DIR OUT_DIR" >&2; exit 2; }
bin_dir="$1"
out="$2"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

mapfile -t products < <(sed -n 's/.*\.executable(name: *"\([^"]*\)".*/\1/p' "$root/Package.swift")
[[ ${#products[@]} -gt 0 ]] || { echo "stage-binaries: no executable products in Package.swift" >&2; exit 1; }

rm -rf "$out/bin" "$out/lib"
mkdir -p "$out/bin" "$out/lib"
declare -A libraries=() linked=()
multicall=exchanger-multicall
[[ -x "$bin_dir/$multicall" ]] || { echo "stage-binaries: $bin_dir/$multicall missing (swift build -c release)" >&2; exit 1; }
while read -r name; do
    [[ -n "$name" ]] && linked["$name"]=1
done < <("$bin_dir/$multicall" --programs)
for product in "${products[@]}"; do
    if [[ -n "${linked[$product]:-}" ]]; then
        ln -s "$multicall" "$out/bin/$product"
        continue
    fi
    [[ -x "$bin_dir/$product" ]] || { echo "stage-binaries: $bin_dir/$product missing (swift build -c release)" >&2; exit 1; }
    cp "$bin_dir/$product" "$out/bin/$product"
    strip "$out/bin/$product"
    while read -r path; do
        libraries["$path"]=1
    done < <(ldd "$bin_dir/$product" | awk '$2 == "=>" && $3 ~ /\/swift\/linux\// {print $3}')
    if ldd "$bin_dir/$product" | grep -q 'not found'; then
        echo "stage-binaries: $product has unresolved libraries:" >&2
        ldd "$bin_dir/$product" | grep 'not found' >&2
        exit 1
    fi
done
for path in "${!libraries[@]}"; do
    cp -L "$path" "$out/lib/"
    strip --strip-unneeded "$out/lib/$(basename "$path")"
done
echo "stage-binaries: ${#products[@]} executables (${#linked[@]} linked to $multicall) ($(du -sh "$out/bin" | cut -f1)), ${#libraries[@]} Swift runtime libraries ($(du -sh "$out/lib" | cut -f1)) in $out" >&2
