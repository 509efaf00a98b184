//===- Npz.h - NumPy .npz archives (zip of .npy members) ------------------===//
//
// Reading accepts stored members (numpy.savez) and deflated ones
// (numpy.savez_compressed), with or without zip64 records, and checks every CRC.
// Writing stores members uncompressed as "<name>.npy", like numpy.savez, always
// with zip64 size fields (numpy does the same), atomically.
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/io/HostTensor.h"

#include <string>
#include <vector>

namespace mantissa {

/// Every member, in archive order; a tensor's name is its member name without the
/// ".npy" suffix (as numpy.load(...)[name] uses).
std::vector<HostTensor> readNpz(const std::string &path);

/// Writes tensors as "<name>.npy" members. Error on empty or duplicate names.
void writeNpz(const std::string &path, const std::vector<HostTensor> &tensors);

} // namespace mantissa
