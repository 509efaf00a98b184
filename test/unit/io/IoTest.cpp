// Unit tests for runtime/io: HostTensor conversions, .npy, .npz, safetensors,
// atomic writes; files written by numpy (and a hand-written safetensors writer in
// Python) must read back exactly, and files we write must load in numpy.
#include "common/Error.h"
#include "runtime/io/AtomicFile.h"
#include "runtime/io/HostTensor.h"
#include "runtime/io/MiniJson.h"
#include "runtime/io/Npy.h"
#include "runtime/io/Npz.h"
#include "runtime/io/Safetensors.h"
#include "test/unit/io/TestUtil.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <sys/wait.h>
#include <thread>

using namespace mantissa;
using namespace mantissa::testutil;
using D = HostTensor::DType;

namespace {

std::vector<uint8_t> slurp(const std::string &path) { return readFileBytes(path); }

void spit(const std::string &path, const std::vector<uint8_t> &b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char *>(b.data()), static_cast<std::streamsize>(b.size()));
}

HostTensor sampleTensor(const std::string &name, D dtype, std::vector<int64_t> shape) {
  HostTensor t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  std::vector<float> v(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = dtype == D::U8 ? static_cast<float>(i % 251)
                          : static_cast<float>(static_cast<int>(i % 97) - 40) *
                                (dtype == D::I32 || dtype == D::I64 ? 1.0f : 0.25f);
  t.setFloats(v);
  return t;
}

bool sameTensor(const HostTensor &a, const HostTensor &b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.bytes == b.bytes;
}

std::vector<std::string> listDir(const std::string &dir) {
  std::vector<std::string> out;
  DIR *d = opendir(dir.c_str());
  while (dirent *e = readdir(d))
    if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, ".."))
      out.push_back(e->d_name);
  closedir(d);
  return out;
}

} // namespace

// ---------------------------------------------------------------- HostTensor

TEST(HostTensor, ConvertsEveryDtype) {
  std::vector<float> v = {0.0f, 1.0f, -2.5f, 3.0f, 100.0f, -0.125f};
  for (D dt : {D::F32, D::F16, D::BF16, D::F64}) {
    HostTensor t = HostTensor::fromFloats("t", {2, 3}, v, dt);
    EXPECT_EQ(t.bytes.size(), 6 * dtypeSize(dt));
    EXPECT_EQ(t.toFloats(), v) << dtypeName(dt);
  }
  std::vector<float> ints = {0, 1, -2, 3, 100, -7};
  for (D dt : {D::I32, D::I64}) {
    HostTensor t = HostTensor::fromFloats("t", {6}, ints, dt);
    EXPECT_EQ(t.toFloats(), ints) << dtypeName(dt);
  }
  HostTensor u = HostTensor::fromFloats("u", {3}, {0, 17, 255}, D::U8);
  EXPECT_EQ(u.bytes, (std::vector<uint8_t>{0, 17, 255}));
}

TEST(HostTensor, HalfAndBFloat16Bits) {
  HostTensor h = HostTensor::fromFloats("h", {4}, {1.0f, 65504.0f, 1e6f, 5.9604645e-8f}, D::F16);
  uint16_t bits[4];
  std::memcpy(bits, h.bytes.data(), 8);
  EXPECT_EQ(bits[0], 0x3C00);
  EXPECT_EQ(bits[1], 0x7BFF);
  EXPECT_EQ(bits[2], 0x7C00); // overflow to inf
  EXPECT_EQ(bits[3], 0x0001); // smallest subnormal
  HostTensor b = HostTensor::fromFloats("b", {2}, {1.0f, 1.00390625f /* 1 + 2^-8: tie */}, D::BF16);
  uint16_t bb[2];
  std::memcpy(bb, b.bytes.data(), 4);
  EXPECT_EQ(bb[0], 0x3F80);
  EXPECT_EQ(bb[1], 0x3F80); // ties to even
}

TEST(HostTensor, IntegerOverflowAndSizeMismatchAreErrors) {
  expectError([] { HostTensor::fromFloats("u", {1}, {256.0f}, D::U8); }, {"'u'", "element 0"});
  expectError([] { HostTensor::fromFloats("i", {1}, {NAN}, D::I32); }, {"'i'"});
  expectError(
      [] {
        HostTensor::fromFloats("s", {2, 2}, {1, 2, 3}, D::F32);
      },
      {"'s'", "3 values", "[2,2]"});
  HostTensor t = sampleTensor("t", D::F32, {3});
  t.bytes.pop_back();
  expectError([&] { t.validate("where"); }, {"where", "needs 12 bytes", "holds 11"});
}

// ---------------------------------------------------------------- .npy

TEST(Npy, RoundTripsEveryDtypeAndShape) {
  ScratchDir dir;
  std::vector<std::vector<int64_t>> shapes = {{}, {7}, {2, 3}, {2, 0, 4}, {2, 3, 4, 5}};
  for (D dt : {D::F32, D::F16, D::I32, D::I64, D::F64, D::U8})
    for (const auto &shape : shapes) {
      HostTensor t = sampleTensor("a", dt, shape);
      writeNpy(dir.file("a.npy"), t);
      HostTensor r = readNpy(dir.file("a.npy"));
      EXPECT_TRUE(sameTensor(t, r)) << dtypeName(dt) << " " << shapeToString(shape);
      EXPECT_EQ(r.name, "a");
      // Header padded so the data starts at a multiple of 64.
      EXPECT_EQ((slurp(dir.file("a.npy")).size() - t.bytes.size()) % 64, 0u);
    }
}

TEST(Npy, BFloat16CannotBeWritten) {
  ScratchDir dir;
  HostTensor t = sampleTensor("b", D::BF16, {2});
  expectError([&] { writeNpy(dir.file("b.npy"), t); }, {"b.npy", "bfloat16", "safetensors"});
  EXPECT_TRUE(listDir(dir.path).empty()); // no temp file left behind
}

TEST(Npy, ReadsWhatNumpyWrites) {
  MANTISSA_REQUIRE_PYTHON("numpy");
  ScratchDir dir;
  ASSERT_EQ(runPython(dir, R"PY(
import numpy as np
a = (np.arange(24).reshape(2, 3, 4) - 7.5)
np.save('f4.npy', a.astype('<f4'))
np.save('f8.npy', a.astype('<f8'))
np.save('f2.npy', a.astype('<f2'))
np.save('i4.npy', np.arange(-5, 5, dtype='<i4'))
np.save('i8.npy', np.array([-(2**40), 0, 2**40], dtype='<i8'))
np.save('u1.npy', np.arange(0, 256, 5, dtype='u1').reshape(-1, 1))
np.save('b1.npy', np.array([True, False, True]))
np.save('scalar.npy', np.float32(3.5))
with open('v2.npy', 'wb') as f:
    np.lib.format.write_array(f, a.astype('<f4'), version=(2, 0))
with open('v3.npy', 'wb') as f:
    np.lib.format.write_array(f, a.astype('<f4'), version=(3, 0))
np.save('fortran.npy', np.asfortranarray(a.astype('<f4')))
np.save('big.npy', a.astype('>f4'))
np.save('c8.npy', np.zeros(3, dtype='c8'))
np.save('rec.npy', np.zeros(2, dtype=[('a', '<f4'), ('b', '<i4')]))
)PY"),
            0);
  std::vector<float> expect(24);
  for (int i = 0; i < 24; ++i)
    expect[i] = static_cast<float>(i) - 7.5f;
  for (const char *f : {"f4", "f8", "f2", "v2", "v3"}) {
    HostTensor t = readNpy(dir.file(std::string(f) + ".npy"));
    EXPECT_EQ(t.shape, (std::vector<int64_t>{2, 3, 4})) << f;
    EXPECT_EQ(t.toFloats(), expect) << f;
  }
  EXPECT_EQ(readNpy(dir.file("f4.npy")).dtype, D::F32);
  EXPECT_EQ(readNpy(dir.file("f8.npy")).dtype, D::F64);
  EXPECT_EQ(readNpy(dir.file("f2.npy")).dtype, D::F16);
  HostTensor i4 = readNpy(dir.file("i4.npy"));
  EXPECT_EQ(i4.dtype, D::I32);
  EXPECT_EQ(i4.toFloats(), (std::vector<float>{-5, -4, -3, -2, -1, 0, 1, 2, 3, 4}));
  HostTensor i8 = readNpy(dir.file("i8.npy"));
  EXPECT_EQ(i8.dtype, D::I64);
  int64_t v8[3];
  std::memcpy(v8, i8.bytes.data(), 24);
  EXPECT_EQ(v8[0], -(int64_t{1} << 40));
  EXPECT_EQ(v8[2], int64_t{1} << 40);
  HostTensor u1 = readNpy(dir.file("u1.npy"));
  EXPECT_EQ(u1.dtype, D::U8);
  EXPECT_EQ(u1.shape, (std::vector<int64_t>{52, 1}));
  EXPECT_EQ(u1.bytes[51], 255);
  EXPECT_EQ(readNpy(dir.file("b1.npy")).bytes, (std::vector<uint8_t>{1, 0, 1}));
  HostTensor s = readNpy(dir.file("scalar.npy"));
  EXPECT_TRUE(s.shape.empty());
  EXPECT_EQ(s.toFloats(), std::vector<float>{3.5f});

  expectError([&] { readNpy(dir.file("fortran.npy")); },
              {"fortran.npy", "Fortran order", "np.ascontiguousarray"});
  expectError([&] { readNpy(dir.file("big.npy")); }, {"big.npy", "big-endian", ">f4"});
  expectError([&] { readNpy(dir.file("c8.npy")); }, {"c8.npy", "unsupported dtype '<c8'"});
  expectError([&] { readNpy(dir.file("rec.npy")); }, {"rec.npy", "structured"});
}

TEST(Npy, NumpyReadsWhatWeWrite) {
  MANTISSA_REQUIRE_PYTHON("numpy");
  ScratchDir dir;
  writeNpy(dir.file("f4.npy"), sampleTensor("f4", D::F32, {3, 4}));
  writeNpy(dir.file("f2.npy"), sampleTensor("f2", D::F16, {5}));
  writeNpy(dir.file("i8.npy"), sampleTensor("i8", D::I64, {2, 2, 2}));
  writeNpy(dir.file("u1.npy"), sampleTensor("u1", D::U8, {300}));
  writeNpy(dir.file("s.npy"), HostTensor::fromFloats("s", {}, {2.0f}, D::F64));
  EXPECT_EQ(runPython(dir, R"PY(
import numpy as np
def ref(n, scale):
    return (np.arange(n) % 97 - 40) * scale
a = np.load('f4.npy'); assert a.dtype == np.float32 and a.shape == (3, 4), a
assert (a.ravel() == ref(12, 0.25)).all()
a = np.load('f2.npy'); assert a.dtype == np.float16 and a.shape == (5,)
assert (a == ref(5, 0.25)).all()
a = np.load('i8.npy'); assert a.dtype == np.int64 and a.shape == (2, 2, 2)
assert (a.ravel() == ref(8, 1)).all()
a = np.load('u1.npy'); assert a.dtype == np.uint8 and (a == np.arange(300) % 251).all()
a = np.load('s.npy'); assert a.shape == () and a == 2.0 and a.dtype == np.float64
)PY"),
            0);
}

TEST(Npy, TruncatedAndCorruptFilesAreErrors) {
  ScratchDir dir;
  std::string p = dir.file("x.npy");
  writeNpy(p, sampleTensor("x", D::F32, {10, 10}));
  std::vector<uint8_t> good = slurp(p);

  spit(p, std::vector<uint8_t>(good.begin(), good.end() - 4));
  expectError([&] { readNpy(p); }, {p, "truncated", "needs 400 bytes", "has 396"});
  spit(p, std::vector<uint8_t>(good.begin(), good.begin() + 40));
  expectError([&] { readNpy(p); }, {p, "truncated", "header"});
  spit(p, std::vector<uint8_t>(good.begin(), good.begin() + 5));
  expectError([&] { readNpy(p); }, {p, "not a .npy file"});
  std::vector<uint8_t> extra = good;
  extra.push_back(0);
  spit(p, extra);
  expectError([&] { readNpy(p); }, {p, "1 unexpected bytes"});
  std::vector<uint8_t> bad = good;
  bad[6] = 9; // version 9.0
  spit(p, bad);
  expectError([&] { readNpy(p); }, {p, "version 9.0"});
  bad = good;
  std::memcpy(&bad[10], "{'descr' '<f4'", 14);
  spit(p, bad);
  expectError([&] { readNpy(p); }, {p, "malformed .npy header"});
  expectError([&] { readNpy(dir.file("missing.npy")); }, {"missing.npy", "cannot open"});
}

// ---------------------------------------------------------------- .npz

TEST(Npz, RoundTrip) {
  ScratchDir dir;
  std::vector<HostTensor> ts = {
      sampleTensor("weights", D::F32, {4, 5}), sampleTensor("steps", D::I64, {}),
      sampleTensor("half", D::F16, {3, 0}), sampleTensor("bytes", D::U8, {1000})};
  writeNpz(dir.file("a.npz"), ts);
  std::vector<HostTensor> r = readNpz(dir.file("a.npz"));
  ASSERT_EQ(r.size(), ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    EXPECT_EQ(r[i].name, ts[i].name);
    EXPECT_TRUE(sameTensor(r[i], ts[i])) << ts[i].name;
  }
  expectError([&] { writeNpz(dir.file("b.npz"), {ts[0], ts[0]}); }, {"b.npz", "'weights'"});
}

TEST(Npz, ReadsNumpySavezAndSavezCompressed) {
  MANTISSA_REQUIRE_PYTHON("numpy");
  ScratchDir dir;
  ASSERT_EQ(runPython(dir, R"PY(
import numpy as np
a = np.linspace(-1, 1, 1000, dtype='<f4').reshape(10, 100)
b = np.arange(12, dtype='<i8')
c = np.zeros((64, 64), dtype='<f2')
np.savez('plain.npz', a=a, b=b, c=c)
np.savez_compressed('packed.npz', a=a, b=b, c=c)
np.savez('positional.npz', a, b)
)PY"),
            0);
  for (const char *f : {"plain.npz", "packed.npz"}) {
    std::vector<HostTensor> r = readNpz(dir.file(f));
    ASSERT_EQ(r.size(), 3u) << f;
    EXPECT_EQ(r[0].name, "a");
    EXPECT_EQ(r[0].shape, (std::vector<int64_t>{10, 100}));
    std::vector<float> a = r[0].toFloats();
    EXPECT_FLOAT_EQ(a.front(), -1.0f);
    EXPECT_FLOAT_EQ(a.back(), 1.0f);
    EXPECT_EQ(r[1].name, "b");
    EXPECT_EQ(r[1].dtype, D::I64);
    EXPECT_EQ(r[1].toFloats()[11], 11.0f);
    EXPECT_EQ(r[2].dtype, D::F16);
    EXPECT_EQ(r[2].numel(), 4096);
  }
  std::vector<HostTensor> pos = readNpz(dir.file("positional.npz"));
  ASSERT_EQ(pos.size(), 2u);
  EXPECT_EQ(pos[0].name, "arr_0");
  EXPECT_EQ(pos[1].name, "arr_1");
}

TEST(Npz, NumpyReadsWhatWeWrite) {
  MANTISSA_REQUIRE_PYTHON("numpy");
  ScratchDir dir;
  writeNpz(dir.file("ours.npz"), {sampleTensor("x", D::F32, {6, 7}), sampleTensor("y", D::I32, {6}),
                                  sampleTensor("z", D::F64, {})});
  EXPECT_EQ(runPython(dir, R"PY(
import numpy as np, zipfile
assert zipfile.ZipFile('ours.npz').testzip() is None
d = np.load('ours.npz')
assert sorted(d.files) == ['x', 'y', 'z'], d.files
assert d['x'].shape == (6, 7) and d['x'].dtype == np.float32
assert (d['x'].ravel() == (np.arange(42) % 97 - 40) * 0.25).all()
assert (d['y'] == np.arange(6) - 40).all() and d['y'].dtype == np.int32
assert d['z'].shape == () and d['z'] == -10.0
)PY"),
            0);
}

TEST(Npz, CorruptAndTruncatedArchivesAreErrors) {
  ScratchDir dir;
  std::string p = dir.file("a.npz");
  writeNpz(p, {sampleTensor("x", D::F32, {100})});
  std::vector<uint8_t> good = slurp(p);

  std::vector<uint8_t> bad = good;
  bad[200] ^= 0xFF; // inside x's data
  spit(p, bad);
  expectError([&] { readNpz(p); }, {p, "member 'x.npy'", "CRC-32 mismatch"});
  spit(p, std::vector<uint8_t>(good.begin(), good.end() - 30));
  expectError([&] { readNpz(p); }, {p, "truncated"});
  spit(p, std::vector<uint8_t>(good.begin(), good.begin() + 10));
  expectError([&] { readNpz(p); }, {p, "not a zip/.npz archive"});
  spit(p, std::vector<uint8_t>(1000, 0x41));
  expectError([&] { readNpz(p); }, {p, "no end-of-central-directory"});
}

TEST(Npz, CorruptDeflateStreamIsAnError) {
  MANTISSA_REQUIRE_PYTHON("numpy");
  ScratchDir dir;
  ASSERT_EQ(runPython(dir, R"PY(
import numpy as np, struct, zipfile
np.savez_compressed('c.npz', x=np.sin(np.arange(5000, dtype='<f4')))
data = bytearray(open('c.npz', 'rb').read())
zi = zipfile.ZipFile('c.npz').infolist()[0]
n, e = struct.unpack('<HH', data[zi.header_offset + 26:zi.header_offset + 30])
start = zi.header_offset + 30 + n + e
# Break the deflate stream: a reserved block type (BTYPE=11) in the first byte.
data[start] = data[start] | 0x06
open('bad.npz', 'wb').write(data)
)PY"),
            0);
  EXPECT_EQ(readNpz(dir.file("c.npz"))[0].numel(), 5000);
  expectError([&] { readNpz(dir.file("bad.npz")); },
              {"bad.npz", "member 'x.npy'", "corrupt deflate data"});
}

// ---------------------------------------------------------------- safetensors

TEST(Safetensors, RoundTripWithMetadata) {
  ScratchDir dir;
  std::vector<HostTensor> ts = {sampleTensor("fc2.weight", D::BF16, {3, 4}),
                                sampleTensor("fc1.bias", D::F32, {4}),
                                sampleTensor("num_batches_tracked", D::I64, {}),
                                sampleTensor("h", D::F16, {2, 2}),
                                sampleTensor("d", D::F64, {1}),
                                sampleTensor("i", D::I32, {0}),
                                sampleTensor("u", D::U8, {5})};
  std::map<std::string, std::string> meta = {{"format", "pt"},
                                             {"quote\"and\\slash\n", "\x01\xc3\xa9"}};
  writeSafetensors(dir.file("m.safetensors"), ts, meta);
  std::vector<uint8_t> raw = slurp(dir.file("m.safetensors"));
  uint64_t hl;
  std::memcpy(&hl, raw.data(), 8);
  EXPECT_EQ(hl % 8, 0u);
  SafetensorsFile f = readSafetensors(dir.file("m.safetensors"));
  EXPECT_EQ(f.metadata, meta);
  ASSERT_EQ(f.tensors.size(), ts.size());
  for (size_t i = 1; i < f.tensors.size(); ++i)
    EXPECT_LT(f.tensors[i - 1].name, f.tensors[i].name);
  for (const HostTensor &t : ts) {
    const HostTensor *r = f.find(t.name);
    ASSERT_NE(r, nullptr) << t.name;
    EXPECT_TRUE(sameTensor(*r, t)) << t.name;
  }
  expectError(
      [&] {
        writeSafetensors(dir.file("x.safetensors"), {ts[0], ts[0]});
      },
      {"x.safetensors", "two tensors are named 'fc2.weight'"});
}

// Writes the format by hand (python3-safetensors is not a dependency), with bf16
// bytes from torch when it is available.
static const char *kPySafetensorsWriter = R"PY(
import json, struct, numpy as np
def write(path, tensors, metadata=None, order=None):
    header = {}
    if metadata is not None:
        header['__metadata__'] = metadata
    blobs, off = [], 0
    for name in (order or sorted(tensors)):
        dtype, arr_bytes, shape = tensors[name]
        header[name] = {'dtype': dtype, 'shape': list(shape), 'data_offsets': [off, off + len(arr_bytes)]}
        off += len(arr_bytes); blobs.append(arr_bytes)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h))); f.write(h); f.write(b''.join(blobs))
a = np.arange(6, dtype='<f4').reshape(2, 3) / 4
t = {
  'layer.weight': ('F32', a.tobytes(), a.shape),
  'layer.bias': ('F64', np.array([1.5, -2.0]).tobytes(), (2,)),
  'half': ('F16', np.array([0.5, 65504], dtype='<f2').tobytes(), (2,)),
  'steps': ('I64', np.array(7, dtype='<i8').tobytes(), ()),
  'idx': ('I32', np.array([[1], [-2]], dtype='<i4').tobytes(), (2, 1)),
  # bf16 of 1.0, -2.0, 0.15625 (exact): the top halves of the float32 bits
  'bf': ('BF16', (np.array([1.0, -2.0, 0.15625], dtype='<f4').view('<u4') >> 16).astype('<u2').tobytes(), (3,)),
}
write('py.safetensors', t, {'format': 'pt', 'note': 'caf\u00e9'}, order=['steps', 'layer.weight', 'idx', 'half', 'bf', 'layer.bias'])
try:
    import torch
    b = torch.tensor([1.0, 3.140625, -0.0078125]).to(torch.bfloat16).view(torch.int16).numpy().tobytes()
    write('torch_bf16.safetensors', {'x': ('BF16', b, (3,))})
except ImportError:
    pass
)PY";

TEST(Safetensors, ReadsHandWrittenPythonFile) {
  MANTISSA_REQUIRE_PYTHON("numpy");
  ScratchDir dir;
  ASSERT_EQ(runPython(dir, kPySafetensorsWriter), 0);
  SafetensorsFile f = readSafetensors(dir.file("py.safetensors"));
  EXPECT_EQ(f.metadata.at("format"), "pt");
  EXPECT_EQ(f.metadata.at("note"), "caf\xc3\xa9");
  ASSERT_EQ(f.tensors.size(), 6u);
  EXPECT_EQ(f.find("layer.weight")->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.find("layer.weight")->toFloats(),
            (std::vector<float>{0, 0.25f, 0.5f, 0.75f, 1.0f, 1.25f}));
  EXPECT_EQ(f.find("layer.bias")->toFloats(), (std::vector<float>{1.5f, -2.0f}));
  EXPECT_EQ(f.find("half")->toFloats(), (std::vector<float>{0.5f, 65504.0f}));
  EXPECT_TRUE(f.find("steps")->shape.empty());
  EXPECT_EQ(f.find("steps")->toFloats(), std::vector<float>{7.0f});
  EXPECT_EQ(f.find("idx")->toFloats(), (std::vector<float>{1.0f, -2.0f}));
  EXPECT_EQ(f.find("bf")->dtype, D::BF16);
  EXPECT_EQ(f.find("bf")->toFloats(), (std::vector<float>{1.0f, -2.0f, 0.15625f}));
  std::ifstream torchFile(dir.file("torch_bf16.safetensors"));
  if (torchFile) {
    SafetensorsFile g = readSafetensors(dir.file("torch_bf16.safetensors"));
    EXPECT_EQ(g.find("x")->toFloats(), (std::vector<float>{1.0f, 3.140625f, -0.0078125f}));
  }
}

TEST(Safetensors, PythonReadsWhatWeWrite) {
  MANTISSA_REQUIRE_PYTHON("numpy");
  ScratchDir dir;
  writeSafetensors(dir.file("ours.safetensors"),
                   {sampleTensor("b", D::F32, {2, 3}), sampleTensor("a", D::I64, {4}),
                    HostTensor::fromFloats("c", {2}, {1.0f, -3.0f}, D::BF16)},
                   {{"k", "v"}});
  EXPECT_EQ(runPython(dir, R"PY(
import json, struct, numpy as np
raw = open('ours.safetensors', 'rb').read()
n, = struct.unpack('<Q', raw[:8])
h = json.loads(raw[8:8 + n]); data = raw[8 + n:]
assert h['__metadata__'] == {'k': 'v'}
names = [k for k in h if k != '__metadata__']
assert names == ['a', 'b', 'c'], names
def get(name, dt):
    b, e = h[name]['data_offsets']
    return np.frombuffer(data[b:e], dtype=dt).reshape(h[name]['shape'])
assert h['b']['dtype'] == 'F32' and (get('b', '<f4').ravel() == (np.arange(6) - 40) * 0.25).all()
assert h['a']['dtype'] == 'I64' and (get('a', '<i8') == np.arange(4) - 40).all()
c = (get('c', '<u2').astype('<u4') << 16).view('<f4')
assert h['c']['dtype'] == 'BF16' and (c == [1.0, -3.0]).all()
assert h['b']['data_offsets'][0] == h['a']['data_offsets'][1]
assert h['c']['data_offsets'][1] == len(data)
)PY"),
            0);
}

TEST(Safetensors, CorruptFilesAreErrors) {
  ScratchDir dir;
  std::string p = dir.file("m.safetensors");
  writeSafetensors(p, {sampleTensor("w", D::F32, {8})});
  std::vector<uint8_t> good = slurp(p);
  uint64_t hl;
  std::memcpy(&hl, good.data(), 8);
  std::string header(good.begin() + 8, good.begin() + 8 + static_cast<long>(hl));

  spit(p, std::vector<uint8_t>(good.begin(), good.end() - 1));
  expectError([&] { readSafetensors(p); }, {p, "tensor 'w'", "run past", "truncated"});
  spit(p, std::vector<uint8_t>(good.begin(), good.begin() + 20));
  expectError([&] { readSafetensors(p); }, {p, "truncated safetensors file"});
  spit(p, std::vector<uint8_t>(good.begin(), good.begin() + 4));
  expectError([&] { readSafetensors(p); }, {p, "truncated"});
  std::vector<uint8_t> huge = good;
  huge[7] = 0x7F;
  spit(p, huge);
  expectError([&] { readSafetensors(p); }, {p, "100 MiB"});

  auto withHeader = [&](std::string h) {
    while (h.size() % 8)
      h += ' ';
    std::vector<uint8_t> out(8);
    uint64_t n = h.size();
    std::memcpy(out.data(), &n, 8);
    out.insert(out.end(), h.begin(), h.end());
    out.insert(out.end(), good.begin() + 8 + static_cast<long>(hl), good.end());
    spit(p, out);
  };
  withHeader(R"({"w":{"dtype":"F32","shape":[8],"data_offsets":[0,32]})");
  expectError([&] { readSafetensors(p); }, {p, "header: invalid JSON at byte"});
  withHeader(R"({"w":{"dtype":"Q8","shape":[8],"data_offsets":[0,32]}})");
  expectError([&] { readSafetensors(p); }, {p, "tensor 'w'", "unsupported dtype 'Q8'"});
  withHeader(R"({"w":{"dtype":"F32","shape":[9],"data_offsets":[0,32]}})");
  expectError([&] { readSafetensors(p); }, {p, "tensor 'w'", "needs 36"});
  withHeader(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})");
  expectError([&] { readSafetensors(p); }, {p, "cover 16 bytes", "holds 32"});
  withHeader(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
             R"("v":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})");
  expectError([&] { readSafetensors(p); }, {p, "tensor 'v'", "contiguous"});
  withHeader(R"({"w":{"dtype":"F32","shape":[8]}})");
  expectError([&] { readSafetensors(p); }, {p, "tensor 'w'", "data_offsets"});
  withHeader(R"({"__metadata__":{"a":1},"w":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})");
  expectError([&] { readSafetensors(p); }, {p, "__metadata__['a'] must be a string"});
  withHeader(header); // sanity: the original header still reads
  EXPECT_EQ(readSafetensors(p).tensors.size(), 1u);
}

// ---------------------------------------------------------------- atomic writes

TEST(AtomicFile, ReplacesAndLeavesNoTempFile) {
  ScratchDir dir;
  std::string p = dir.file("f.npy");
  writeNpy(p, sampleTensor("f", D::F32, {4}));
  writeNpy(p, sampleTensor("f", D::F64, {9}));
  EXPECT_EQ(readNpy(p).dtype, D::F64);
  EXPECT_EQ(listDir(dir.path), std::vector<std::string>{"f.npy"});
  expectError([&] { writeNpy(dir.file("no/such/dir/f.npy"), sampleTensor("f", D::F32, {4})); },
              {"no/such/dir/f.npy", "cannot create temporary file"});
  {
    AtomicFileWriter w(dir.file("g.bin"));
    w.write("abc", 3);
    // destroyed without commit: nothing appears
  }
  EXPECT_EQ(listDir(dir.path), std::vector<std::string>{"f.npy"});
}

// A writer killed with SIGKILL at an arbitrary moment leaves either the old complete
// file or the new complete file, never a torn one.
TEST(AtomicFile, SigkillNeverLeavesATornFile) {
  ScratchDir dir;
  std::string p = dir.file("ckpt.safetensors");
  std::vector<float> ones(1 << 20, 1.0f);
  writeSafetensors(p, {HostTensor::fromFloats("w", {1 << 20}, ones)});
  for (int trial = 0; trial < 8; ++trial) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      std::vector<float> v(1 << 20, static_cast<float>(trial + 2));
      HostTensor t = HostTensor::fromFloats("w", {1 << 20}, v);
      try {
        for (;;)
          writeSafetensors(p, {t});
      } catch (...) {
        _exit(1);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + 7 * trial));
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    SafetensorsFile f = readSafetensors(p); // must not throw
    std::vector<float> got = f.find("w")->toFloats();
    float first = got[0];
    EXPECT_TRUE(first == 1.0f || first == static_cast<float>(trial + 2) ||
                (first >= 2.0f && first < static_cast<float>(trial + 2)));
    for (float x : got)
      ASSERT_EQ(x, first) << "torn file after SIGKILL in trial " << trial;
  }
}

// The JSON reader serves calibration files, device descriptions, --fit and --select inputs as
// well as safetensors headers: its error names the file and byte, and says "header" only
// where the caller is reading one.
TEST(MiniJson, AParseErrorNamesTheFileAndTheByte) {
  std::string e = expectError([] { json::parse(R"({"plans": [)", "results.json"); },
                              {"results.json: invalid JSON at byte 11"});
  EXPECT_EQ(e.find("header"), std::string::npos) << e;
}

// A repeated key is ambiguous (which value did the writer mean?): an error naming the key and
// where it repeats, in any object, at any depth. Oracle: the byte, line and column counted by
// hand from the text.
TEST(MiniJson, ADuplicateKeyIsAnErrorNamingTheKeyAndPlace) {
  expectError([] { json::parse("{\"a\": 1, \"a\": 2}", "f.json"); },
              {"f.json: duplicate key \"a\" at byte 9 (line 1, column 10)"});
  expectError([] { json::parse("{\"plans\": [{\"plan\": \"x\",\n  \"plan\": \"y\"}]}", "r.json"); },
              {"r.json: duplicate key \"plan\" at byte 27 (line 2, column 3)"});
  // The same key in sibling objects, and in an object and its child, is no repeat.
  json::Value v = json::parse(R"({"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}]})", "ok.json");
  EXPECT_EQ(v.members.size(), 2u);
}

// A directory or a missing file is said to be one, not "invalid JSON at byte 0".
TEST(MiniJson, ParseFileNamesADirectoryOrAMissingFile) {
  ScratchDir dir;
  std::string e = expectError([&] { json::parseFile(dir.path); },
                              {dir.path + ": is a directory, expected a file"});
  EXPECT_EQ(e.find("invalid JSON"), std::string::npos) << e;
  expectError([&] { json::parseFile(dir.file("none.json")); },
              {dir.file("none.json") + ": cannot open: No such file or directory"});
  writeText(dir.file("ok.json"), R"({"k": [1, 2]})");
  EXPECT_EQ(json::parseFile(dir.file("ok.json")).members.at(0).second.items.size(), 2u);
}
