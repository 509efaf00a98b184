//===- Digits.h - the 8x8 handwritten digits, embedded --------------------===//
//
// The 1797 digits of Debian's python3-sklearn (sklearn/datasets/data/digits.csv.gz),
// embedded in the library at build time: no sklearn needed at run time.
// Pixels are 0..16 in the file and are scaled by 1/16 to [0, 1]; labels 0..9.
// Fixed split, in file order: train = rows 0..1436 (the first 1437),
// held-out = rows 1437..1796 (the last 360). No shuffling here; BatchOrder does it.
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/data/Dataset.h"

#include <cstdint>
#include <vector>

namespace mantissa {

constexpr int64_t kDigitsCount = 1797;
constexpr int64_t kDigitsTrainCount = 1437;
constexpr int64_t kDigitsHeldOutCount = 360;

/// sampleShape: [64] (for an MLP) or [1,8,8] (for a CNN, NCHW); anything else is an
/// Error. yShape is [], classification with 10 classes.
DataSplit loadDigits(const std::vector<int64_t> &sampleShape = {64});

} // namespace mantissa
