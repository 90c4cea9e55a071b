#include "datasets/readers/cifar.h"

#include <cstring>

#include "csrc/core/error.h"
#include "datasets/readers/pickle.h"

namespace hashlab::data {

namespace {

constexpr size_t kPixels = 3 * 32 * 32;

bool is_global(const PyValue* v, std::initializer_list<const char*> names) {
  if (!v || v->kind != PyValue::Kind::global) return false;
  for (const char* n : names)
    if (v->s == n) return true;
  return false;
}

// Bytes as pickled: bytes (Python 2 str, Python 3 bytes), or Python 3's
// protocol-2 spelling _codecs.encode(str, "latin1") / bytes().
std::string pickled_bytes(const PyValue* v, const std::string& what) {
  if (v->kind == PyValue::Kind::bytes) return v->s;
  if (v->kind == PyValue::Kind::call && v->items.size() == 2) {
    const PyValue* f = v->items[0];
    const auto& args = v->items[1]->items;
    if (is_global(f, {"__builtin__.bytes", "builtins.bytes"}) && args.empty()) return {};
    if (is_global(f, {"_codecs.encode"}) && args.size() == 2 &&
        args[0]->kind == PyValue::Kind::str && args[1]->text() &&
        (*args[1]->text() == "latin1" || *args[1]->text() == "latin-1")) {
      // UTF-8 text of code points < 256, one byte each.
      const std::string& u = args[0]->s;
      std::string out;
      out.reserve(u.size());
      for (size_t k = 0; k < u.size(); ++k) {
        const auto c = static_cast<uint8_t>(u[k]);
        if (c < 0x80) {
          out.push_back(static_cast<char>(c));
        } else if ((c == 0xc2 || c == 0xc3) && k + 1 < u.size()) {
          out.push_back(static_cast<char>(((c & 0x03) << 6) | (static_cast<uint8_t>(u[++k]) & 0x3f)));
        } else {
          fail("{}: latin-1 text with a character beyond U+00FF", what);
        }
      }
      return out;
    }
  }
  fail("{}: expected bytes, got a pickled {}", what, py_kind_name(v->kind));
}

// A numpy uint8 array [n, 3072] as pickled by ndarray.__reduce__:
// _reconstruct(ndarray, (0,), b"b") with the state (version, shape, dtype,
// is_fortran, raw bytes).
std::string pickled_images(const PyValue* v, const std::string& what, int64_t* n) {
  if (!v || v->kind != PyValue::Kind::call ||
      !is_global(v->items[0], {"numpy.core.multiarray._reconstruct",
                               "numpy._core.multiarray._reconstruct"}) ||
      !v->state || v->state->kind != PyValue::Kind::tuple || v->state->items.size() != 5)
    fail("{}: expected a pickled numpy array, got a {}", what, v ? py_kind_name(v->kind) : "nothing");
  const auto& st = v->state->items;
  const PyValue* shape = st[1];
  const PyValue* dtype = st[2];
  if (shape->kind != PyValue::Kind::tuple || shape->items.size() != 2 ||
      shape->items[0]->kind != PyValue::Kind::integer ||
      shape->items[1]->kind != PyValue::Kind::integer || shape->items[0]->i < 0 ||
      shape->items[1]->i != static_cast<int64_t>(kPixels))
    fail("{}: expected an array [n, 3072] (32x32 RGB rows), got another shape", what);
  const std::string* code = nullptr;
  if (dtype->kind == PyValue::Kind::call && is_global(dtype->items[0], {"numpy.dtype"}) &&
      !dtype->items[1]->items.empty())
    code = dtype->items[1]->items[0]->text();
  if (!code || (*code != "u1" && *code != "|u1" && *code != "uint8"))
    fail("{}: expected uint8 pixels, got dtype '{}'", what, code ? *code : "?");
  if (st[3]->kind != PyValue::Kind::boolean || st[3]->i != 0)
    fail("{}: a Fortran-ordered array (C order expected)", what);
  *n = shape->items[0]->i;
  std::string raw = pickled_bytes(st[4], what);
  if (raw.size() != static_cast<size_t>(*n) * kPixels)
    fail("{}: {} bytes of pixels for an array of {} x 3072", what, raw.size(), *n);
  return raw;
}

void pickled_labels(const PyValue* v, const std::string& what, int64_t n, int64_t limit,
                    int64_t* out) {
  if (!v || v->kind != PyValue::Kind::list)
    fail("{}: expected a list of labels, got {}", what, v ? py_kind_name(v->kind) : "nothing");
  if (static_cast<int64_t>(v->items.size()) != n)
    fail("{}: {} labels for {} images", what, v->items.size(), n);
  for (int64_t i = 0; i < n; ++i) {
    const PyValue* x = v->items[static_cast<size_t>(i)];
    if (x->kind != PyValue::Kind::integer || x->i < 0 || x->i >= limit)
      fail("{}: label {} is {} (expected an integer 0..{})", what, i,
           x->kind == PyValue::Kind::integer ? std::to_string(x->i) : py_kind_name(x->kind),
           limit - 1);
    out[i] = x->i;
  }
}

// CIFAR's python batches: a pickled dict with "data" (uint8 [n, 3072]) and
// "labels" (CIFAR-10) or "fine_labels" and "coarse_labels" (CIFAR-100).
CifarData parse_cifar_pickle(const uint8_t* data, size_t size, const std::string& name,
                             CifarKind kind) {
  const Pickle p = parse_pickle(data, size, name);
  if (p.root->kind != PyValue::Kind::dict)
    fail("{}: a pickled {}, not a CIFAR python batch (a dict with 'data' and labels)", name,
         py_kind_name(p.root->kind));
  const PyValue* images = p.root->get("data");
  if (!images) fail("{}: no 'data' in this pickled dict (not a CIFAR python batch)", name);
  CifarData out;
  int64_t n = 0;
  std::string raw = pickled_images(images, name + ": 'data'", &n);
  out.images.dtype = Array::DType::u8;
  out.images.shape = {n, 3, 32, 32};
  out.images.bytes.assign(raw.begin(), raw.end());
  out.labels.dtype = Array::DType::i64;
  out.labels.shape = {n};
  out.labels.bytes.resize(static_cast<size_t>(n) * 8);
  if (kind == CifarKind::cifar10) {
    if (!p.root->get("labels"))
      fail("{}: {}", name,
           p.root->get("fine_labels")
               ? "a CIFAR-100 batch ('fine_labels'); use format cifar100"
               : "no 'labels' in this pickled dict (not a CIFAR-10 python batch)");
    pickled_labels(p.root->get("labels"), name + ": 'labels'", n, 10, out.labels.data<int64_t>());
  } else {
    if (!p.root->get("fine_labels"))
      fail("{}: no 'fine_labels' in this pickled dict{}", name,
           p.root->get("labels") ? " (a CIFAR-10 batch: use format cifar10)" : "");
    pickled_labels(p.root->get("fine_labels"), name + ": 'fine_labels'", n, 100,
                   out.labels.data<int64_t>());
    out.coarse_labels.dtype = Array::DType::i64;
    out.coarse_labels.shape = {n};
    out.coarse_labels.bytes.resize(static_cast<size_t>(n) * 8);
    pickled_labels(p.root->get("coarse_labels"), name + ": 'coarse_labels'", n, 20,
                   out.coarse_labels.data<int64_t>());
  }
  return out;
}

}  // namespace

CifarData parse_cifar(const uint8_t* raw, size_t raw_size, const std::string& name,
                      CifarKind kind, uint64_t max_bytes) {
  Bytes in = maybe_gunzip(raw, raw_size, name, max_bytes);
  // A binary record starts with a label (< 100); a pickle with PROTO (0x80).
  if (in.size >= 2 && in.data[0] == 0x80) return parse_cifar_pickle(in.data, in.size, name, kind);
  const size_t label_bytes = kind == CifarKind::cifar10 ? 1 : 2;
  const size_t record = label_bytes + kPixels;
  const char* kind_name = kind == CifarKind::cifar10 ? "CIFAR-10" : "CIFAR-100";
  if (in.size == 0) fail("{}: empty file{}: no {} records", name, gz_note(in), kind_name);
  if (in.size % record != 0)
    fail("{}: file has {} bytes{}, not a multiple of the {} record size {} ({} whole records "
         "and {} bytes left over)",
         name, in.size, gz_note(in), kind_name, record, in.size / record, in.size % record);
  const int64_t n = static_cast<int64_t>(in.size / record);

  CifarData out;
  out.images.dtype = Array::DType::u8;
  out.images.shape = {n, 3, 32, 32};
  out.images.bytes.resize(static_cast<size_t>(n) * kPixels);
  out.labels.dtype = Array::DType::i64;
  out.labels.shape = {n};
  out.labels.bytes.resize(static_cast<size_t>(n) * 8);
  int64_t* fine = out.labels.data<int64_t>();
  int64_t* coarse = nullptr;
  if (kind == CifarKind::cifar100) {
    out.coarse_labels.dtype = Array::DType::i64;
    out.coarse_labels.shape = {n};
    out.coarse_labels.bytes.resize(static_cast<size_t>(n) * 8);
    coarse = out.coarse_labels.data<int64_t>();
  }
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* rec = in.data + static_cast<size_t>(i) * record;
    const size_t off = static_cast<size_t>(i) * record;
    if (kind == CifarKind::cifar10) {
      if (rec[0] > 9)
        fail("{}: record {} (offset {}): label {} out of range 0..9", name, i, off, rec[0]);
      fine[i] = rec[0];
    } else {
      if (rec[0] > 19)
        fail("{}: record {} (offset {}): coarse label {} out of range 0..19", name, i, off,
             rec[0]);
      if (rec[1] > 99)
        fail("{}: record {} (offset {}): fine label {} out of range 0..99", name, i, off + 1,
             rec[1]);
      coarse[i] = rec[0];
      fine[i] = rec[1];
    }
    std::memcpy(out.images.bytes.data() + static_cast<size_t>(i) * kPixels, rec + label_bytes,
                kPixels);
  }
  return out;
}

CifarData read_cifar(const std::string& path, CifarKind kind, uint64_t max_bytes) {
  std::vector<uint8_t> raw = read_file_bytes(path, max_bytes);
  return parse_cifar(raw.data(), raw.size(), path, kind, max_bytes);
}

}  // namespace hashlab::data
