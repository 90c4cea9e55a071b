#!/usr/bin/env bash
# The test command: installs what is missing, configures, builds, and runs
# the GoogleTest suite through ctest. Non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
start=$(date +%s)
tools/build.sh
echo "test.sh: build took $(( $(date +%s) - start )) s"
start=$(date +%s)
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "$(nproc)" --timeout 600
echo "test.sh: tests took $(( $(date +%s) - start )) s"
