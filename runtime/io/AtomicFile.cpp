//===- AtomicFile.cpp -----------------------------------------------------===//
#include "runtime/io/AtomicFile.h"

#include "common/Error.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mantissa {

namespace {
std::string errnoText() { return std::strerror(errno); }

std::string parentDir(const std::string &path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos)
    return ".";
  if (slash == 0)
    return "/";
  return path.substr(0, slash);
}

constexpr size_t kBufferSize = 1 << 20;
} // namespace

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)) {
  tmp_ = path_ + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw Error(path_ + ": cannot create temporary file " + tmp_ + ": " + errnoText() +
                " (check that the directory exists and is writable)");
  buf_.reserve(kBufferSize);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void AtomicFileWriter::writeRaw(const uint8_t *p, size_t left) {
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      throw Error(path_ + ": write to " + tmp_ + " failed: " + errnoText() + " (disk full?)");
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void AtomicFileWriter::flushBuffer() {
  writeRaw(buf_.data(), buf_.size());
  buf_.clear();
}

void AtomicFileWriter::write(const void *data, size_t size) {
  if (fd_ < 0)
    throw Error(path_ + ": write after commit");
  const uint8_t *p = static_cast<const uint8_t *>(data);
  written_ += size;
  if (buf_.size() + size <= kBufferSize) {
    buf_.insert(buf_.end(), p, p + size);
    return;
  }
  flushBuffer();
  if (size >= kBufferSize) {
    writeRaw(p, size); // large blocks go straight through
  } else {
    buf_.insert(buf_.end(), p, p + size);
  }
}

void AtomicFileWriter::commit() {
  if (fd_ < 0)
    throw Error(path_ + ": commit called twice");
  flushBuffer();
  if (::fsync(fd_) != 0)
    throw Error(path_ + ": fsync of " + tmp_ + " failed: " + errnoText());
  if (::close(fd_) != 0) {
    fd_ = -1;
    ::unlink(tmp_.c_str());
    throw Error(path_ + ": close of " + tmp_ + " failed: " + errnoText());
  }
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    std::string why = errnoText();
    ::unlink(tmp_.c_str());
    throw Error(path_ + ": cannot rename " + tmp_ + " over it: " + why);
  }
  int dfd = ::open(parentDir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) { // best effort: some file systems refuse fsync on directories
    ::fsync(dfd);
    ::close(dfd);
  }
}

void writeFileAtomic(const std::string &path, const void *data, size_t size) {
  AtomicFileWriter w(path);
  w.write(data, size);
  w.commit();
}

void checkOutputPath(const std::string &option, const std::string &path) {
  std::string dir = parentDir(path);
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    throw Error(option + " " + path + ": is a directory; name a file");
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw Error(option + " " + path + ": no folder " + dir + " to write it in");
}

std::vector<uint8_t> readFileBytes(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw Error(path + ": cannot open: " + errnoText());
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    std::string why = errnoText();
    ::close(fd);
    throw Error(path + ": cannot stat: " + why);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": is a directory, expected a file");
  }
  std::vector<uint8_t> out(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::read(fd, out.data() + got, out.size() - got);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      std::string why = errnoText();
      ::close(fd);
      throw Error(path + ": read failed: " + why);
    }
    if (n == 0)
      break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(got);
  return out;
}

} // namespace mantissa
