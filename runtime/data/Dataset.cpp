//===- Dataset.cpp --------------------------------------------------------===//
#include "runtime/data/Dataset.h"

#include "common/Error.h"
#include "runtime/data/Random.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>

namespace mantissa {

namespace {
int64_t product(const std::vector<int64_t> &s) {
  int64_t p = 1;
  for (int64_t d : s)
    p *= d;
  return p;
}
} // namespace

int64_t Dataset::xSampleSize() const { return product(xShape); }
int64_t Dataset::ySampleSize() const { return product(yShape); }

Dataset sliceRows(const Dataset &d, int64_t begin, int64_t end) {
  if (begin < 0 || end < begin || end > d.n)
    throw Error("data: row slice [" + std::to_string(begin) + "," + std::to_string(end) +
                ") is outside the " + std::to_string(d.n) + " samples");
  Dataset out;
  out.xShape = d.xShape;
  out.yShape = d.yShape;
  out.classification = d.classification;
  out.numClasses = d.numClasses;
  out.n = end - begin;
  int64_t xs = d.xSampleSize(), ys = d.ySampleSize();
  out.x.assign(d.x.begin() + begin * xs, d.x.begin() + end * xs);
  out.y.assign(d.y.begin() + begin * ys, d.y.begin() + end * ys);
  return out;
}

BatchOrder::BatchOrder(int64_t n, int64_t batch, bool shuffle, uint64_t seed)
    : n_(n), batch_(batch), steps_(0), shuffle_(shuffle), seed_(seed) {
  if (batch < 1)
    throw Error("batch size must be at least 1, got " + std::to_string(batch));
  if (n < batch)
    throw Error("the training set has " + std::to_string(n) + " samples, fewer than one batch of " +
                std::to_string(batch) +
                " (partial batches are dropped); use a smaller --batch or more data");
  steps_ = n / batch;
}

std::vector<int64_t> BatchOrder::epochPermutation(int64_t epoch) const {
  std::vector<int64_t> perm(static_cast<size_t>(n_));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  if (!shuffle_)
    return perm;
  Xoshiro256 rng(mixKeys(seed_, 0x53485546464C45ull /* "SHUFFLE" */, static_cast<uint64_t>(epoch)));
  for (int64_t i = n_ - 1; i > 0; --i) {
    int64_t j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i) + 1));
    std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
  }
  return perm;
}

std::vector<int64_t> BatchOrder::rows(int64_t step) const {
  if (step < 0)
    throw Error("batch order: step " + std::to_string(step) + " is negative");
  int64_t epoch = step / steps_, k = step % steps_;
  std::vector<int64_t> out(static_cast<size_t>(batch_));
  if (!shuffle_) {
    std::iota(out.begin(), out.end(), k * batch_);
    return out;
  }
  if (epoch != cachedEpoch_) {
    cachedPerm_ = epochPermutation(epoch);
    cachedEpoch_ = epoch;
  }
  std::copy(cachedPerm_.begin() + k * batch_, cachedPerm_.begin() + (k + 1) * batch_, out.begin());
  return out;
}

void gather(const Dataset &d, const std::vector<int64_t> &rows, float *xOut, float *yOut) {
  int64_t xs = d.xSampleSize(), ys = d.ySampleSize();
  for (size_t i = 0; i < rows.size(); ++i) {
    int64_t r = rows[i];
    if (r < 0 || r >= d.n)
      throw Error("data: row " + std::to_string(r) + " is outside the " + std::to_string(d.n) +
                  " samples");
    if (xOut)
      std::memcpy(xOut + i * xs, d.x.data() + r * xs, sizeof(float) * xs);
    if (yOut)
      std::memcpy(yOut + i * ys, d.y.data() + r * ys, sizeof(float) * ys);
  }
}

} // namespace mantissa
