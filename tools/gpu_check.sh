#!/usr/bin/env bash
# GPU check: builds hashlab against PyTorch's CUDA LibTorch on a GPU machine,
# runs the *_CUDA tests (CUDA twin == CPU twin, exactly), times `hashlab bench
# search --device cuda`, and compares HashNet's ResNet-50 training step (224²,
# bf16 autocast, channels-last) with the same step in Python PyTorch
# (tools/bench_train.sh).
#
# The GPU machine has PyTorch (with CUDA LibTorch) and nvcc, but no network
# and none of our other C++ dependencies. Carry them as Debian 12 .deb files
# in .deb/ (ignored by git), fetched on a machine with apt:
#
#   tools/gpu_check.sh --download-debs      # fills .deb/ with apt-get download
#
# then, on the GPU machine, from the repository root:
#
#   tools/gpu_check.sh                      # unpack, configure, build, test, bench
#
# The .debs are unpacked (dpkg-deb -x, no root) into .deb/prefix and put on
# CMAKE_PREFIX_PATH / LD_LIBRARY_PATH. FAISS, OpenCV and NLopt are optional
# and not carried, so the bench runs with --no-faiss there.
#
# Environment: HL_GPU_BUILD (build dir, default build-gpu), HL_JOBS (default
# nproc), HL_BENCH_ARGS (extra args for the bench), HL_SKIP_CLI=1 (tests only),
# HL_SKIP_TRAIN=1 (no training benchmark or DeepQuan run), HL_FMNIST_DIR
# (Fashion-MNIST .gz files for step 7, default .deb/fashion-mnist).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DEB_DIR="$ROOT/.deb"
PREFIX="$DEB_DIR/prefix"
BUILD="${HL_GPU_BUILD:-$ROOT/build-gpu}"
JOBS="${HL_JOBS:-$(nproc)}"

# Headers and libraries hashlab needs beyond LibTorch (Debian 12 names).
DEBS=(libyaml-cpp-dev libyaml-cpp0.7 libfmt-dev libfmt9 libspdlog-dev libspdlog1.10
      libcli11-dev nlohmann-json3-dev libgtest-dev zlib1g-dev libnlopt-dev libnlopt0
      libnlopt-cxx-dev libnlopt-cxx0)  # NLopt: required (WSL's MMA)

if [[ "${1:-}" == "--download-debs" ]]; then
  mkdir -p "$DEB_DIR"
  (cd "$DEB_DIR" && apt-get download "${DEBS[@]}")
  # Fashion-MNIST for step 7 (Debian's dataset-fashion-mnist, when installed).
  if [[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]]; then
    mkdir -p "$DEB_DIR/fashion-mnist"
    cp /usr/share/datasets/fashion-mnist/*-ubyte.gz "$DEB_DIR/fashion-mnist/"
  fi
  echo "gpu_check: downloaded into $DEB_DIR; carry .deb to the GPU machine"
  exit 0
fi

log() { echo "gpu_check: $*" >&2; }

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || log "nvidia-smi not found"
command -v nvcc >/dev/null || { [[ -x /usr/local/cuda/bin/nvcc ]] && export PATH="/usr/local/cuda/bin:$PATH"; }
command -v nvcc >/dev/null || { log "nvcc not found: the .cu kernels need it"; exit 1; }

# 1. Unpack the carried .debs into a private prefix.
if compgen -G "$DEB_DIR/*.deb" >/dev/null; then
  mkdir -p "$PREFIX"
  for d in "$DEB_DIR"/*.deb; do dpkg-deb -x "$d" "$PREFIX"; done
  log "unpacked $(ls "$DEB_DIR"/*.deb | wc -l) .deb files into $PREFIX"
else
  log "no .deb files in $DEB_DIR: relying on system packages"
fi
MULTIARCH=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
export LD_LIBRARY_PATH="$PREFIX/usr/lib/$MULTIARCH:$PREFIX/usr/lib:${LD_LIBRARY_PATH:-}"

# 2. PyTorch's LibTorch, and the C++ ABI it was built with (our other
#    dependencies are Debian builds with the new ABI).
TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
TORCH_ABI=$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
python3 -c 'import torch; print("gpu_check: torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' >&2
if [[ "$TORCH_ABI" != 1 ]]; then
  log "this PyTorch uses the pre-C++11 std::string ABI; Debian's yaml-cpp/fmt/spdlog use the new one, so linking will fail. Use a PyTorch >= 2.7 wheel or a cxx11-abi LibTorch."
  exit 1
fi

# 3. Configure and build.
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$PREFIX/usr;$PREFIX/usr/lib/$MULTIARCH/cmake;$PREFIX/usr/share/cmake" \
  -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" -DHASHLAB_WITH_CUDA=ON -DHASHLAB_CUDA_ARCHS=90 \
  -DHASHLAB_WITH_OPENCV=AUTO
grep -q -- '-DHASHLAB_WITH_CUDA=1' "$BUILD/build.ninja" "$BUILD/Makefile" 2>/dev/null || \
  log "warning: HASHLAB_WITH_CUDA is not defined in this build (LibTorch without CUDA?)"
TARGETS=(test_search test_methods)
[[ "${HL_SKIP_CLI:-0}" == 1 ]] || TARGETS+=(hashlab)
cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}"

# 4. The CUDA twins against the CPU twins (search kernels, BinaryIndex on the
#    GPU; Auto-JacoBin's Jacobian term).
"$BUILD/test_search" --gtest_filter='*_CUDA*:Hamming*:BinaryIndex*' --gtest_brief=1
"$BUILD/test_methods" --gtest_filter='*_CUDA*' --gtest_brief=1

# 5. Timing: CPU (ours) vs our CUDA path vs fp16 matmul + topk, same data.
if [[ "${HL_SKIP_CLI:-0}" != 1 ]]; then
  FAISS_ARG=(--no-faiss)
  grep -q -- '-DHASHLAB_WITH_FAISS=1' "$BUILD/build.ninja" "$BUILD/Makefile" 2>/dev/null && FAISS_ARG=()
  "$BUILD/hashlab" bench search --device cuda --nb 1000000 --nq 10000 --bits 64 --k 100 \
    --threads "$JOBS" "${FAISS_ARG[@]}" ${HL_BENCH_ARGS:-}
  "$BUILD/hashlab" bench search --device cuda --nb 1000000 --nq 10000 --bits 64 --k 100 \
    --threads "$JOBS" "${FAISS_ARG[@]}" --json ${HL_BENCH_ARGS:-}
  # hashlab index search on the GPU gives the CPU's results (files from bench index).
  "$BUILD/hashlab" bench index --nb 1000000 --nq 10 --bits 64 --file "$BUILD/idx.hlc" --no-memory
  "$BUILD/hashlab" bench index --nb 1000 --nq 1 --k 1 --bits 64 --seed 2 --file "$BUILD/q.hlc" --no-memory
  for dev in cpu cuda; do
    "$BUILD/hashlab" index search "$BUILD/idx.hlc" --queries "$BUILD/q.hlc" --k 100 --device $dev \
      --out "$BUILD/index_$dev.npy"
  done
  cmp "$BUILD/index_cpu.npy" "$BUILD/index_cuda.npy" && \
    cmp "$BUILD/index_cpu.distances.npy" "$BUILD/index_cuda.distances.npy" && log "index search: CUDA == CPU"
fi

# 6. Training throughput: ours vs Python PyTorch, ResNet-50 at 224², AMP.
if [[ "${HL_SKIP_CLI:-0}" != 1 && "${HL_SKIP_TRAIN:-0}" != 1 ]]; then
  HASHLAB="$BUILD/hashlab" "$ROOT/tools/bench_train.sh" --backbone resnet50 --size 224 \
    --batch 64 --iters 60 --warmup 20 --device cuda --amp 1
fi

# 7. DeepQuan's and WSL-MLP's Fashion-MNIST runs on the GPU (the README tables'
#    GPU training times), when the dataset was carried (--download-debs copies it).
FMNIST="${HL_FMNIST_DIR:-$DEB_DIR/fashion-mnist}"
if [[ "${HL_SKIP_CLI:-0}" != 1 && "${HL_SKIP_TRAIN:-0}" != 1 && -f "$FMNIST/train-images-idx3-ubyte.gz" ]]; then
  FM_DATA=("data.files=[$FMNIST/train-images-idx3-ubyte.gz,$FMNIST/t10k-images-idx3-ubyte.gz]"
           "data.labels=[$FMNIST/train-labels-idx1-ubyte.gz,$FMNIST/t10k-labels-idx1-ubyte.gz]")
  for bits in 16 32 64; do
    "$BUILD/hashlab" train -c "$ROOT/configs/deepquan/deepquan_fmnist.yaml" model.bits=$bits device=cuda \
      threads="$JOBS" --runs-root "$BUILD/runs" "${FM_DATA[@]}"
  done
  # WSL's deep variant on the GPU (its batch kNN graph is built on the CPU, then moved).
  "$BUILD/hashlab" train -c "$ROOT/configs/wsl/wsl_mlp_fmnist.yaml" device=cuda threads="$JOBS" \
    --runs-root "$BUILD/runs" "${FM_DATA[@]}"
  # Auto-JacoBin with its Jacobian term on the GPU (the tangents are computed on the CPU).
  "$BUILD/hashlab" train -c "$ROOT/configs/auto_jacobin/auto_jacobin_fmnist.yaml" device=cuda threads="$JOBS" \
    --runs-root "$BUILD/runs" "${FM_DATA[@]}"
  # ... and in its d = D regime (the input PCA applied on the GPU each step).
  "$BUILD/hashlab" train -c "$ROOT/configs/auto_jacobin/auto_jacobin_fmnist_pca.yaml" device=cuda threads="$JOBS" \
    --runs-root "$BUILD/runs" "${FM_DATA[@]}"
  # SiGAH's normalised inputs and kNN sigma on the GPU.
  "$BUILD/hashlab" train -c "$ROOT/configs/sigah/sigah_fmnist.yaml" device=cuda threads="$JOBS" \
    --runs-root "$BUILD/runs" "${FM_DATA[@]}"
elif [[ "${HL_SKIP_TRAIN:-0}" != 1 ]]; then
  log "no Fashion-MNIST under $FMNIST: DeepQuan GPU runs skipped"
fi
