#!/usr/bin/env bash
# Installs everything hashlab needs on Debian 12, idempotently (run as root,
# or with sudo available). Packages already installed are not touched.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev            # LibTorch 1.13 (CPU)
  libgloo-dev             # headers of the Gloo backend inside libtorch_cpu (c10d: sharded search)
  libopenblas0-openmp     # fast BLAS/LAPACK behind LibTorch (Debian defaults to reference BLAS: ~10x slower)
  libyaml-cpp-dev         # configs
  libopencv-dev           # image decoding / transforms
  libgtest-dev googletest # tests
  zlib1g-dev              # gzip readers, checksums
  libcli11-dev            # CLI
  libspdlog-dev libfmt-dev
  nlohmann-json3-dev
  libfaiss-dev            # FAISS peer for benchmarks and code interop
  libbenchmark-dev        # Google Benchmark
  libnlopt-cxx-dev        # MMA (WSL)
  dataset-fashion-mnist   # the default dataset
  python3-torch           # Python interop tests (torch.jit.load of exports) and the hashlab module
  pybind11-dev python3-pybind11 python3-dev python3-pytest  # the Python module (pybind11) and its tests
  python3-venv python3-setuptools python3-wheel python3-pip  # pip install of the module
  clang-14 libclang-rt-14-dev  # libFuzzer targets (tools/fuzz.sh)
  libjs-chart.js          # Chart.js, inlined into report.html (hashlab report)
  chromium-headless-shell # the report tests open pages in headless Chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
