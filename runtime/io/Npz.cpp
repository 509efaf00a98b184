//===- Npz.cpp ------------------------------------------------------------===//
#include "runtime/io/Npz.h"

#include "common/Error.h"
#include "runtime/io/AtomicFile.h"
#include "runtime/io/Npy.h"

#include <zlib.h>

#include <algorithm>
#include <set>

namespace mantissa {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kEnd64Sig = 0x06064b50;
constexpr uint32_t kEnd64LocatorSig = 0x07064b50;
constexpr uint16_t kZip64ExtraId = 0x0001;
constexpr uint16_t kDosDate1980 = (0 << 9) | (1 << 5) | 1; // 1980-01-01, fixed

uint16_t rd16(const uint8_t *p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t rd32(const uint8_t *p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t rd64(const uint8_t *p) {
  return static_cast<uint64_t>(rd32(p)) | (static_cast<uint64_t>(rd32(p + 4)) << 32);
}

struct Out {
  std::string b;
  void u16(uint16_t v) {
    b += static_cast<char>(v & 0xFF);
    b += static_cast<char>(v >> 8);
  }
  void u32(uint32_t v) {
    for (int k = 0; k < 4; ++k)
      b += static_cast<char>((v >> (8 * k)) & 0xFF);
  }
  void u64(uint64_t v) {
    for (int k = 0; k < 8; ++k)
      b += static_cast<char>((v >> (8 * k)) & 0xFF);
  }
};

uint32_t crcOf(uint32_t crc, const void *data, size_t size) {
  const Bytef *p = static_cast<const Bytef *>(data);
  while (size > 0) { // crc32 takes a uInt length
    uInt chunk = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    crc = static_cast<uint32_t>(crc32(crc, p, chunk));
    p += chunk;
    size -= chunk;
  }
  return crc;
}

std::vector<uint8_t> inflateRaw(const uint8_t *src, uint64_t csize, uint64_t usize,
                                const std::string &where) {
  std::vector<uint8_t> out(static_cast<size_t>(usize));
  z_stream zs{};
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK)
    throw Error(where + ": zlib inflateInit2 failed");
  uint64_t inLeft = csize, outLeft = usize;
  zs.next_in = const_cast<Bytef *>(src);
  zs.next_out = out.data();
  int rc;
  while (true) {
    if (zs.avail_in == 0 && inLeft > 0) {
      zs.avail_in = static_cast<uInt>(std::min<uint64_t>(inLeft, 1u << 30));
      inLeft -= zs.avail_in;
    }
    if (zs.avail_out == 0 && outLeft > 0) {
      zs.avail_out = static_cast<uInt>(std::min<uint64_t>(outLeft, 1u << 30));
      outLeft -= zs.avail_out;
    }
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc == Z_OK)
      continue;
    if (rc == Z_BUF_ERROR &&
        ((zs.avail_in == 0 && inLeft > 0) || (zs.avail_out == 0 && outLeft > 0)))
      continue;
    break;
  }
  uint64_t produced = zs.total_out;
  std::string msg = zs.msg ? zs.msg : "";
  inflateEnd(&zs);
  if (rc != Z_STREAM_END)
    throw Error(where + ": corrupt deflate data (" +
                (rc == Z_BUF_ERROR
                     ? std::string("the stream ends early or inflates past the "
                                   "size recorded in the zip directory")
                     : "zlib: " + (msg.empty() ? "error " + std::to_string(rc) : msg)) +
                "; file truncated or corrupt)");
  if (produced != usize)
    throw Error(where + ": inflated to " + std::to_string(produced) +
                " bytes but the zip directory records " + std::to_string(usize));
  return out;
}

} // namespace

std::vector<HostTensor> readNpz(const std::string &path) {
  std::vector<uint8_t> file = readFileBytes(path);
  const uint8_t *d = file.data();
  size_t size = file.size();
  if (size < 22)
    throw Error(path + ": not a zip/.npz archive (" + std::to_string(size) +
                " bytes, too short; truncated?)");
  // The end-of-central-directory record: scan back over a possible comment.
  size_t eocd = std::string::npos;
  size_t lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
  for (size_t p = size - 22 + 1; p-- > lowest;) {
    if (rd32(d + p) == kEndSig && p + 22 + rd16(d + p + 20) == size) {
      eocd = p;
      break;
    }
  }
  if (eocd == std::string::npos)
    throw Error(path + ": not a zip/.npz archive or truncated (no end-of-central-directory "
                       "record)");
  uint64_t entries = rd16(d + eocd + 10);
  uint64_t cdSize = rd32(d + eocd + 12);
  uint64_t cdOffset = rd32(d + eocd + 16);
  if (rd16(d + eocd + 4) != 0 || rd16(d + eocd + 6) != 0)
    throw Error(path + ": multi-disk zip archives are not supported");
  if (eocd >= 20 && rd32(d + eocd - 20) == kEnd64LocatorSig) {
    uint64_t z64 = rd64(d + eocd - 20 + 8);
    if (z64 + 56 > eocd - 20 || rd32(d + z64) != kEnd64Sig)
      throw Error(path + ": corrupt zip64 end-of-central-directory record");
    entries = rd64(d + z64 + 32);
    cdSize = rd64(d + z64 + 40);
    cdOffset = rd64(d + z64 + 48);
  }
  if (cdOffset > eocd || cdSize > eocd - cdOffset)
    throw Error(path + ": corrupt zip central directory (offset " + std::to_string(cdOffset) +
                ", size " + std::to_string(cdSize) + " in a " + std::to_string(size) +
                "-byte file; truncated?)");

  std::vector<HostTensor> out;
  std::set<std::string> seen;
  size_t p = static_cast<size_t>(cdOffset);
  size_t cdEnd = static_cast<size_t>(cdOffset + cdSize);
  for (uint64_t k = 0; k < entries; ++k) {
    if (p + 46 > cdEnd || rd32(d + p) != kCentralSig)
      throw Error(path + ": corrupt zip central directory at entry " + std::to_string(k));
    uint16_t flags = rd16(d + p + 8);
    uint16_t method = rd16(d + p + 10);
    uint32_t crc = rd32(d + p + 16);
    uint64_t csize = rd32(d + p + 20);
    uint64_t usize = rd32(d + p + 24);
    uint16_t nameLen = rd16(d + p + 28), extraLen = rd16(d + p + 30), commentLen = rd16(d + p + 32);
    uint64_t local = rd32(d + p + 42);
    if (p + 46 + nameLen + extraLen + commentLen > cdEnd)
      throw Error(path + ": corrupt zip central directory at entry " + std::to_string(k));
    std::string name(reinterpret_cast<const char *>(d + p + 46), nameLen);
    std::string where = path + ": member '" + name + "'";
    // zip64 extra: the fields whose 32-bit value is 0xFFFFFFFF, in this order.
    const uint8_t *e = d + p + 46 + nameLen, *eEnd = e + extraLen;
    while (e + 4 <= eEnd) {
      uint16_t id = rd16(e), len = rd16(e + 2);
      if (e + 4 + len > eEnd)
        break;
      if (id == kZip64ExtraId) {
        const uint8_t *f = e + 4, *fEnd = e + 4 + len;
        auto take = [&](uint64_t &v) {
          if (v != 0xFFFFFFFFu)
            return;
          if (f + 8 > fEnd)
            throw Error(where + ": corrupt zip64 extra field");
          v = rd64(f);
          f += 8;
        };
        take(usize);
        take(csize);
        take(local);
      }
      e += 4 + len;
    }
    p += 46 + nameLen + extraLen + commentLen;

    if (!name.empty() && name.back() == '/')
      continue; // a directory entry
    if (flags & 1)
      throw Error(where + ": encrypted zip members are not supported");
    if (local + 30 > size || rd32(d + local) != kLocalSig)
      throw Error(where + ": corrupt zip local header at offset " + std::to_string(local));
    uint64_t dataStart = local + 30 + rd16(d + local + 26) + rd16(d + local + 28);
    if (dataStart > size || csize > size - dataStart)
      throw Error(where + ": data (" + std::to_string(csize) + " bytes at offset " +
                  std::to_string(dataStart) + ") runs past the end of the " + std::to_string(size) +
                  "-byte file (truncated?)");
    std::vector<uint8_t> member;
    if (method == 0) {
      if (csize != usize)
        throw Error(where + ": stored member with different compressed (" + std::to_string(csize) +
                    ") and uncompressed (" + std::to_string(usize) + ") sizes");
      member.assign(d + dataStart, d + dataStart + csize);
    } else if (method == 8) {
      member = inflateRaw(d + dataStart, csize, usize, where);
    } else {
      throw Error(where + ": zip compression method " + std::to_string(method) +
                  " is not supported (only stored and deflate, as numpy.savez and "
                  "numpy.savez_compressed write)");
    }
    uint32_t got = crcOf(0, member.data(), member.size());
    if (got != crc)
      throw Error(where + ": CRC-32 mismatch (file corrupt)");
    if (name.size() < 4 || name.compare(name.size() - 4, 4, ".npy") != 0)
      throw Error(where + ": not a .npy member; an .npz holds only .npy arrays");
    HostTensor t = parseNpy(member.data(), member.size(), path + ":" + name);
    t.name = name.substr(0, name.size() - 4);
    if (!seen.insert(t.name).second)
      throw Error(where + ": appears twice in the archive");
    out.push_back(std::move(t));
  }
  return out;
}

void writeNpz(const std::string &path, const std::vector<HostTensor> &tensors) {
  std::set<std::string> names;
  for (const HostTensor &t : tensors) {
    if (t.name.empty())
      throw Error(path + ": every tensor written to .npz needs a name");
    if (!names.insert(t.name).second)
      throw Error(path + ": two tensors are named '" + t.name + "'");
  }
  struct Entry {
    std::string name;
    uint32_t crc;
    uint64_t size, offset;
  };
  std::vector<Entry> entries;
  AtomicFileWriter w(path);
  for (const HostTensor &t : tensors) {
    std::string member = t.name + ".npy";
    std::string pre = npyPreamble(t, path + ":" + member);
    uint32_t crc = crcOf(0, pre.data(), pre.size());
    crc = crcOf(crc, t.bytes.data(), t.bytes.size());
    uint64_t usize = pre.size() + t.bytes.size();
    Entry en{member, crc, usize, w.bytesWritten()};
    Out h;
    h.u32(kLocalSig);
    h.u16(45); // version needed: zip64
    h.u16(0);  // flags
    h.u16(0);  // stored
    h.u16(0);  // time
    h.u16(kDosDate1980);
    h.u32(crc);
    h.u32(0xFFFFFFFFu); // sizes live in the zip64 extra
    h.u32(0xFFFFFFFFu);
    h.u16(static_cast<uint16_t>(member.size()));
    h.u16(20);
    h.b += member;
    h.u16(kZip64ExtraId);
    h.u16(16);
    h.u64(usize);
    h.u64(usize);
    w.write(h.b);
    w.write(pre);
    w.write(t.bytes);
    entries.push_back(std::move(en));
  }
  uint64_t cdOffset = w.bytesWritten();
  Out cd;
  for (const Entry &en : entries) {
    cd.u32(kCentralSig);
    cd.u16((3 << 8) | 45); // made by: unix, 4.5
    cd.u16(45);
    cd.u16(0);
    cd.u16(0);
    cd.u16(0);
    cd.u16(kDosDate1980);
    cd.u32(en.crc);
    cd.u32(0xFFFFFFFFu);
    cd.u32(0xFFFFFFFFu);
    cd.u16(static_cast<uint16_t>(en.name.size()));
    cd.u16(28);          // extra length
    cd.u16(0);           // comment
    cd.u16(0);           // disk
    cd.u16(0);           // internal attributes
    cd.u32(0644u << 16); // external attributes: -rw-r--r--
    cd.u32(0xFFFFFFFFu); // offset lives in the zip64 extra
    cd.b += en.name;
    cd.u16(kZip64ExtraId);
    cd.u16(24);
    cd.u64(en.size);
    cd.u64(en.size);
    cd.u64(en.offset);
  }
  uint64_t cdSize = cd.b.size();
  uint64_t z64 = cdOffset + cdSize;
  cd.u32(kEnd64Sig);
  cd.u64(44);
  cd.u16((3 << 8) | 45);
  cd.u16(45);
  cd.u32(0);
  cd.u32(0);
  cd.u64(entries.size());
  cd.u64(entries.size());
  cd.u64(cdSize);
  cd.u64(cdOffset);
  cd.u32(kEnd64LocatorSig);
  cd.u32(0);
  cd.u64(z64);
  cd.u32(1);
  cd.u32(kEndSig);
  cd.u16(0);
  cd.u16(0);
  uint16_t n16 = static_cast<uint16_t>(std::min<size_t>(entries.size(), 0xFFFF));
  cd.u16(n16);
  cd.u16(n16);
  cd.u32(static_cast<uint32_t>(std::min<uint64_t>(cdSize, 0xFFFFFFFFu)));
  cd.u32(static_cast<uint32_t>(std::min<uint64_t>(cdOffset, 0xFFFFFFFFu)));
  cd.u16(0);
  w.write(cd.b);
  w.commit();
}

} // namespace mantissa
