// Unit tests for runtime/data: digits (against sklearn), the nowcast generator,
// .npy pairs, batch order and gather.
#include "common/Error.h"
#include "runtime/data/Dataset.h"
#include "runtime/data/Digits.h"
#include "runtime/data/Nowcast.h"
#include "runtime/data/NpyData.h"
#include "runtime/io/Npy.h"
#include "test/unit/io/TestUtil.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

using namespace mantissa;
using namespace mantissa::testutil;
using D = HostTensor::DType;

// ---------------------------------------------------------------- digits

TEST(Digits, SplitSizesShapesAndLabels) {
  DataSplit s = loadDigits({64});
  EXPECT_EQ(s.train.n, 1438);
  EXPECT_EQ(s.heldOut.n, 359);
  for (const Dataset *d : {&s.train, &s.heldOut}) {
    EXPECT_EQ(d->xShape, std::vector<int64_t>{64});
    EXPECT_TRUE(d->yShape.empty());
    EXPECT_TRUE(d->classification);
    EXPECT_EQ(d->numClasses, 10);
    EXPECT_EQ(d->x.size(), static_cast<size_t>(d->n * 64));
    EXPECT_EQ(d->y.size(), static_cast<size_t>(d->n));
    for (float v : d->x)
      ASSERT_TRUE(v >= 0.0f && v <= 1.0f && std::fmod(v * 16.0f, 1.0f) == 0.0f);
    std::vector<int> count(10);
    for (float v : d->y) {
      ASSERT_TRUE(v >= 0 && v <= 9 && v == std::floor(v));
      ++count[static_cast<int>(v)];
    }
    for (int c : count)
      EXPECT_GT(c, 20); // every class present in both parts
  }
  // Known values from digits.csv.gz (row r, pixel k): file order, pixels / 16.
  EXPECT_EQ(s.train.y[0], 0.0f);
  EXPECT_EQ(s.train.y[1], 1.0f);
  EXPECT_EQ(s.train.y[2], 2.0f);
  EXPECT_EQ(s.train.x[2], 5.0f / 16);
  EXPECT_EQ(s.train.x[3], 13.0f / 16);
  EXPECT_EQ(s.train.y[1437], 8.0f); // row 1796 (rows 4, 9, ... are held out)
  EXPECT_EQ(s.train.x[1437 * 64 + 4], 8.0f / 16);
  EXPECT_EQ(s.heldOut.y[0], 4.0f); // row 4
  EXPECT_EQ(s.heldOut.y[1], 9.0f); // row 9
  EXPECT_EQ(s.heldOut.y[358], 8.0f); // row 1794, the last held out
  EXPECT_EQ(s.heldOut.x[358 * 64 + 2], 1.0f / 16);
}

TEST(Digits, ImageShapeAndBadShapes) {
  DataSplit flat = loadDigits({64});
  DataSplit img = loadDigits({1, 8, 8});
  EXPECT_EQ(img.train.xShape, (std::vector<int64_t>{1, 8, 8}));
  EXPECT_EQ(img.train.x, flat.train.x);
  EXPECT_EQ(img.heldOut.y, flat.heldOut.y);
  expectError([] { loadDigits({8, 8}); }, {"digits", "[8,8]", "[64]", "[1,8,8]"});
  expectError([] { loadDigits({784}); }, {"digits", "[784]"});
}

TEST(Digits, MatchesSklearnLoadDigits) {
  MANTISSA_REQUIRE_PYTHON("numpy sklearn");
  ScratchDir dir;
  ASSERT_EQ(runPython(dir, R"PY(
import numpy as np
from sklearn.datasets import load_digits
d = load_digits()
held = np.arange(len(d.target)) % 5 == 4  # the documented split, train first then held-out
order = np.concatenate([np.nonzero(~held)[0], np.nonzero(held)[0]])
np.save('x.npy', d.data[order].astype('<f4') / 16)
np.save('y.npy', d.target[order].astype('<i8'))
)PY"),
            0);
  std::vector<float> x = readNpy(dir.file("x.npy")).toFloats();
  std::vector<float> y = readNpy(dir.file("y.npy")).toFloats();
  ASSERT_EQ(y.size(), 1797u);
  DataSplit s = loadDigits({64});
  std::vector<float> allX = s.train.x, allY = s.train.y;
  allX.insert(allX.end(), s.heldOut.x.begin(), s.heldOut.x.end());
  allY.insert(allY.end(), s.heldOut.y.begin(), s.heldOut.y.end());
  EXPECT_EQ(allX, x);
  EXPECT_EQ(allY, y);
}

// ---------------------------------------------------------------- nowcast

namespace {
// Centre of mass (x, y) of one H x W frame; false if the frame is empty.
bool centreOfMass(const float *f, int64_t H, int64_t W, double &cx, double &cy) {
  double m = 0, sx = 0, sy = 0;
  for (int64_t i = 0; i < H; ++i)
    for (int64_t j = 0; j < W; ++j) {
      double v = f[i * W + j];
      m += v;
      sx += v * j;
      sy += v * i;
    }
  if (m <= 1e-6)
    return false;
  cx = sx / m;
  cy = sy / m;
  return true;
}
} // namespace

TEST(Nowcast, ShapesRangeAndDeterminism) {
  Dataset a = makeNowcast(6, 32, 40, 1234);
  EXPECT_EQ(a.n, 6);
  EXPECT_EQ(a.xShape, (std::vector<int64_t>{13, 32, 40}));
  EXPECT_EQ(a.yShape, (std::vector<int64_t>{12, 32, 40}));
  EXPECT_FALSE(a.classification);
  EXPECT_EQ(a.x.size(), 6u * 13 * 32 * 40);
  EXPECT_EQ(a.y.size(), 6u * 12 * 32 * 40);
  float mx = 0;
  for (const std::vector<float> *v : {&a.x, &a.y})
    for (float f : *v) {
      ASSERT_TRUE(f >= 0.0f && std::isfinite(f));
      mx = std::max(mx, f);
    }
  EXPECT_LE(mx, 1.05f);
  EXPECT_GT(mx, 0.2f); // there is rain

  Dataset b = makeNowcast(6, 32, 40, 1234);
  EXPECT_EQ(a.x, b.x);
  EXPECT_EQ(a.y, b.y);
  Dataset c = makeNowcast(6, 32, 40, 1235);
  EXPECT_NE(a.x, c.x);
  // Sample i depends only on (seed, i): a shorter call is a prefix.
  Dataset p = makeNowcast(2, 32, 40, 1234);
  EXPECT_TRUE(std::equal(p.x.begin(), p.x.end(), a.x.begin()));
  EXPECT_TRUE(std::equal(p.y.begin(), p.y.end(), a.y.begin()));

  DataSplit s = loadNowcast(16, 16, 3, 2, 99);
  EXPECT_EQ(s.train.n, 3);
  EXPECT_EQ(s.heldOut.n, 2);
  EXPECT_FALSE(std::equal(s.heldOut.x.begin(), s.heldOut.x.end(), s.train.x.begin()));

  expectError([] { makeNowcast(1, 2, 32, 1); }, {"nowcast", "2x32"});
  expectError([] { makeNowcast(-1, 32, 32, 1); }, {"nowcast", "negative"});
}

TEST(Nowcast, CellsMoveAndPersistenceIsImperfect) {
  const int64_t H = 48, W = 48;
  Dataset d = makeNowcast(20, H, W, 7);
  double total = 0;
  int count = 0;
  for (int64_t i = 0; i < d.n; ++i) {
    // Frames 0..24 of sample i, inputs then targets.
    std::vector<const float *> frames;
    for (int t = 0; t < 13; ++t)
      frames.push_back(d.x.data() + (i * 13 + t) * H * W);
    for (int t = 0; t < 12; ++t)
      frames.push_back(d.y.data() + (i * 12 + t) * H * W);
    for (int t = 0; t + 1 < 25; ++t) {
      double x0, y0, x1, y1;
      if (centreOfMass(frames[t], H, W, x0, y0) && centreOfMass(frames[t + 1], H, W, x1, y1)) {
        total += std::hypot(x1 - x0, y1 - y0);
        ++count;
      }
    }
  }
  ASSERT_GT(count, 200);
  double meanShift = total / count;
  EXPECT_GT(meanShift, 0.3) << "rain barely moves between frames";
  EXPECT_LT(meanShift, 8.0) << "rain jumps implausibly between frames";

  // Frames are continuous in time: frame 13 (first target) is closer to frame 12
  // (last input) than frame 24 is.
  double near = 0, far = 0;
  for (int64_t i = 0; i < d.n; ++i) {
    const float *last = d.x.data() + (i * 13 + 12) * H * W;
    const float *first = d.y.data() + (i * 12 + 0) * H * W;
    const float *end = d.y.data() + (i * 12 + 11) * H * W;
    for (int64_t k = 0; k < H * W; ++k) {
      near += (first[k] - last[k]) * (first[k] - last[k]);
      far += (end[k] - last[k]) * (end[k] - last[k]);
    }
  }
  EXPECT_LT(near, far);
  double mse = persistenceMse(d);
  EXPECT_GT(mse, 0.0);
  EXPECT_TRUE(std::isfinite(mse));
}

TEST(Nowcast, PersistenceMseOfAHandBuiltSetIsWorkedOut) {
  // Two samples of 2 input and 2 target frames of 1x2 pixels. The baseline repeats
  // each sample's last input frame: sample 0 (last frame {1, 2}) against targets {1, 4}
  // and {3, 2}: errors 0, 2, 2, 0; sample 1 (last {0, 0}) against {1, 1} and {0, -2}:
  // errors 1, 1, 0, -2. Squares 0+4+4+0 + 1+1+0+4 = 14 over 8 values: 1.75. The first
  // input frames ({9, 9} and {-9, -9}) must not count.
  Dataset d;
  d.n = 2;
  d.xShape = {2, 1, 2};
  d.yShape = {2, 1, 2};
  d.x = {9, 9, 1, 2, -9, -9, 0, 0};
  d.y = {1, 4, 3, 2, 1, 1, 0, -2};
  EXPECT_DOUBLE_EQ(persistenceMse(d), 1.75);
  d.xShape = {2, 2};
  EXPECT_THROW(persistenceMse(d), Error);
}

TEST(Nowcast, StillAirWithoutLifeCycleIsPersistent) {
  // With no wind, no deviation, no births, no noise, persistence can only err by
  // growth and decay: the error must be far smaller than with the default wind.
  NowcastParams still;
  still.speedMin = still.speedMax = 0;
  still.cellDeviation = 0;
  still.noise = 0;
  Dataset calm = makeNowcast(10, 32, 32, 5, still);
  Dataset windy = makeNowcast(10, 32, 32, 5);
  EXPECT_LT(persistenceMse(calm), persistenceMse(windy));
}

// ---------------------------------------------------------------- batch order

TEST(BatchOrder, NoShuffleIsInOrderWrapsAndDropsThePartialBatch) {
  BatchOrder o(10, 3, false, 42);
  EXPECT_EQ(o.stepsPerEpoch(), 3);
  EXPECT_EQ(o.rows(0), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(o.rows(1), (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(o.rows(2), (std::vector<int64_t>{6, 7, 8})); // row 9 dropped
  EXPECT_EQ(o.rows(3), (std::vector<int64_t>{0, 1, 2})); // next epoch
  EXPECT_EQ(o.rows(3 * 1000 + 2), (std::vector<int64_t>{6, 7, 8}));
  expectError([] { BatchOrder(5, 8, false, 0); }, {"5 samples", "batch of 8"});
  expectError([] { BatchOrder(5, 0, false, 0); }, {"batch size"});
}

TEST(BatchOrder, ShuffleIsAPermutationPerEpochAndReproducible) {
  const int64_t n = 103, B = 10;
  BatchOrder o(n, B, true, 2024);
  EXPECT_EQ(o.stepsPerEpoch(), 10);
  std::vector<std::vector<int64_t>> epochs;
  for (int64_t e = 0; e < 4; ++e) {
    std::vector<int64_t> seen;
    for (int64_t k = 0; k < o.stepsPerEpoch(); ++k) {
      std::vector<int64_t> r = o.rows(e * o.stepsPerEpoch() + k);
      ASSERT_EQ(r.size(), static_cast<size_t>(B));
      seen.insert(seen.end(), r.begin(), r.end());
    }
    std::vector<int64_t> perm = o.epochPermutation(e);
    EXPECT_TRUE(std::equal(seen.begin(), seen.end(), perm.begin()));
    std::vector<int64_t> sorted = perm;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> iota(n);
    std::iota(iota.begin(), iota.end(), 0);
    EXPECT_EQ(sorted, iota) << "epoch " << e << " is not a permutation";
    std::set<int64_t> unique(seen.begin(), seen.end());
    EXPECT_EQ(unique.size(), seen.size()); // no row twice within an epoch
    epochs.push_back(perm);
  }
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
  // Resuming: a fresh object asked for step s gives exactly the same rows, in any
  // order of queries.
  BatchOrder resumed(n, B, true, 2024);
  for (int64_t s : {37, 5, 39, 0, 12345, 38})
    EXPECT_EQ(resumed.rows(s), o.rows(s)) << "step " << s;
  BatchOrder other(n, B, true, 2025);
  EXPECT_NE(other.rows(0), o.rows(0));
}

TEST(BatchOrder, GatherCopiesRows) {
  Dataset d;
  d.n = 4;
  d.xShape = {2};
  d.yShape = {};
  d.classification = true;
  d.numClasses = 3;
  d.x = {0, 1, 10, 11, 20, 21, 30, 31};
  d.y = {0, 1, 2, 0};
  std::vector<float> x(4), y(2);
  gather(d, {3, 1}, x.data(), y.data());
  EXPECT_EQ(x, (std::vector<float>{30, 31, 10, 11}));
  EXPECT_EQ(y, (std::vector<float>{0, 1}));
  expectError([&] { gather(d, {4}, x.data(), y.data()); }, {"row 4", "4 samples"});
}

// ---------------------------------------------------------------- .npy pairs

namespace {
struct Pair {
  ScratchDir dir;
  std::string x = dir.file("x.npy"), y = dir.file("y.npy");
};
std::vector<float> iotaF(size_t n, float scale = 1.0f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = static_cast<float>(i) * scale;
  return v;
}
} // namespace

TEST(NpyPair, LoadsClassificationAndSplits) {
  Pair p;
  writeNpy(p.x, HostTensor::fromFloats("x", {20, 1, 8, 8}, iotaF(20 * 64, 0.01f), D::F64));
  std::vector<float> labels(20);
  for (int i = 0; i < 20; ++i)
    labels[i] = static_cast<float>(i % 4);
  writeNpy(p.y, HostTensor::fromFloats("y", {20}, labels, D::I64));
  DataSplit s = loadNpyPair(p.x, p.y, {1, 8, 8}, {}, true, 0.25);
  EXPECT_EQ(s.train.n, 15);
  EXPECT_EQ(s.heldOut.n, 5);
  EXPECT_EQ(s.train.numClasses, 4);
  EXPECT_EQ(s.train.xShape, (std::vector<int64_t>{1, 8, 8}));
  EXPECT_FLOAT_EQ(s.heldOut.x[0], 15 * 64 * 0.01f);
  EXPECT_EQ(s.heldOut.y[0], 3.0f);
  writeNpy(p.x, HostTensor::fromFloats("x", {20, 64}, iotaF(20 * 64, 0.01f), D::F64));
  DataSplit all = loadNpyPair(p.x, p.y, {64}, {}, true, 0.0, 10);
  EXPECT_EQ(all.train.n, 20);
  EXPECT_EQ(all.heldOut.n, 0);
  EXPECT_EQ(all.train.numClasses, 10);
}

TEST(NpyPair, LoadsRegression) {
  Pair p;
  writeNpy(p.x, HostTensor::fromFloats("x", {5, 3, 4, 4}, iotaF(5 * 48), D::F32));
  writeNpy(p.y, HostTensor::fromFloats("y", {5, 2, 4, 4}, iotaF(5 * 32), D::F16));
  DataSplit s = loadNpyPair(p.x, p.y, {3, 4, 4}, {2, 4, 4}, false);
  EXPECT_FALSE(s.train.classification);
  EXPECT_EQ(s.train.yShape, (std::vector<int64_t>{2, 4, 4}));
  EXPECT_EQ(s.train.y, iotaF(5 * 32));
}

TEST(NpyPair, ShapeMismatchNamesTheFileAndBothShapes) {
  Pair p;
  writeNpy(p.x, HostTensor::fromFloats("x", {100, 3}, iotaF(300), D::F64));
  writeNpy(p.y, HostTensor::fromFloats("y", {100}, std::vector<float>(100, 1), D::I64));
  expectError([&] { loadNpyPair(p.x, p.y, {64}, {}, true); },
              {p.x + ": expected inputs of shape [N,64]", "got float64 [100,3]"});
  writeNpy(p.x, HostTensor::fromFloats("x", {99, 64}, iotaF(99 * 64), D::F32));
  expectError([&] { loadNpyPair(p.x, p.y, {64}, {}, true); }, {p.y, "100 samples", p.x, "has 99"});
  writeNpy(p.y, HostTensor::fromFloats("y", {99, 2}, iotaF(198), D::I64));
  expectError([&] { loadNpyPair(p.x, p.y, {64}, {}, true); },
              {p.y, "labels of shape [N]", "[99,2]"});
  expectError([&] { loadNpyPair(p.x, p.y, {64}, {3}, false); },
              {p.y, "expected targets of shape [N,3]", "got int64 [99,2]"});
}

// The same number of elements in another shape is refused, not reinterpreted: [N,8,8] is not
// [N,64], and channels-last [N,4,4,3] read as [N,3,4,4] would scramble every image.
TEST(NpyPair, AnotherShapeWithTheSameSizeIsRefused) {
  Pair p;
  writeNpy(p.x, HostTensor::fromFloats("x", {10, 8, 8}, iotaF(640), D::F32));
  writeNpy(p.y, HostTensor::fromFloats("y", {10}, std::vector<float>(10, 1), D::I64));
  expectError([&] { loadNpyPair(p.x, p.y, {64}, {}, true); },
              {p.x + ": expected inputs of shape [N,64] (N samples of [64]), got float32 [10,8,8]",
               "a.reshape(10, 64)"});
  writeNpy(p.x, HostTensor::fromFloats("x", {10, 64}, iotaF(640), D::F32));
  expectError([&] { loadNpyPair(p.x, p.y, {1, 8, 8}, {}, true); },
              {p.x + ": expected inputs of shape [N,1,8,8]", "got float32 [10,64]"});
  writeNpy(p.x, HostTensor::fromFloats("x", {10, 4, 4, 3}, iotaF(480), D::F32));
  expectError([&] { loadNpyPair(p.x, p.y, {3, 4, 4}, {}, true); },
              {p.x + ": expected inputs of shape [N,3,4,4]", "got float32 [10,4,4,3]"});
  writeNpy(p.x, HostTensor::fromFloats("x", {10, 3, 4, 4}, iotaF(480), D::F32));
  writeNpy(p.y, HostTensor::fromFloats("y", {10, 32}, iotaF(320), D::F32));
  expectError([&] { loadNpyPair(p.x, p.y, {3, 4, 4}, {2, 4, 4}, false); },
              {p.y + ": expected targets of shape [N,2,4,4]", "got float32 [10,32]"});
  // No hint to reshape when the sizes differ.
  writeNpy(p.x, HostTensor::fromFloats("x", {10, 65}, iotaF(650), D::F32));
  std::string e = expectError([&] { loadNpyPair(p.x, p.y, {64}, {}, true); }, {"got float32 [10,65]"});
  EXPECT_EQ(e.find("reshape"), std::string::npos) << e;
}

TEST(NpyPair, NonFiniteValuesAreReportedWithElementAndSample) {
  Pair p;
  std::vector<float> x = iotaF(30 * 64);
  x[1234] = NAN; // sample 1234 / 64 = 19
  writeNpy(p.x, HostTensor::fromFloats("x", {30, 64}, x, D::F32));
  writeNpy(p.y, HostTensor::fromFloats("y", {30}, std::vector<float>(30, 0), D::I32));
  expectError([&] { loadNpyPair(p.x, p.y, {64}, {}, true); },
              {p.x + ": element 1234 (sample 19) is NaN"});
  x[1234] = 0;
  x[70] = -INFINITY;
  writeNpy(p.x, HostTensor::fromFloats("x", {30, 64}, x, D::F32));
  expectError([&] { loadNpyPair(p.x, p.y, {64}, {}, true); },
              {p.x + ": element 70 (sample 1) is -inf"});
  x[70] = 0;
  writeNpy(p.x, HostTensor::fromFloats("x", {30, 64}, x, D::F32));
  std::vector<float> y(30 * 2, 0);
  y[7] = NAN;
  writeNpy(p.y, HostTensor::fromFloats("y", {30, 2}, y, D::F32));
  expectError([&] { loadNpyPair(p.x, p.y, {64}, {2}, false); },
              {p.y + ": element 7 (sample 3) is NaN"});
}

TEST(NpyPair, BadLabels) {
  Pair p;
  writeNpy(p.x, HostTensor::fromFloats("x", {4, 2}, iotaF(8), D::F32));
  writeNpy(p.y, HostTensor::fromFloats("y", {4}, {0, 1, 12, 2}, D::I64));
  expectError([&] { loadNpyPair(p.x, p.y, {2}, {}, true, 0.0, 10); },
              {p.y + ": element 2 (sample 2) is label 12, out of range [0, 10)"});
  writeNpy(p.y, HostTensor::fromFloats("y", {4}, {0, -1, 1, 2}, D::I32));
  expectError([&] { loadNpyPair(p.x, p.y, {2}, {}, true); },
              {p.y + ": element 1 (sample 1) is label -1, out of range"});
  writeNpy(p.y, HostTensor::fromFloats("y", {4}, {0, 1, 2.5f, 2}, D::F32));
  expectError([&] { loadNpyPair(p.x, p.y, {2}, {}, true); },
              {p.y + ": element 2 (sample 2) is 2.5, not an integer class label"});
  expectError([&] { loadNpyPair(p.x, p.y, {2}, {}, true, 1.0); }, {"held-out fraction"});
}
