//===- ScratchMap.h - where each step's scratch lies -----------------------===//
//
// The CUDA executor's scratch, as plain C++ (no CUDA), so that it is tested on any
// machine. A step's scratch (convolution copies and partials, batch-norm and reduction
// partials, GEMM conversions) lives only while that step runs. Each step lays its
// scratch out in a ScratchLayout, a range of its own in a virtual space of offsets; a
// launch looks its offsets up when it runs (resolve), so a range may be placed, or
// moved, after the launch was prepared: into the temp arena's bytes free at its step
// (Range::arenaOffset, chosen by the executor from LoadedPlan::freeArenaOffset), or into
// the buffer that the steps which found no room there share (they run one after another).
//===----------------------------------------------------------------------===//
#pragma once

#include "common/Error.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

namespace mantissa::cuda {

/// The scratch of one step (or of one way to run a convolution).
struct ScratchLayout {
  size_t begin = 0;
  size_t size = 0;
  /// A virtual offset of `bytes` bytes, 256-byte aligned within the layout.
  size_t take(size_t bytes) {
    size_t off = begin + size;
    size += (bytes + 255) / 256 * 256;
    return off;
  }
};

class ScratchMap {
public:
  struct Range {
    size_t begin = 0, size = 0;
    int function = -1;        // its step's function index (-1: never in the arena)
    int64_t step = -1;        // ... and step
    int64_t arenaOffset = -1; // >= 0: in the arena at this offset; else in the buffer
    bool used = true;         // false: a way to run a convolution that was not chosen
  };

  /// A layout whose range starts after every range so far.
  ScratchLayout open() const { return ScratchLayout{cursor_, 0}; }

  /// Records layout `sl`, opened last, in the buffer; returns its range's index, or -1 for
  /// an empty layout. A layout that was opened and never closed (its step failed to
  /// prepare) leaves no range: the next one starts where it did.
  int close(const ScratchLayout &sl, int function, int64_t step) {
    if (sl.size == 0)
      return -1;
    if (sl.begin != cursor_)
      throw Error("internal error: scratch layouts closed out of order");
    ranges_.push_back({sl.begin, sl.size, function, step, -1, true});
    cursor_ = sl.begin + sl.size;
    return int(ranges_.size() - 1);
  }

  Range &operator[](size_t r) { return ranges_.at(r); }
  const std::vector<Range> &ranges() const { return ranges_; }

  /// Where virtual offset `offset` lies now: in the arena (at `arena`) or in the buffer
  /// (at `buffer`), as its range is placed.
  char *resolve(size_t offset, char *arena, char *buffer) const {
    // The range whose begin is the last at or before offset (ranges are by begin).
    auto it = std::upper_bound(ranges_.begin(), ranges_.end(), offset,
                               [](size_t v, const Range &r) { return v < r.begin; });
    if (it == ranges_.begin() || offset >= std::prev(it)->begin + std::prev(it)->size)
      throw Error("internal error: scratch offset " + std::to_string(offset) +
                  " belongs to no step's scratch");
    const Range &r = *std::prev(it);
    return (r.arenaOffset >= 0 ? arena + r.arenaOffset : buffer) + (offset - r.begin);
  }

  /// The most bytes a range in the buffer takes: what the buffer must hold for the used
  /// ranges (or for all, while every way to run a convolution is still timed).
  size_t bufferBytes(bool alsoUnused = false) const {
    size_t most = 0;
    for (const Range &r : ranges_)
      if ((r.used || alsoUnused) && r.arenaOffset < 0)
        most = std::max(most, r.size);
    return most;
  }

private:
  std::vector<Range> ranges_;
  size_t cursor_ = 0;
};

} // namespace mantissa::cuda
