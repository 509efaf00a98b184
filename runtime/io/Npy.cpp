//===- Npy.cpp ------------------------------------------------------------===//
#include "runtime/io/Npy.h"

#include "common/Error.h"
#include "runtime/io/AtomicFile.h"

#include <cstring>
#include <limits>

namespace mantissa {

namespace {

/// The header dict is a Python literal: {'descr': '<f4', 'fortran_order': False,
/// 'shape': (2, 3), }. A tiny parser for just that grammar.
struct HeaderParser {
  const std::string &s;
  const std::string &where;
  size_t i = 0;

  [[noreturn]] void fail(const std::string &what) const {
    throw Error(where + ": malformed .npy header (" + what + " at header offset " +
                std::to_string(i) + "): '" + s + "'");
  }
  void skipSpace() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
      ++i;
  }
  bool consume(char c) {
    skipSpace();
    if (i < s.size() && s[i] == c) {
      ++i;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!consume(c))
      fail(std::string("expected '") + c + "'");
  }
  std::string parseString() {
    skipSpace();
    if (i >= s.size() || (s[i] != '\'' && s[i] != '"'))
      fail("expected a string");
    char q = s[i++];
    std::string out;
    while (i < s.size() && s[i] != q) {
      if (s[i] == '\\' && i + 1 < s.size())
        ++i;
      out += s[i++];
    }
    if (i >= s.size())
      fail("unterminated string");
    ++i;
    return out;
  }
  bool startsWith(const char *word) const { return s.compare(i, std::strlen(word), word) == 0; }
  int64_t parseInt() {
    skipSpace();
    size_t start = i;
    int64_t v = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      int d = s[i] - '0';
      if (v > (std::numeric_limits<int64_t>::max() - d) / 10)
        fail("dimension too large");
      v = v * 10 + d;
      ++i;
    }
    if (i == start)
      fail("expected a non-negative integer");
    if (i < s.size() && s[i] == 'L') // Python 2 long suffix
      ++i;
    return v;
  }
};

struct NpyHeader {
  std::string descr;
  bool fortran = false;
  std::vector<int64_t> shape;
  size_t dataOffset = 0;
};

NpyHeader parseHeader(const uint8_t *data, size_t size, const std::string &where) {
  static const char kMagic[] = "\x93NUMPY";
  if (size < 10 || std::memcmp(data, kMagic, 6) != 0)
    throw Error(where + ": not a .npy file (missing the \\x93NUMPY magic; file is " +
                std::to_string(size) + " bytes)");
  int major = data[6], minor = data[7];
  size_t headerLen, pre;
  if (major == 1) {
    headerLen = static_cast<size_t>(data[8]) | (static_cast<size_t>(data[9]) << 8);
    pre = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12)
      throw Error(where + ": truncated .npy file (" + std::to_string(size) +
                  " bytes, shorter than the version " + std::to_string(major) + " preamble)");
    headerLen = static_cast<size_t>(data[8]) | (static_cast<size_t>(data[9]) << 8) |
                (static_cast<size_t>(data[10]) << 16) | (static_cast<size_t>(data[11]) << 24);
    pre = 12;
  } else {
    throw Error(where + ": unsupported .npy format version " + std::to_string(major) + "." +
                std::to_string(minor) + " (supported: 1.0, 2.0, 3.0)");
  }
  if (pre + headerLen > size)
    throw Error(where + ": truncated .npy file: header claims " + std::to_string(headerLen) +
                " bytes but the file has only " + std::to_string(size - pre) +
                " after the preamble");
  std::string text(reinterpret_cast<const char *>(data + pre), headerLen);
  HeaderParser p{text, where};
  NpyHeader h;
  h.dataOffset = pre + headerLen;
  bool haveDescr = false, haveOrder = false, haveShape = false;
  p.expect('{');
  while (!p.consume('}')) {
    std::string key = p.parseString();
    p.expect(':');
    if (key == "descr") {
      p.skipSpace();
      if (p.i < text.size() && text[p.i] == '[')
        throw Error(where + ": structured/record dtype (descr is a list) is not supported; "
                            "save a plain numeric array");
      h.descr = p.parseString();
      haveDescr = true;
    } else if (key == "fortran_order") {
      p.skipSpace();
      if (p.startsWith("True")) {
        h.fortran = true;
        p.i += 4;
      } else if (p.startsWith("False")) {
        h.fortran = false;
        p.i += 5;
      } else {
        p.fail("fortran_order must be True or False");
      }
      haveOrder = true;
    } else if (key == "shape") {
      p.expect('(');
      while (!p.consume(')')) {
        h.shape.push_back(p.parseInt());
        if (!p.consume(',')) {
          p.expect(')');
          break;
        }
      }
      haveShape = true;
    } else {
      p.fail("unknown key '" + key + "'");
    }
    if (!p.consume(',')) {
      p.expect('}');
      break;
    }
  }
  if (!haveDescr || !haveOrder || !haveShape)
    p.fail("missing one of 'descr', 'fortran_order', 'shape'");
  return h;
}

HostTensor::DType dtypeFromDescr(const std::string &descr, const std::string &where) {
  using D = HostTensor::DType;
  if (descr == "<f4")
    return D::F32;
  if (descr == "<f8")
    return D::F64;
  if (descr == "<f2")
    return D::F16;
  if (descr == "<i4")
    return D::I32;
  if (descr == "<i8")
    return D::I64;
  if (descr == "|u1" || descr == "<u1" || descr == "|b1")
    return D::U8;
  if (!descr.empty() && descr[0] == '>')
    throw Error(where + ": big-endian dtype '" + descr +
                "' is not supported; re-save with arr.astype(arr.dtype.newbyteorder('<'))");
  throw Error(where + ": unsupported dtype '" + descr +
              "' (supported: <f4 <f8 <f2 <i4 <i8 |u1); re-save with e.g. arr.astype('<f4')");
}

const char *descrOf(HostTensor::DType dtype, const std::string &where) {
  using D = HostTensor::DType;
  switch (dtype) {
  case D::F32:
    return "<f4";
  case D::F64:
    return "<f8";
  case D::F16:
    return "<f2";
  case D::I32:
    return "<i4";
  case D::I64:
    return "<i8";
  case D::U8:
    return "|u1";
  case D::BF16:
    break;
  }
  throw Error(where + ": .npy has no bfloat16 type; convert the tensor to F32 "
                      "(HostTensor::setFloats) or write safetensors instead");
}

std::string baseName(const std::string &path) {
  size_t slash = path.rfind('/');
  std::string b = slash == std::string::npos ? path : path.substr(slash + 1);
  if (b.size() > 4 && b.compare(b.size() - 4, 4, ".npy") == 0)
    b.resize(b.size() - 4);
  return b;
}

} // namespace

HostTensor parseNpy(const uint8_t *data, size_t size, const std::string &where) {
  NpyHeader h = parseHeader(data, size, where);
  HostTensor t;
  t.dtype = dtypeFromDescr(h.descr, where);
  t.shape = h.shape;
  // Fortran order is only different from C order when two or more dims exceed 1.
  int bigDims = 0;
  for (int64_t d : h.shape)
    bigDims += d > 1;
  if (h.fortran && bigDims > 1)
    throw Error(where + ": array is stored in Fortran order (fortran_order=True, shape " +
                shapeToString(h.shape) +
                "); re-save it in C order with np.save(path, np.ascontiguousarray(arr))");
  int64_t n = 1;
  for (int64_t d : h.shape) {
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d / 8)
      throw Error(where + ": shape " + shapeToString(h.shape) + " is too large");
    n *= d;
  }
  size_t want = static_cast<size_t>(n) * dtypeSize(t.dtype);
  size_t have = size - h.dataOffset;
  if (have < want)
    throw Error(where + ": truncated .npy file: " + h.descr + " " + shapeToString(h.shape) +
                " needs " + std::to_string(want) + " bytes of data, file has " +
                std::to_string(have));
  if (have > want)
    throw Error(where + ": corrupt .npy file: " + std::to_string(have - want) +
                " unexpected bytes after the " + std::to_string(want) + " bytes of " + h.descr +
                " " + shapeToString(h.shape) + " data");
  t.bytes.assign(data + h.dataOffset, data + h.dataOffset + want);
  return t;
}

HostTensor readNpy(const std::string &path) {
  std::vector<uint8_t> bytes = readFileBytes(path);
  HostTensor t = parseNpy(bytes.data(), bytes.size(), path);
  t.name = baseName(path);
  return t;
}

std::string npyPreamble(const HostTensor &tensor, const std::string &where) {
  tensor.validate(where);
  std::string dict = "{'descr': '";
  dict += descrOf(tensor.dtype, where);
  dict += "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < tensor.shape.size(); ++i) {
    if (i)
      dict += ", ";
    dict += std::to_string(tensor.shape[i]);
  }
  if (tensor.shape.size() == 1)
    dict += ",";
  dict += "), }";
  // Pad with spaces so that preamble + header (ending in '\n') is a multiple of 64.
  bool v2 = dict.size() + 1 + 10 > 65535;
  size_t pre = v2 ? 12 : 10;
  size_t total = pre + dict.size() + 1;
  size_t padded = (total + 63) / 64 * 64;
  dict.append(padded - total, ' ');
  dict += '\n';
  size_t hl = dict.size();
  std::string out("\x93NUMPY", 6);
  out += static_cast<char>(v2 ? 2 : 1);
  out += static_cast<char>(0);
  out += static_cast<char>(hl & 0xFF);
  out += static_cast<char>((hl >> 8) & 0xFF);
  if (v2) {
    out += static_cast<char>((hl >> 16) & 0xFF);
    out += static_cast<char>((hl >> 24) & 0xFF);
  }
  return out + dict;
}

void writeNpy(const std::string &path, const HostTensor &tensor) {
  std::string pre = npyPreamble(tensor, path);
  AtomicFileWriter w(path);
  w.write(pre);
  w.write(tensor.bytes);
  w.commit();
}

} // namespace mantissa
