#!/usr/bin/env bash
# The main job: installs, builds, then trains the default method on the
# default dataset (HashNet on Fashion-MNIST), evaluates it, exports the
# TorchScript hasher, and prints a summary beside the ITQ and LSH baselines.
#   tools/run.sh [CONFIG] [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
TARGETS=hashlab tools/build.sh   # the executable only: the tests are tools/test.sh's
CONFIG=${1:-configs/hashnet/hashnet_fmnist.yaml}
[ $# -gt 0 ] && shift
exec tools/compare.sh "$CONFIG" "$@"
