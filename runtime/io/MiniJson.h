//===- MiniJson.h - the JSON subset safetensors headers use (internal) ----===//
//
// A small strict JSON reader/writer: objects (member order kept), arrays, strings
// (all escapes, \u surrogate pairs to UTF-8), numbers, true/false/null. Enough for
// safetensors headers; no dependency.
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace mantissa {
namespace json {

struct Value {
  enum class Kind { Null, Bool, Number, String, Array, Object } kind = Kind::Null;
  bool boolean = false;
  std::string text;         // String: the decoded string; Number: the literal as written
  std::vector<Value> items; // Array
  std::vector<std::pair<std::string, Value>> members; // Object, in file order

  const char *kindName() const;
  /// Number → int64 if it is a non-negative-or-negative integer literal without
  /// fraction/exponent; false otherwise.
  bool asInt64(int64_t &out) const;
};

/// Parses exactly one JSON value (surrounding whitespace allowed). Errors are thrown
/// as mantissa::Error prefixed by `where` with the byte offset. A key repeated in an
/// object is an error (with its byte, line and column), not "the last one wins".
Value parse(const std::string &text, const std::string &where);

/// Reads and parses the file at `path`: a missing file, a directory or a read error is
/// an Error naming the path (not "invalid JSON at byte 0").
Value parseFile(const std::string &path);

/// JSON string literal for `s` (quotes included; control chars, '"' and '\\' escaped).
std::string quote(const std::string &s);

} // namespace json
} // namespace mantissa
