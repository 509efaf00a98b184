//===- NpyData.cpp --------------------------------------------------------===//
#include "runtime/data/NpyData.h"

#include "common/Error.h"
#include "runtime/io/Npy.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

namespace mantissa {

namespace {

int64_t product(const std::vector<int64_t> &s, size_t from = 0) {
  int64_t p = 1;
  for (size_t i = from; i < s.size(); ++i)
    p *= s[i];
  return p;
}

const char *numpyName(HostTensor::DType t) {
  switch (t) {
  case HostTensor::DType::F32:
    return "float32";
  case HostTensor::DType::F16:
    return "float16";
  case HostTensor::DType::BF16:
    return "bfloat16";
  case HostTensor::DType::I32:
    return "int32";
  case HostTensor::DType::I64:
    return "int64";
  case HostTensor::DType::F64:
    return "float64";
  case HostTensor::DType::U8:
    return "uint8";
  }
  return "?";
}

std::string expectedShape(const std::vector<int64_t> &per) {
  std::string s = "[N";
  for (int64_t d : per)
    s += "," + std::to_string(d);
  return s + "]";
}

/// Checks that `t` is [N, per...] exactly. The same number of elements in another shape is
/// refused, not reinterpreted: [N,8,8] read as [N,64] works by luck of the layout, and
/// channels-last images [N,H,W,C] read as [N,C,H,W] train on scrambled pixels.
void checkSamples(const HostTensor &t, const std::string &path, const std::vector<int64_t> &per,
                  const std::string &what) {
  bool ok = t.shape.size() == per.size() + 1 && std::equal(per.begin(), per.end(), t.shape.begin() + 1);
  if (ok)
    return;
  std::string hint;
  if (!t.shape.empty() && product(t.shape, 1) == product(per)) {
    std::string dims;
    for (int64_t d : per)
      dims += ", " + std::to_string(d);
    hint = "; if its elements are in the model's order, save a.reshape(" +
           std::to_string(t.shape[0]) + dims + ")";
  }
  throw Error(path + ": expected " + what + " of shape " + expectedShape(per) + " (N samples of " +
              shapeToString(per) + "), got " + numpyName(t.dtype) + " " + shapeToString(t.shape) +
              hint);
}

void checkFinite(const std::vector<float> &v, int64_t perSample, const std::string &path) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i]))
      throw Error(path + ": element " + std::to_string(i) + " (sample " +
                  std::to_string(static_cast<int64_t>(i) / perSample) + ") is " +
                  (std::isnan(v[i]) ? "NaN" : (v[i] > 0 ? "+inf" : "-inf")) +
                  "; clean the data before training");
  }
}

std::string formatValue(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

} // namespace

DataSplit loadNpyPair(const std::string &xPath, const std::string &yPath,
                      const std::vector<int64_t> &sampleShape,
                      const std::vector<int64_t> &labelShape, bool classification,
                      double heldOutFraction, int64_t numClasses) {
  if (!(heldOutFraction >= 0.0 && heldOutFraction < 1.0))
    throw Error("held-out fraction must be in [0, 1), got " + formatValue(heldOutFraction));
  if (classification && !labelShape.empty())
    throw Error(yPath +
                ": class labels are one integer per sample (label shape []), but "
                "the model asks for label shape " +
                shapeToString(labelShape));
  for (int64_t dim : sampleShape)
    if (dim < 1)
      throw Error(xPath + ": model sample shape " + shapeToString(sampleShape) +
                  " has a non-positive dimension");

  HostTensor xt = readNpy(xPath);
  checkSamples(xt, xPath, sampleShape, "inputs");
  int64_t n = xt.shape[0];
  if (n == 0)
    throw Error(xPath + ": holds no samples (shape " + shapeToString(xt.shape) + ")");
  HostTensor yt = readNpy(yPath);
  if (yt.shape.empty())
    throw Error(yPath + ": expected " +
                std::string(classification ? "labels of shape [N]"
                                           : "targets of shape " + expectedShape(labelShape)) +
                ", got a 0-d " + numpyName(yt.dtype) + " scalar");
  if (yt.shape[0] != n)
    throw Error(yPath + ": has " + std::to_string(yt.shape[0]) + " samples (shape " +
                shapeToString(yt.shape) + ") but " + xPath + " has " + std::to_string(n) +
                " (shape " + shapeToString(xt.shape) + "); they must match one to one");
  if (classification) {
    if (product(yt.shape, 1) != 1)
      throw Error(yPath +
                  ": expected class labels of shape [N] (one integer per sample), "
                  "got " +
                  std::string(numpyName(yt.dtype)) + " " + shapeToString(yt.shape));
  } else {
    checkSamples(yt, yPath, labelShape, "targets");
  }

  Dataset all;
  all.n = n;
  all.xShape = sampleShape;
  all.yShape = classification ? std::vector<int64_t>{} : labelShape;
  all.classification = classification;
  all.x = xt.toFloats();
  checkFinite(all.x, product(sampleShape), xPath);
  xt.bytes.clear();
  xt.bytes.shrink_to_fit();

  if (classification) {
    std::vector<double> labels = yt.toDoubles();
    double maxLabel = -1;
    for (size_t i = 0; i < labels.size(); ++i) {
      double v = labels[i];
      std::string at =
          yPath + ": element " + std::to_string(i) + " (sample " + std::to_string(i) + ")";
      if (!std::isfinite(v))
        throw Error(at + " is " + (std::isnan(v) ? "NaN" : "inf") +
                    "; class labels must be integers");
      if (v != std::floor(v))
        throw Error(at + " is " + formatValue(v) + ", not an integer class label");
      if (v < 0 || (numClasses > 0 && v >= static_cast<double>(numClasses)))
        throw Error(at + " is label " + formatValue(v) + ", out of range [0, " +
                    (numClasses > 0 ? std::to_string(numClasses) : std::string("inf")) + ")" +
                    (numClasses > 0 ? " for a " + std::to_string(numClasses) + "-class model"
                                    : std::string()));
      if (v >= 16777216.0)
        throw Error(at + " is label " + formatValue(v) + ", too large for a class index");
      maxLabel = std::max(maxLabel, v);
    }
    all.numClasses = numClasses > 0 ? numClasses : static_cast<int64_t>(maxLabel) + 1;
    all.y.assign(labels.begin(), labels.end());
  } else {
    all.y = yt.toFloats();
    checkFinite(all.y, product(labelShape), yPath);
  }

  int64_t held = static_cast<int64_t>(std::llround(static_cast<double>(n) * heldOutFraction));
  if (held >= n)
    throw Error(xPath + ": a held-out fraction of " + formatValue(heldOutFraction) + " of " +
                std::to_string(n) + " samples leaves nothing to train on");
  DataSplit s;
  if (held == 0) {
    s.train = std::move(all);
    s.heldOut = sliceRows(s.train, s.train.n, s.train.n);
  } else {
    s.train = sliceRows(all, 0, n - held);
    s.heldOut = sliceRows(all, n - held, n);
  }
  return s;
}

} // namespace mantissa
