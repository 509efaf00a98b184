//===- NpyData.h - a user data set from a pair of .npy files --------------===//
#pragma once

#include "runtime/data/Dataset.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mantissa {

/// Loads inputs from `xPath` (shape [N, ...]) and targets from `yPath`.
///
///  * x must hold N samples of sampleShape: shape [N, sampleShape...] exactly (the same
///    number of elements in another shape is an error, not a reshape). Any numeric
///    dtype; converted to float.
///  * classification: labelShape must be [] and y [N] (or [N,1]) of integer values
///    (integer dtype, or float holding integers) in [0, numClasses); numClasses 0
///    means max(label) + 1.
///    regression: y [N, labelShape...] exactly (as x).
///  * Errors (mantissa::Error, naming the file): shape mismatch (expected vs got),
///    different N in x and y, a NaN or inf ("x.npy: element 1234 (sample 19) is NaN"),
///    a label out of range or not an integer.
///  * heldOutFraction in [0, 1): the last round(N * fraction) samples (file order)
///    form heldOut; 0 leaves heldOut empty.
DataSplit loadNpyPair(const std::string &xPath, const std::string &yPath,
                      const std::vector<int64_t> &sampleShape,
                      const std::vector<int64_t> &labelShape, bool classification,
                      double heldOutFraction = 0.0, int64_t numClasses = 0);

} // namespace mantissa
