// Checkpoint files: a fixed header (magic, format version, payload size,
// crc32 of the payload) followed by a torch::serialize archive. Written
// atomically (temp file + rename). A truncated, corrupted or foreign file is
// rejected with an error naming the file and the problem, before LibTorch
// ever parses it.
//
//   header, 32 bytes, little-endian:
//     char[8] magic "HLCKPT\r\n"   u32 version   u32 reserved
//     u64 payload_size             u32 crc32(payload)   u32 crc32(bytes 0..23)
#pragma once

#include <string>

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

namespace hashlab {

constexpr uint32_t kCheckpointVersion = 1;

void write_checkpoint(const std::string& path, torch::serialize::OutputArchive& archive);
void read_checkpoint(const std::string& path, torch::serialize::InputArchive& archive);

// Small helpers to store plain values in archives.
void archive_write(torch::serialize::OutputArchive& a, const std::string& key, int64_t v);
void archive_write(torch::serialize::OutputArchive& a, const std::string& key, double v);
void archive_write(torch::serialize::OutputArchive& a, const std::string& key,
                   const std::string& v);
int64_t archive_read_int(torch::serialize::InputArchive& a, const std::string& key);
double archive_read_double(torch::serialize::InputArchive& a, const std::string& key);
std::string archive_read_string(torch::serialize::InputArchive& a, const std::string& key);
// False (and `out` untouched) when the archive has no such key.
bool archive_try_read_string(torch::serialize::InputArchive& a, const std::string& key,
                             std::string& out);

}  // namespace hashlab
