//===- AtomicFile.h - crash-safe file writing, whole-file reading ---------===//
//
// AtomicFileWriter writes to "<path>.tmp.<pid>"; commit() flushes, fsyncs, renames
// it over <path> and fsyncs the directory, so a SIGKILL at any moment leaves either
// the old file or the complete new one, never a torn file. A writer destroyed
// without commit() removes its temporary file.
//===----------------------------------------------------------------------===//
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mantissa {

class AtomicFileWriter {
public:
  explicit AtomicFileWriter(std::string path); // Error if the temp file can't be created
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter &) = delete;
  AtomicFileWriter &operator=(const AtomicFileWriter &) = delete;

  void write(const void *data, size_t size);
  void write(const std::vector<uint8_t> &data) { write(data.data(), data.size()); }
  void write(const std::string &data) { write(data.data(), data.size()); }
  uint64_t bytesWritten() const { return written_; }
  /// fsync, rename over the destination, fsync the directory.
  void commit();

  const std::string &path() const { return path_; }
  const std::string &tempPath() const { return tmp_; }

private:
  void flushBuffer();
  void writeRaw(const uint8_t *p, size_t size);
  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t written_ = 0;
  std::vector<uint8_t> buf_;
};

/// Writes `data` to `path` atomically (see AtomicFileWriter).
void writeFileAtomic(const std::string &path, const void *data, size_t size);

/// For a file written at the end of a long run (a summary, a policy, a plot): an Error now,
/// naming `option`, if `path` is a directory or its folder does not exist, rather than
/// after the run.
void checkOutputPath(const std::string &option, const std::string &path);

/// The whole file; Error naming the path if it cannot be opened or read.
std::vector<uint8_t> readFileBytes(const std::string &path);

} // namespace mantissa
