//===- HeatMatch.cpp ------------------------------------------------------===//
#include "runtime/energy/HeatMatch.h"

#include <cmath>
#include <deque>
#include <utility>

namespace mantissa {
namespace {

/// The span each of the two temperatures compared by the steady test is averaged over.
constexpr double kMeanSeconds = 1.0;

using Samples = std::deque<std::pair<double, double>>; // (time, °C), oldest first

/// The mean reading in [t - kMeanSeconds, t]; the last reading before it when a
/// unit of work outlasts the span.
double meanEndingAt(const Samples &s, double t) {
  double sum = 0, before = s.front().second;
  int n = 0;
  for (const auto &[when, c] : s) {
    if (when > t)
      break;
    if (when >= t - kMeanSeconds)
      sum += c, ++n;
    else
      before = c;
  }
  return n ? sum / n : before;
}

} // namespace

HeatResult heatUntilSteady(const HeatDevice &d, const HeatOptions &o) {
  HeatResult r;
  const double t0 = d.now();
  double c = d.celsius();
  if (std::isnan(c))
    return r;
  r.measured = true;
  Samples samples{{t0, c}};
  for (;;) {
    d.heat();
    double t = d.now();
    if (std::isnan(c = d.celsius())) {
      r.measured = false; // the thermometer stopped answering
      break;
    }
    samples.push_back({t, c});
    while (samples.size() > 2 && samples[1].first < t - o.steadyOverSeconds - kMeanSeconds)
      samples.pop_front();
    r.celsius = meanEndingAt(samples, t);
    // Either direction: a device hotter than the step's equilibrium cools to it.
    if (t - t0 >= o.steadyOverSeconds + kMeanSeconds &&
        std::fabs(r.celsius - meanEndingAt(samples, t - o.steadyOverSeconds)) < o.steadyRiseCelsius)
      break;
    if (t - t0 >= o.maxSeconds) {
      r.capped = true;
      break;
    }
  }
  r.seconds = d.now() - t0;
  return r;
}

HeatResult reheatTo(const HeatDevice &d, double target, const HeatOptions &o) {
  HeatResult r;
  const double t0 = d.now();
  for (;;) {
    double c = d.celsius();
    if (!(r.measured = !std::isnan(c)))
      break;
    r.celsius = c;
    if (std::fabs(c - target) <= o.toleranceCelsius)
      break;
    if (d.now() - t0 >= o.reheatMaxSeconds) {
      r.capped = true;
      break;
    }
    if (c < target)
      d.heat();
    else
      d.rest();
  }
  r.seconds = d.now() - t0;
  return r;
}

} // namespace mantissa
