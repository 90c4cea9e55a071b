#!/usr/bin/env bash
# Fuzzes one torch-free dataset reader with libFuzzer + ASan + UBSan.
#   tools/fuzz.sh READER SECONDS [extra libFuzzer flags]
#   READER: idx | cifar | vecs | npy | image_list
# Builds fuzz/fuzz_READER.cpp with clang-14 directly (only the reader sources,
# zlib and header-only fmt: no LibTorch), seeds the corpus with small valid
# files from fuzz/make_seeds.cpp, then runs for SECONDS. Work files live in
# ${FUZZ_WORK:-build-fuzz}/; crashes are written there as crash-*.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 idx|cifar|vecs|npy|image_list SECONDS [libFuzzer flags]" >&2
  exit 2
fi
reader=$1; seconds=$2; shift 2
case "$reader" in idx|cifar|vecs|npy|image_list) ;; *)
  echo "$0: unknown reader '$reader'" >&2; exit 2 ;;
esac
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${FUZZ_WORK:-$repo/build-fuzz}
cxx=${CXX_FUZZ:-clang++-14}
mkdir -p "$work"

reader_src=("$repo/datasets/readers/$reader.cpp")
# CIFAR's python batches are pickles.
[[ $reader == cifar ]] && reader_src+=("$repo/datasets/readers/pickle.cpp")
flags=(-std=c++17 -O1 -g -fno-omit-frame-pointer -DFMT_HEADER_ONLY -I"$repo")
"$cxx" "${flags[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  "$repo/fuzz/fuzz_$reader.cpp" "$repo/datasets/readers/bytes.cpp" "${reader_src[@]}" \
  -lz -o "$work/fuzz_$reader"
"$cxx" -std=c++17 -O1 "$repo/fuzz/make_seeds.cpp" -lz -o "$work/make_seeds"

"$work/make_seeds" "$work/seeds"
corpus="$work/corpus_$reader"
mkdir -p "$corpus"
cp -n "$work/seeds/$reader"/* "$corpus/" 2>/dev/null || true
export HASHLAB_FUZZ_ROOT="$work/image_root"
mkdir -p "$HASHLAB_FUZZ_ROOT"

cd "$work"
exec "./fuzz_$reader" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 \
  -print_final_stats=1 "$@" "$corpus"
