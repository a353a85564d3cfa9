#!/usr/bin/env bash
# Build paq8px from its public source for side-by-side benchmarks (never part of terse).
#   benchmarks/peers/build_paq8px.sh [SOURCE] [PREFIX]
# SOURCE: a git URL or a local git directory (default https://github.com/hxim/paq8px);
# PREFIX: where the binary goes (default build/peers; the binary is PREFIX/paq8px).
# Built for a generic x86-64 (the project's default, -march=nocona), not -march=native,
# so the figures are those of the binary its users download.
set -euo pipefail
source_repo="${1:-https://github.com/hxim/paq8px}"
prefix="${2:-build/peers}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for tool in git cmake make g++; do
    command -v "$tool" >/dev/null || { echo "build_paq8px: $tool is missing" >&2; exit 1; }
done
git clone --quiet "$source_repo" "$work/src"
commit="$(git -C "$work/src" rev-parse HEAD)"
cmake -S "$work/src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DNATIVECPU=OFF >/dev/null
cmake --build "$work/build" -j "$(nproc)" >/dev/null
mkdir -p "$prefix"
install -m 755 "$work/build/paq8px" "$prefix/paq8px"
echo "$commit" > "$prefix/paq8px.commit"
echo "built $prefix/paq8px from $source_repo at $commit"
