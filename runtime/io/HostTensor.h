//===- HostTensor.h - a named n-d array in host memory --------------------===//
//
// The in-memory form of every tensor file Mantissa reads or writes (.npy, .npz,
// safetensors): a name, an element type, a shape (C order) and the raw
// little-endian bytes. Helpers convert to and from float.
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mantissa {

struct HostTensor {
  enum class DType { F32, F16, BF16, I32, I64, F64, U8 };

  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes; // numel() * dtypeSize(dtype), little-endian, C order

  /// Product of the shape (1 for a scalar, shape []).
  int64_t numel() const;
  /// Throws Error (prefixed by `where`) unless bytes.size() == numel() * element size
  /// and no dimension is negative.
  void validate(const std::string &where) const;

  /// Every element converted to float (F16/BF16 exactly, I32/I64/F64 rounded to nearest).
  std::vector<float> toFloats() const;
  /// Every element converted to double (exact for all types but I64 beyond 2^53).
  std::vector<double> toDoubles() const;
  /// Replaces the contents with `values` converted to this tensor's dtype (F16/BF16:
  /// round to nearest even; integers: round to nearest, Error when out of range or
  /// not finite). values.size() must equal numel(); the shape is kept.
  void setFloats(const std::vector<float> &values);

  /// A new tensor of the given dtype holding `values` (converted as setFloats does).
  static HostTensor fromFloats(std::string name, std::vector<int64_t> shape,
                               const std::vector<float> &values, DType dtype = DType::F32);
};

/// Bytes per element: 4, 2, 2, 4, 8, 8, 1.
size_t dtypeSize(HostTensor::DType dtype);
/// "F32", "F16", "BF16", "I32", "I64", "F64", "U8" (safetensors' spelling).
const char *dtypeName(HostTensor::DType dtype);
/// "[2,3,4]".
std::string shapeToString(const std::vector<int64_t> &shape);

} // namespace mantissa
