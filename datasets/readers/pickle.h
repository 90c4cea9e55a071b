// A restricted reader of Python pickles (binary protocols 2-5): enough to read
// data files that were written with pickle, such as CIFAR's python batches,
// and nothing that runs code. The stream is interpreted into a tree of plain
// values; GLOBAL / STACK_GLOBAL only record the name they refer to, REDUCE
// records "call f(args)" and BUILD attaches the state to it, so a numpy array
// arrives as Call(numpy.core.multiarray._reconstruct, ...) with its raw bytes
// in the state, and the caller decides what such a call means.
//
// Opcodes: PROTO FRAME STOP MARK POP POP_MARK DUP, NONE NEWTRUE NEWFALSE,
// BININT BININT1 BININT2 LONG1 BINFLOAT, SHORT_BINSTRING BINSTRING
// SHORT_BINBYTES BINBYTES BINBYTES8 SHORT_BINUNICODE BINUNICODE BINUNICODE8,
// EMPTY_LIST APPEND APPENDS LIST, EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3,
// EMPTY_DICT DICT SETITEM SETITEMS, GLOBAL STACK_GLOBAL REDUCE NEWOBJ BUILD,
// BINPUT LONG_BINPUT MEMOIZE BINGET LONG_BINGET. Anything else (the text
// protocol 0, persistent ids, extension codes, out-of-band buffers) is an
// error naming the opcode and its offset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace hashlab::data {

struct PyValue;
using PyRef = PyValue*;  // owned by the Pickle it came from

struct PyValue {
  enum class Kind { none, boolean, integer, floating, bytes, str, list, tuple, dict, global, call };
  Kind kind = Kind::none;
  int64_t i = 0;                 // boolean, integer
  double f = 0;                  // floating
  std::string s;                 // bytes (Python 2 str, bytes), str (UTF-8), global "module.name"
  std::vector<PyRef> items;      // list, tuple; call: {callable, args tuple}
  std::vector<std::pair<PyRef, PyRef>> dict;  // dict, in insertion order
  PyRef state;                   // call: what BUILD attached (null if none)

  // Text of a bytes or str value (for dict keys and names); "" otherwise.
  const std::string* text() const {
    return kind == Kind::bytes || kind == Kind::str ? &s : nullptr;
  }
  // dict lookup by a bytes or str key; null when absent.
  PyRef get(const std::string& key) const;
};

const char* py_kind_name(PyValue::Kind k);

// Every value of one pickle, in one flat arena: values refer to each other by
// plain pointers, so a pickle that makes a value contain itself (which the
// memo allows) or nests deeply is freed without recursion or leaks.
struct Pickle {
  std::vector<std::unique_ptr<PyValue>> values;
  PyRef root = nullptr;
};

// Interprets the pickle in data[0, size). `name` (the file) prefixes errors.
Pickle parse_pickle(const uint8_t* data, size_t size, const std::string& name);

}  // namespace hashlab::data
