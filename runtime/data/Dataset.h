//===- Dataset.h - in-memory training data, splits and batch order --------===//
//
// A Dataset holds n samples as flat float arrays, sample-major:
//   x: n * prod(xShape) floats, y: n * prod(yShape) floats.
// For classification yShape is [] and y holds the class index (0..numClasses-1) as
// a float. BatchOrder says which rows make up the batch of every global step, as a
// pure function of (n, batch, shuffle, seed, step), so resuming at step s
// reproduces exactly the batches an uninterrupted run would have seen.
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <vector>

namespace mantissa {

struct Dataset {
  std::vector<float> x;
  std::vector<float> y;
  std::vector<int64_t> xShape; // per sample
  std::vector<int64_t> yShape; // per sample; [] for class labels
  int64_t n = 0;
  bool classification = false;
  int64_t numClasses = 0; // 0 unless classification

  int64_t xSampleSize() const; // prod(xShape)
  int64_t ySampleSize() const; // prod(yShape) (1 for [])
};

struct DataSplit {
  Dataset train, heldOut;
};

/// Rows [begin, end) of `d` as a new Dataset (same shapes and class count).
Dataset sliceRows(const Dataset &d, int64_t begin, int64_t end);

class BatchOrder {
public:
  /// Error if batch < 1 or n < batch (a partial batch is always dropped, so an epoch
  /// needs at least one full batch).
  BatchOrder(int64_t n, int64_t batch, bool shuffle, uint64_t seed);

  /// floor(n / batch).
  int64_t stepsPerEpoch() const { return steps_; }
  int64_t batchSize() const { return batch_; }

  /// The `batch` row indices of global step `step` (>= 0): epoch e = step /
  /// stepsPerEpoch, k = step % stepsPerEpoch. Without shuffle rows k*B..(k+1)*B-1;
  /// with shuffle the same slice of epochPermutation(e).
  std::vector<int64_t> rows(int64_t step) const;

  /// The row order of epoch `epoch`: identity without shuffle; with shuffle a
  /// Fisher-Yates permutation drawn from xoshiro256** seeded by splitmix64 of
  /// (seed, epoch) — the same on every platform and standard library.
  std::vector<int64_t> epochPermutation(int64_t epoch) const;

private:
  int64_t n_, batch_, steps_;
  bool shuffle_;
  uint64_t seed_;
  // The last epoch's permutation, cached (rows() is not thread-safe).
  mutable int64_t cachedEpoch_ = -1;
  mutable std::vector<int64_t> cachedPerm_;
};

/// Copies the samples `rows` of `d` into xOut (rows.size() * xSampleSize floats) and
/// yOut (rows.size() * ySampleSize floats); either pointer may be null to skip it.
/// Error if a row is out of range.
void gather(const Dataset &d, const std::vector<int64_t> &rows, float *xOut, float *yOut);

} // namespace mantissa
