//===- HostTensor.cpp -----------------------------------------------------===//
#include "runtime/io/HostTensor.h"

#include "common/Error.h"
#include "common/Float16.h"

#include <cmath>
#include <cstring>
#include <limits>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "runtime/io assumes a little-endian host (the file formats are little-endian)"
#endif

namespace mantissa {

size_t dtypeSize(HostTensor::DType dtype) {
  switch (dtype) {
  case HostTensor::DType::F32:
    return 4;
  case HostTensor::DType::F16:
    return 2;
  case HostTensor::DType::BF16:
    return 2;
  case HostTensor::DType::I32:
    return 4;
  case HostTensor::DType::I64:
    return 8;
  case HostTensor::DType::F64:
    return 8;
  case HostTensor::DType::U8:
    return 1;
  }
  return 0;
}

const char *dtypeName(HostTensor::DType dtype) {
  switch (dtype) {
  case HostTensor::DType::F32:
    return "F32";
  case HostTensor::DType::F16:
    return "F16";
  case HostTensor::DType::BF16:
    return "BF16";
  case HostTensor::DType::I32:
    return "I32";
  case HostTensor::DType::I64:
    return "I64";
  case HostTensor::DType::F64:
    return "F64";
  case HostTensor::DType::U8:
    return "U8";
  }
  return "?";
}

std::string shapeToString(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i)
      s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t HostTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

void HostTensor::validate(const std::string &where) const {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0)
      throw Error(where + ": tensor '" + name + "' has a negative dimension in shape " +
                  shapeToString(shape));
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d)
      throw Error(where + ": tensor '" + name + "' shape " + shapeToString(shape) +
                  " overflows 64 bits");
    n *= d;
  }
  size_t want = static_cast<size_t>(n) * dtypeSize(dtype);
  if (bytes.size() != want)
    throw Error(where + ": tensor '" + name + "' of " + dtypeName(dtype) + " " +
                shapeToString(shape) + " needs " + std::to_string(want) + " bytes, holds " +
                std::to_string(bytes.size()));
}

namespace {
template <typename T> T loadAt(const uint8_t *p, size_t i) {
  T v;
  std::memcpy(&v, p + i * sizeof(T), sizeof(T));
  return v;
}
template <typename T> void storeAt(uint8_t *p, size_t i, T v) {
  std::memcpy(p + i * sizeof(T), &v, sizeof(T));
}

template <typename Out> std::vector<Out> convertOut(const HostTensor &t) {
  t.validate("tensor");
  size_t n = static_cast<size_t>(t.numel());
  std::vector<Out> out(n);
  const uint8_t *p = t.bytes.data();
  using D = HostTensor::DType;
  switch (t.dtype) {
  case D::F32:
    for (size_t i = 0; i < n; ++i)
      out[i] = static_cast<Out>(loadAt<float>(p, i));
    break;
  case D::F16:
    for (size_t i = 0; i < n; ++i)
      out[i] = static_cast<Out>(halfBitsToFloat(loadAt<uint16_t>(p, i)));
    break;
  case D::BF16:
    for (size_t i = 0; i < n; ++i)
      out[i] = static_cast<Out>(bf16BitsToFloat(loadAt<uint16_t>(p, i)));
    break;
  case D::I32:
    for (size_t i = 0; i < n; ++i)
      out[i] = static_cast<Out>(loadAt<int32_t>(p, i));
    break;
  case D::I64:
    for (size_t i = 0; i < n; ++i)
      out[i] = static_cast<Out>(loadAt<int64_t>(p, i));
    break;
  case D::F64:
    for (size_t i = 0; i < n; ++i)
      out[i] = static_cast<Out>(loadAt<double>(p, i));
    break;
  case D::U8:
    for (size_t i = 0; i < n; ++i)
      out[i] = static_cast<Out>(p[i]);
    break;
  }
  return out;
}

template <typename I> I toInteger(float v, size_t i, const std::string &name) {
  double r = std::nearbyint(static_cast<double>(v));
  if (!std::isfinite(v) || r < static_cast<double>(std::numeric_limits<I>::min()) ||
      r > static_cast<double>(std::numeric_limits<I>::max()))
    throw Error("tensor '" + name + "': element " + std::to_string(i) + " (" + std::to_string(v) +
                ") does not fit the integer element type");
  return static_cast<I>(r);
}
} // namespace

std::vector<float> HostTensor::toFloats() const { return convertOut<float>(*this); }
std::vector<double> HostTensor::toDoubles() const { return convertOut<double>(*this); }

void HostTensor::setFloats(const std::vector<float> &values) {
  int64_t n = numel();
  if (static_cast<int64_t>(values.size()) != n)
    throw Error("tensor '" + name + "': setFloats got " + std::to_string(values.size()) +
                " values for shape " + shapeToString(shape) + " (" + std::to_string(n) +
                " elements)");
  std::vector<uint8_t> out(static_cast<size_t>(n) * dtypeSize(dtype));
  uint8_t *p = out.data();
  size_t m = values.size();
  switch (dtype) {
  case DType::F32:
    if (m)
      std::memcpy(p, values.data(), m * 4);
    break;
  case DType::F16:
    for (size_t i = 0; i < m; ++i)
      storeAt<uint16_t>(p, i, floatToHalfBits(values[i]));
    break;
  case DType::BF16:
    for (size_t i = 0; i < m; ++i)
      storeAt<uint16_t>(p, i, floatToBF16Bits(values[i]));
    break;
  case DType::I32:
    for (size_t i = 0; i < m; ++i)
      storeAt<int32_t>(p, i, toInteger<int32_t>(values[i], i, name));
    break;
  case DType::I64:
    for (size_t i = 0; i < m; ++i)
      storeAt<int64_t>(p, i, toInteger<int64_t>(values[i], i, name));
    break;
  case DType::F64:
    for (size_t i = 0; i < m; ++i)
      storeAt<double>(p, i, static_cast<double>(values[i]));
    break;
  case DType::U8:
    for (size_t i = 0; i < m; ++i)
      p[i] = toInteger<uint8_t>(values[i], i, name);
    break;
  }
  bytes = std::move(out);
}

HostTensor HostTensor::fromFloats(std::string name, std::vector<int64_t> shape,
                                  const std::vector<float> &values, DType dtype) {
  HostTensor t;
  t.name = std::move(name);
  t.shape = std::move(shape);
  t.dtype = dtype;
  t.setFloats(values);
  return t;
}

} // namespace mantissa
