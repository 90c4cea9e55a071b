// CIFAR-10 / CIFAR-100 batches, plain or gzip-compressed, in either of the
// two distributions (told apart by content):
// - the binary version ("cifar-10-batches-bin/data_batch_1.bin", "train.bin"),
//   records as below;
// - the python version ("cifar-10-batches-py/data_batch_1", "test_batch",
//   "cifar-100-python/train"): a pickled dict of "data" (numpy uint8
//   [n, 3072], rows as in a binary record) and "labels" (CIFAR-10) or
//   "fine_labels" + "coarse_labels" (CIFAR-100), read by readers/pickle.h
//   without running any Python.
// The .tar.gz archives themselves are not read: extract them first.
//
// CIFAR-10 record: 1 label byte (0..9) + 3072 pixel bytes (1024 R, 1024 G,
// 1024 B, each 32x32 row-major), 3073 bytes.
// CIFAR-100 record: 1 coarse label (0..19) + 1 fine label (0..99) + 3072
// pixel bytes, 3074 bytes.
// The file size must be a positive exact multiple of the record size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "datasets/readers/array.h"
#include "datasets/readers/bytes.h"

namespace hashlab::data {

enum class CifarKind { cifar10, cifar100 };

struct CifarData {
  Array images;         // u8 [N, 3, 32, 32]
  Array labels;         // i64 [N]: CIFAR-10 class, or CIFAR-100 fine label
  Array coarse_labels;  // i64 [N] for CIFAR-100 (0..19); empty shape for CIFAR-10
};

CifarData parse_cifar(const uint8_t* data, size_t size, const std::string& name, CifarKind kind,
                      uint64_t max_bytes = kDefaultMaxBytes);
CifarData read_cifar(const std::string& path, CifarKind kind,
                     uint64_t max_bytes = kDefaultMaxBytes);

}  // namespace hashlab::data
