//===- Npy.h - NumPy .npy files -------------------------------------------===//
//
// Format versions 1.0, 2.0 (and 3.0, utf-8 header) are read; 1.0 is written (2.0
// when the header would exceed 64 KiB). Element types: '<f4' '<f8' '<f2' '<i4'
// '<i8' '|u1' (and '|b1', read as U8). C order only: fortran_order=True, big-endian
// and structured dtypes are rejected with an Error that says how to re-save.
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/io/HostTensor.h"

#include <string>

namespace mantissa {

/// Reads a .npy file. The tensor's name is the file name without directory and
/// ".npy" suffix.
HostTensor readNpy(const std::string &path);

/// Writes a .npy file atomically (temp file + fsync + rename). BF16 has no npy type
/// and is rejected.
void writeNpy(const std::string &path, const HostTensor &tensor);

/// Parses an in-memory .npy image; `where` names it in errors (e.g. "a.npz:x.npy").
HostTensor parseNpy(const uint8_t *data, size_t size, const std::string &where);

/// The .npy preamble (magic, version, header length, header dict, padding to a
/// multiple of 64 bytes) for `tensor`; the raw bytes follow it. `where` names the
/// destination in errors.
std::string npyPreamble(const HostTensor &tensor, const std::string &where);

} // namespace mantissa
