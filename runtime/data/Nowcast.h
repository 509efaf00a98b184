//===- Nowcast.h - synthetic precipitation nowcasting data ----------------===//
//
// Stands in for SEVIR: each sample is 25 consecutive radar frames of normalised
// rain rate on an H x W grid (one frame = "5 minutes", one pixel = "1 km"); frames
// 0..12 are the input x [13,H,W], frames 13..24 the target y [12,H,W].
//
// Physics (per sample):
//  * A steering wind: speed uniform in [speedMin, speedMax] px/frame, direction
//    uniform; every rain cell moves with it plus its own small deviation
//    (uniform in +-cellDeviation px/frame per axis).
//  * Rain cells are rotated elliptical Gaussians (major sigma uniform in
//    [sizeMin, sizeMax] x min(H,W), aspect 1..2.5, random orientation), with a
//    life cycle: exponential growth from 5 % of the peak over tPeak (2..10 frames),
//    then exponential decay (rate 0.04..0.25 /frame, half-lives of ~3..17 frames);
//    the core widens as the cell matures (sigma x (0.6 + 0.4 x relative intensity)).
//  * initialCells cells (uniform in [initialCellsMin, initialCellsMax]) already
//    exist at frame 0 at random stages of their lives; new cells are born during
//    the 25 frames (each frame one is born with probability birthRate).
//  * Overlapping cells add; the sum passes a soft ceiling (identity up to 0.8, then
//    0.8 + 0.2 tanh((s-0.8)/0.2)), so intensities lie in [0, 1); multiplicative noise
//    of +-noise; values under 0.005 (the "radar's detection threshold") become 0.
//    Every value is >= 0.
//
// Deterministic: sample i of a call with seed s depends only on (s, i, H, W,
// params) — drawn from xoshiro256** seeded by splitmix64, never std distributions —
// so makeNowcast(n, ...) is a prefix of makeNowcast(m > n, ...).
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/data/Dataset.h"

#include <cstdint>

namespace mantissa {

struct NowcastParams {
  int initialCellsMin = 3, initialCellsMax = 7;
  double birthRate = 0.15;               // probability of a new cell per frame
  double speedMin = 0.5, speedMax = 3.0; // steering speed, px/frame
  double cellDeviation = 0.3;            // per-cell velocity deviation, px/frame
  double sizeMin = 0.03, sizeMax = 0.10; // major-axis sigma / min(H, W)
  double peakMin = 0.2, peakMax = 0.9;   // peak intensity of a cell
  double noise = 0.03;                   // multiplicative noise amplitude (0 = none)
};

constexpr int64_t kNowcastInFrames = 13;
constexpr int64_t kNowcastOutFrames = 12;

/// n samples: x [13,H,W], y [12,H,W], regression (classification = false).
/// Error if n < 0 or H, W < 4.
Dataset makeNowcast(int64_t n, int64_t H, int64_t W, uint64_t seed,
                    const NowcastParams &params = {});

/// Train and held-out sets from two different sub-seeds of `seed`.
DataSplit loadNowcast(int64_t H, int64_t W, int64_t nTrain, int64_t nHeldOut, uint64_t seed,
                      const NowcastParams &params = {});

/// The persistence baseline: the mean squared error of predicting every target
/// frame as the last input frame, over all samples, frames and pixels. Needs
/// xShape [Tin,H,W] and yShape [Tout,H,W] (Error otherwise); 0 for an empty set.
double persistenceMse(const Dataset &d);

} // namespace mantissa
