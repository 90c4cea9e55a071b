#!/usr/bin/env bash
# Configures and builds hashlab (Release) into ${BUILD_DIR:-build}.
# Extra arguments go to cmake's configure step. TARGETS="hashlab" builds only
# those targets (tools/run.sh: the executable, not the test binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
# Paths relative to the checkout, so clones and worktrees elsewhere share the cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD_DIR" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
elif [ $# -gt 0 ]; then
  cmake -S . -B "$BUILD_DIR" "$@"
fi
target_args=()
for t in ${TARGETS:-}; do target_args+=(--target "$t"); done
cmake --build "$BUILD_DIR" -j "$JOBS" "${target_args[@]}"
