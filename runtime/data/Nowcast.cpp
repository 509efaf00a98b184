//===- Nowcast.cpp --------------------------------------------------------===//
#include "runtime/data/Nowcast.h"

#include "common/Error.h"
#include "runtime/data/Random.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace mantissa {

namespace {

constexpr int kFrames = 25;
constexpr uint64_t kNowcastKey = 0x4E4F5743415354ull; // "NOWCAST"

struct Cell {
  double birth;            // frame of birth (may be negative: existed before frame 0)
  double xRef, yRef, tRef; // position (px) at frame tRef
  double u, v;             // velocity, px/frame
  double peak, tPeak, growth, decay;
  double sigmaMajor, sigmaMinor, cosA, sinA;

  double relIntensity(double t) const { // in [0, 1]
    double age = t - birth;
    if (age < 0)
      return 0.0;
    if (age < tPeak)
      return std::exp(-growth * (tPeak - age));
    return std::exp(-decay * (age - tPeak));
  }
};

Cell makeCell(Xoshiro256 &rng, double birth, double tRef, double U, double V, int64_t H, int64_t W,
              const NowcastParams &p) {
  Cell c;
  c.birth = birth;
  c.tRef = tRef;
  c.xRef = rng.uniform(-0.1, 1.1) * static_cast<double>(W);
  c.yRef = rng.uniform(-0.1, 1.1) * static_cast<double>(H);
  c.u = U + rng.uniform(-p.cellDeviation, p.cellDeviation);
  c.v = V + rng.uniform(-p.cellDeviation, p.cellDeviation);
  c.peak = rng.uniform(p.peakMin, p.peakMax);
  c.tPeak = rng.uniform(2.0, 10.0);
  c.growth = std::log(20.0) / c.tPeak; // from 5 % of the peak at birth
  c.decay = rng.uniform(0.04, 0.25);
  double scale = static_cast<double>(std::min(H, W));
  c.sigmaMajor = rng.uniform(p.sizeMin, p.sizeMax) * scale;
  c.sigmaMinor = c.sigmaMajor / rng.uniform(1.0, 2.5);
  double angle = rng.uniform(0.0, 3.141592653589793);
  c.cosA = std::cos(angle);
  c.sinA = std::sin(angle);
  return c;
}

void renderSample(uint64_t sampleSeed, int64_t H, int64_t W, const NowcastParams &p,
                  float *frames /* [25,H,W] */) {
  Xoshiro256 rng(sampleSeed);
  double speed = rng.uniform(p.speedMin, p.speedMax);
  double dir = rng.uniform(0.0, 6.283185307179586);
  double U = speed * std::cos(dir), V = speed * std::sin(dir);

  std::vector<Cell> cells;
  int lo = std::max(0, p.initialCellsMin), hi = std::max(lo, p.initialCellsMax);
  int initial = lo + static_cast<int>(rng.below(static_cast<uint64_t>(hi - lo + 1)));
  for (int k = 0; k < initial; ++k) {
    double birth = -rng.uniform(0.0, 15.0); // at a random stage of its life at frame 0
    cells.push_back(makeCell(rng, birth, 12.0, U, V, H, W, p));
  }
  for (int t = 1; t < kFrames; ++t) {
    if (rng.uniform() < p.birthRate) {
      double birth = t - rng.uniform();
      cells.push_back(makeCell(rng, birth, birth, U, V, H, W, p));
    }
  }
  uint64_t noiseSeed = rng.next();

  std::vector<float> field(static_cast<size_t>(H * W));
  for (int t = 0; t < kFrames; ++t) {
    std::fill(field.begin(), field.end(), 0.0f);
    for (const Cell &c : cells) {
      double rel = c.relIntensity(t);
      double amp = c.peak * rel;
      if (amp < 1e-3)
        continue;
      double widen = 0.6 + 0.4 * rel;
      double sa = c.sigmaMajor * widen, sb = c.sigmaMinor * widen;
      double cx = c.xRef + c.u * (t - c.tRef), cy = c.yRef + c.v * (t - c.tRef);
      double reach = 3.5 * sa;
      int64_t x0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(cx - reach)));
      int64_t x1 = std::min<int64_t>(W - 1, static_cast<int64_t>(std::ceil(cx + reach)));
      int64_t y0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(cy - reach)));
      int64_t y1 = std::min<int64_t>(H - 1, static_cast<int64_t>(std::ceil(cy + reach)));
      double ia = 1.0 / (sa * sa), ib = 1.0 / (sb * sb);
      for (int64_t yy = y0; yy <= y1; ++yy) {
        double dy = static_cast<double>(yy) - cy;
        float *row = field.data() + yy * W;
        for (int64_t xx = x0; xx <= x1; ++xx) {
          double dx = static_cast<double>(xx) - cx;
          double along = c.cosA * dx + c.sinA * dy;
          double across = -c.sinA * dx + c.cosA * dy;
          double q = along * along * ia + across * across * ib;
          if (q < 12.25)
            row[xx] += static_cast<float>(amp * std::exp(-0.5 * q));
        }
      }
    }
    float *out = frames + static_cast<int64_t>(t) * H * W;
    uint64_t ns = mixKeys(noiseSeed, static_cast<uint64_t>(t));
    for (int64_t i = 0; i < H * W; ++i) {
      double s = field[static_cast<size_t>(i)];
      double r = s <= 0.8 ? s : 0.8 + 0.2 * std::tanh((s - 0.8) / 0.2);
      if (p.noise > 0 && r > 0) {
        uint64_t st = ns + static_cast<uint64_t>(i);
        double u = static_cast<double>(splitmix64(st) >> 11) * 0x1.0p-53;
        r *= 1.0 + p.noise * (2.0 * u - 1.0);
      }
      out[i] = r < 0.005 ? 0.0f : static_cast<float>(r);
    }
  }
}

} // namespace

Dataset makeNowcast(int64_t n, int64_t H, int64_t W, uint64_t seed, const NowcastParams &params) {
  if (n < 0)
    throw Error("nowcast: sample count " + std::to_string(n) + " is negative");
  if (H < 4 || W < 4 || H > 65536 || W > 65536)
    throw Error("nowcast: grid " + std::to_string(H) + "x" + std::to_string(W) +
                " is out of range (each side 4..65536)");
  if (!(params.speedMin >= 0 && params.speedMax >= params.speedMin && params.sizeMin > 0 &&
        params.sizeMax >= params.sizeMin && params.peakMin >= 0 &&
        params.peakMax >= params.peakMin && params.noise >= 0 && params.noise < 1 &&
        params.cellDeviation >= 0 && params.initialCellsMin >= 0 &&
        params.initialCellsMax >= params.initialCellsMin))
    throw Error("nowcast: inconsistent generator parameters (need 0 <= min <= max for "
                "speed, size (> 0), peak, cell counts; 0 <= noise < 1)");
  Dataset d;
  d.n = n;
  d.xShape = {kNowcastInFrames, H, W};
  d.yShape = {kNowcastOutFrames, H, W};
  d.classification = false;
  d.numClasses = 0;
  size_t frame = static_cast<size_t>(H * W);
  d.x.resize(static_cast<size_t>(n) * kNowcastInFrames * frame);
  d.y.resize(static_cast<size_t>(n) * kNowcastOutFrames * frame);
  std::vector<float> frames(kFrames * frame);
  for (int64_t i = 0; i < n; ++i) {
    renderSample(mixKeys(seed, kNowcastKey, static_cast<uint64_t>(i)), H, W, params, frames.data());
    std::copy(frames.begin(), frames.begin() + kNowcastInFrames * frame,
              d.x.begin() + i * kNowcastInFrames * frame);
    std::copy(frames.begin() + kNowcastInFrames * frame, frames.end(),
              d.y.begin() + i * kNowcastOutFrames * frame);
  }
  return d;
}

DataSplit loadNowcast(int64_t H, int64_t W, int64_t nTrain, int64_t nHeldOut, uint64_t seed,
                      const NowcastParams &params) {
  DataSplit s;
  s.train = makeNowcast(nTrain, H, W, mixKeys(seed, 1), params);
  s.heldOut = makeNowcast(nHeldOut, H, W, mixKeys(seed, 2), params);
  return s;
}

double persistenceMse(const Dataset &d) {
  if (d.xShape.size() != 3 || d.yShape.size() != 3 || d.xShape[1] != d.yShape[1] ||
      d.xShape[2] != d.yShape[2] || d.xShape[0] < 1)
    throw Error("persistence baseline: needs x [T_in,H,W] and y [T_out,H,W] per sample");
  if (d.n == 0)
    return 0.0;
  int64_t tin = d.xShape[0], tout = d.yShape[0];
  int64_t frame = d.xShape[1] * d.xShape[2];
  double sum = 0.0;
  for (int64_t i = 0; i < d.n; ++i) {
    const float *last = d.x.data() + (i * tin + tin - 1) * frame;
    const float *y = d.y.data() + i * tout * frame;
    for (int64_t t = 0; t < tout; ++t)
      for (int64_t k = 0; k < frame; ++k) {
        double e = static_cast<double>(y[t * frame + k]) - last[k];
        sum += e * e;
      }
  }
  return sum / (static_cast<double>(d.n) * tout * frame);
}

} // namespace mantissa
