//===- Safetensors.h - Hugging Face safetensors files ---------------------===//
//
// Layout: u64 little-endian header length N, N bytes of JSON header
//   {"__metadata__": {"k": "v", ...},
//    "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
// then the tensor bytes; offsets are relative to the first byte after the header.
// Element types: F32 F16 BF16 I32 I64 F64 U8. The writer sorts tensors by name (in
// the header and in the data), pads the header with spaces to a multiple of 8, and
// writes atomically. The reader checks every offset, size and that the data regions
// tile the data section exactly (as the reference implementation does).
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/io/HostTensor.h"

#include <map>
#include <string>
#include <vector>

namespace mantissa {

struct SafetensorsFile {
  std::vector<HostTensor> tensors;             // sorted by name
  std::map<std::string, std::string> metadata; // "__metadata__", empty if absent

  /// The tensor called `name`, or nullptr.
  const HostTensor *find(const std::string &name) const;
};

SafetensorsFile readSafetensors(const std::string &path);

/// Parses an in-memory safetensors image; `where` names it in errors.
SafetensorsFile parseSafetensors(const uint8_t *data, size_t size, const std::string &where);

/// Writes atomically. Error on duplicate or empty names.
void writeSafetensors(const std::string &path, const std::vector<HostTensor> &tensors,
                      const std::map<std::string, std::string> &metadata = {});

} // namespace mantissa
