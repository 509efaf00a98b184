//===- Digits.h - the 8x8 handwritten digits, embedded --------------------===//
//
// The 1797 digits of Debian's python3-sklearn (sklearn/datasets/data/digits.csv.gz),
// embedded in the library at build time: no sklearn needed at run time.
// Pixels are 0..16 in the file and are scaled by 1/16 to [0, 1]; labels 0..9.
// Fixed split: held-out = the rows whose index (in file order) is 4 mod 5 (359 rows),
// train = the other 1438, both in file order. No shuffling here; BatchOrder does it.
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/data/Dataset.h"

#include <cstdint>
#include <vector>

namespace mantissa {

constexpr int64_t kDigitsCount = 1797;
/// Every fifth row (row index % 5 == 4, in file order) is held out; the others train.
/// The csv is ordered by writer, so an interleaved split puts every writer on both
/// sides (a split by position would hold out only the last writers, a harder task
/// than the one the model is meant to show).
constexpr int64_t kDigitsHeldOutEvery = 5;
constexpr int64_t kDigitsHeldOutCount = kDigitsCount / kDigitsHeldOutEvery;      // 359
constexpr int64_t kDigitsTrainCount = kDigitsCount - kDigitsHeldOutCount;        // 1438

/// sampleShape: [64] (for an MLP) or [1,8,8] (for a CNN, NCHW); anything else is an
/// Error. yShape is [], classification with 10 classes.
DataSplit loadDigits(const std::vector<int64_t> &sampleShape = {64});

} // namespace mantissa
