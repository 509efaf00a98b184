//===- Digits.cpp ---------------------------------------------------------===//
#include "runtime/data/Digits.h"

#include "common/Error.h"

#include <cstddef>

namespace mantissa {
namespace digitsdata {
// Generated at build time by mantissa-embed-digits (DigitsData.cpp).
extern const unsigned char kRows[];
extern const std::size_t kNumRows;
} // namespace digitsdata

namespace {
/// The rows r of the file with (r % kDigitsHeldOutEvery == kDigitsHeldOutEvery - 1) ==
/// heldOut, in file order.
Dataset digitsRows(bool heldOut, const std::vector<int64_t> &shape) {
  Dataset d;
  d.xShape = shape;
  d.yShape = {};
  d.n = heldOut ? kDigitsHeldOutCount : kDigitsTrainCount;
  d.classification = true;
  d.numClasses = 10;
  d.x.reserve(static_cast<size_t>(d.n * 64));
  d.y.reserve(static_cast<size_t>(d.n));
  for (int64_t r = 0; r < kDigitsCount; ++r) {
    if ((r % kDigitsHeldOutEvery == kDigitsHeldOutEvery - 1) != heldOut)
      continue;
    const unsigned char *row = digitsdata::kRows + r * 65;
    for (int k = 0; k < 64; ++k)
      d.x.push_back(static_cast<float>(row[k]) / 16.0f);
    d.y.push_back(static_cast<float>(row[64]));
  }
  return d;
}

std::string shapeText(const std::vector<int64_t> &s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); ++i)
    t += (i ? "," : "") + std::to_string(s[i]);
  return t + "]";
}
} // namespace

DataSplit loadDigits(const std::vector<int64_t> &sampleShape) {
  bool flat = sampleShape == std::vector<int64_t>{64};
  bool image = sampleShape == std::vector<int64_t>{1, 8, 8};
  if (!flat && !image)
    throw Error("digits: sample shape " + shapeText(sampleShape) +
                " is not supported; the model input must be [64] (MLP) or [1,8,8] (CNN) "
                "per sample");
  if (static_cast<int64_t>(digitsdata::kNumRows) != kDigitsCount)
    throw Error("digits: embedded data has " + std::to_string(digitsdata::kNumRows) +
                " rows, expected 1797 (rebuild)");
  DataSplit s;
  s.train = digitsRows(false, sampleShape);
  s.heldOut = digitsRows(true, sampleShape);
  return s;
}

} // namespace mantissa
