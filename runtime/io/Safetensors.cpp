//===- Safetensors.cpp ----------------------------------------------------===//
#include "runtime/io/Safetensors.h"

#include "common/Error.h"
#include "runtime/io/AtomicFile.h"
#include "runtime/io/MiniJson.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace mantissa {

namespace {

constexpr uint64_t kMaxHeader = 100u << 20; // the reference implementation's limit

bool dtypeFromName(const std::string &s, HostTensor::DType &out) {
  using D = HostTensor::DType;
  static const std::pair<const char *, D> kNames[] = {
      {"F32", D::F32}, {"F16", D::F16}, {"BF16", D::BF16}, {"I32", D::I32},
      {"I64", D::I64}, {"F64", D::F64}, {"U8", D::U8}};
  for (const auto &p : kNames)
    if (s == p.first) {
      out = p.second;
      return true;
    }
  return false;
}

} // namespace

const HostTensor *SafetensorsFile::find(const std::string &name) const {
  for (const HostTensor &t : tensors)
    if (t.name == name)
      return &t;
  return nullptr;
}

SafetensorsFile parseSafetensors(const uint8_t *data, size_t size, const std::string &where) {
  if (size < 8)
    throw Error(where + ": truncated safetensors file (" + std::to_string(size) +
                " bytes, shorter than the 8-byte header length)");
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k)
    n = (n << 8) | data[k];
  if (n > kMaxHeader)
    throw Error(where + ": not a safetensors file (header length " + std::to_string(n) +
                " exceeds the 100 MiB limit)");
  if (8 + n > size)
    throw Error(where + ": truncated safetensors file: header length " + std::to_string(n) +
                " but only " + std::to_string(size - 8) + " bytes follow");
  std::string text(reinterpret_cast<const char *>(data + 8), static_cast<size_t>(n));
  json::Value root = json::parse(text, where + ": header"); // bytes counted from the header's start
  if (root.kind != json::Value::Kind::Object)
    throw Error(where + ": safetensors header must be a JSON object, got " +
                std::string(root.kindName()));
  const uint8_t *base = data + 8 + n;
  uint64_t dataLen = size - 8 - n;

  SafetensorsFile file;
  struct Region {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Region> regions;
  for (const auto &member : root.members) {
    const std::string &name = member.first;
    const json::Value &v = member.second;
    if (name == "__metadata__") {
      if (v.kind != json::Value::Kind::Object)
        throw Error(where + ": __metadata__ must be an object of strings, got " +
                    std::string(v.kindName()));
      for (const auto &m : v.members) {
        if (m.second.kind != json::Value::Kind::String)
          throw Error(where + ": __metadata__['" + m.first + "'] must be a string, got " +
                      m.second.kindName());
        file.metadata[m.first] = m.second.text;
      }
      continue;
    }
    std::string at = where + ": tensor '" + name + "'";
    if (v.kind != json::Value::Kind::Object)
      throw Error(at + ": header entry must be an object, got " + v.kindName());
    const json::Value *dtype = nullptr, *shape = nullptr, *offsets = nullptr;
    for (const auto &m : v.members) {
      if (m.first == "dtype")
        dtype = &m.second;
      else if (m.first == "shape")
        shape = &m.second;
      else if (m.first == "data_offsets")
        offsets = &m.second;
    }
    if (!dtype || !shape || !offsets)
      throw Error(at + ": header entry needs 'dtype', 'shape' and 'data_offsets'");
    HostTensor t;
    t.name = name;
    if (dtype->kind != json::Value::Kind::String || !dtypeFromName(dtype->text, t.dtype))
      throw Error(at + ": unsupported dtype " +
                  (dtype->kind == json::Value::Kind::String ? "'" + dtype->text + "'"
                                                            : std::string(dtype->kindName())) +
                  " (supported: F32 F16 BF16 I32 I64 F64 U8)");
    if (shape->kind != json::Value::Kind::Array)
      throw Error(at + ": 'shape' must be an array of non-negative integers");
    uint64_t numel = 1;
    for (const json::Value &d : shape->items) {
      int64_t x;
      if (!d.asInt64(x) || x < 0)
        throw Error(at + ": 'shape' must be an array of non-negative integers");
      if (x != 0 && numel > std::numeric_limits<uint64_t>::max() / 16 / static_cast<uint64_t>(x))
        throw Error(at + ": shape is too large");
      numel *= static_cast<uint64_t>(x);
      t.shape.push_back(x);
    }
    int64_t b, e;
    if (offsets->kind != json::Value::Kind::Array || offsets->items.size() != 2 ||
        !offsets->items[0].asInt64(b) || !offsets->items[1].asInt64(e) || b < 0 || e < b)
      throw Error(at + ": 'data_offsets' must be [begin, end] with 0 <= begin <= end");
    uint64_t want = numel * dtypeSize(t.dtype);
    if (static_cast<uint64_t>(e - b) != want)
      throw Error(at + ": data_offsets [" + std::to_string(b) + "," + std::to_string(e) +
                  "] span " + std::to_string(e - b) + " bytes but " + dtypeName(t.dtype) + " " +
                  shapeToString(t.shape) + " needs " + std::to_string(want));
    if (static_cast<uint64_t>(e) > dataLen)
      throw Error(at + ": data_offsets [" + std::to_string(b) + "," + std::to_string(e) +
                  "] run past the " + std::to_string(dataLen) +
                  " bytes of data in the file (file truncated?)");
    if (file.find(name))
      throw Error(at + ": appears twice in the header");
    t.bytes.assign(base + b, base + e);
    regions.push_back({static_cast<uint64_t>(b), static_cast<uint64_t>(e), name});
    file.tensors.push_back(std::move(t));
  }
  std::sort(regions.begin(), regions.end(), [](const Region &a, const Region &b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const Region &r : regions) {
    if (r.begin != cursor)
      throw Error(where + ": tensor '" + r.name + "' data starts at " + std::to_string(r.begin) +
                  ", expected " + std::to_string(cursor) +
                  " (tensor data must be contiguous and non-overlapping; file corrupt)");
    cursor = r.end;
  }
  if (cursor != dataLen)
    throw Error(where + ": corrupt safetensors file: tensors cover " + std::to_string(cursor) +
                " bytes of data but the file holds " + std::to_string(dataLen));
  std::sort(file.tensors.begin(), file.tensors.end(),
            [](const HostTensor &a, const HostTensor &b) { return a.name < b.name; });
  return file;
}

SafetensorsFile readSafetensors(const std::string &path) {
  std::vector<uint8_t> bytes = readFileBytes(path);
  return parseSafetensors(bytes.data(), bytes.size(), path);
}

void writeSafetensors(const std::string &path, const std::vector<HostTensor> &tensors,
                      const std::map<std::string, std::string> &metadata) {
  std::vector<const HostTensor *> sorted;
  for (const HostTensor &t : tensors) {
    if (t.name.empty())
      throw Error(path + ": every tensor written to safetensors needs a name");
    if (t.name == "__metadata__")
      throw Error(path + ": '__metadata__' is reserved and cannot name a tensor");
    t.validate(path);
    sorted.push_back(&t);
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const HostTensor *a, const HostTensor *b) { return a->name < b->name; });
  for (size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i]->name == sorted[i - 1]->name)
      throw Error(path + ": two tensors are named '" + sorted[i]->name + "'");

  std::string h = "{";
  bool first = true;
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    bool f2 = true;
    for (const auto &kv : metadata) {
      if (!f2)
        h += ",";
      f2 = false;
      h += json::quote(kv.first) + ":" + json::quote(kv.second);
    }
    h += "}";
    first = false;
  }
  uint64_t offset = 0;
  for (const HostTensor *t : sorted) {
    if (!first)
      h += ",";
    first = false;
    h += json::quote(t->name) + ":{\"dtype\":\"" + dtypeName(t->dtype) + "\",\"shape\":[";
    for (size_t i = 0; i < t->shape.size(); ++i) {
      if (i)
        h += ",";
      h += std::to_string(t->shape[i]);
    }
    h += "],\"data_offsets\":[" + std::to_string(offset) + ",";
    offset += t->bytes.size();
    h += std::to_string(offset) + "]}";
  }
  h += "}";
  while (h.size() % 8 != 0)
    h += ' ';
  uint8_t len[8];
  uint64_t n = h.size();
  for (int k = 0; k < 8; ++k)
    len[k] = static_cast<uint8_t>(n >> (8 * k));
  AtomicFileWriter w(path);
  w.write(len, 8);
  w.write(h);
  for (const HostTensor *t : sorted)
    w.write(t->bytes);
  w.commit();
}

} // namespace mantissa
