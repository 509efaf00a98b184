//===- Attribution.cpp - DESIGN.md's energy method, step 4 ----------------===//
#include "runtime/energy/Attribution.h"

#include "common/Error.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace mantissa {

uint32_t KernelTimeline::kernelId(const std::string &name) {
  auto it = ids_.find(name);
  if (it != ids_.end())
    return it->second;
  uint32_t id = static_cast<uint32_t>(names_.size());
  names_.push_back(name);
  ids_.emplace(name, id);
  return id;
}

void KernelTimeline::record(uint32_t kernel, double start, double end, int64_t step) {
  if (kernel >= names_.size())
    throw Error("kernel timeline: unknown kernel id " + std::to_string(kernel));
  if (!(end >= start))
    throw Error("kernel timeline: a launch of '" + names_[kernel] + "' ends before it starts");
  launches_.push_back({kernel, start, end, step});
}

AttributionResult attributeEnergy(const KernelTimeline &timeline,
                                  const Calibration &calibration,
                                  const MeasuredWindows &measured,
                                  const AttributionOptions &options) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  AttributionResult r;
  r.measured = measured.measured;
  r.meterName = measured.meterName;

  const auto &launches = timeline.launches();
  const size_t K = timeline.names().size();

  // Windows, sorted, validated.
  std::vector<EnergyWindow> win = measured.measured ? measured.windows : std::vector<EnergyWindow>{};
  std::sort(win.begin(), win.end(),
            [](const EnergyWindow &a, const EnergyWindow &b) { return a.start < b.start; });
  for (size_t w = 0; w < win.size(); ++w) {
    if (!(win[w].end - win[w].start >= options.minWindowSeconds))
      throw Error("energy attribution: a window of " + std::to_string(win[w].end - win[w].start) +
                  " s is shorter than " + std::to_string(options.minWindowSeconds) +
                  " s (DESIGN.md: measure windows of >= 1 s, never less)");
    if (w > 0 && win[w].start < win[w - 1].end)
      throw Error("energy attribution: measurement windows overlap");
  }
  const size_t W = win.size();

  // Per kernel: launches and time; per window: time of each kernel, busy time.
  std::vector<KernelEnergy> ke(K);
  for (size_t k = 0; k < K; ++k) {
    ke[k].kernel = static_cast<uint32_t>(k);
    ke[k].name = timeline.names()[k];
  }
  std::vector<std::vector<double>> t(W, std::vector<double>(K, 0.0));
  std::vector<double> busy(W, 0.0);
  // Per launch, which windows it touches (for per-step totals).
  std::vector<size_t> order(launches.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return launches[a].start < launches[b].start; });
  std::vector<double> busyEnd(W, -std::numeric_limits<double>::infinity());
  struct Piece { size_t launch, window; double seconds; };
  std::vector<Piece> pieces;
  pieces.reserve(launches.size());
  for (size_t i : order) {
    const KernelLaunch &l = launches[i];
    KernelEnergy &k = ke[l.kernel];
    ++k.launches;
    k.seconds += l.end - l.start;
    // First window whose end is after the launch's start.
    size_t w = static_cast<size_t>(
        std::upper_bound(win.begin(), win.end(), l.start,
                         [](double v, const EnergyWindow &e) { return v < e.end; }) -
        win.begin());
    bool any = false;
    for (; w < W && win[w].start < l.end; ++w) {
      double a = std::max(l.start, win[w].start), b = std::min(l.end, win[w].end);
      if (b <= a)
        continue;
      any = true;
      t[w][l.kernel] += b - a;
      k.secondsInWindows += b - a;
      pieces.push_back({i, w, b - a});
      // Union of intervals, launches in order of start.
      double from = std::max(a, busyEnd[w]);
      if (b > from)
        busy[w] += b - from;
      busyEnd[w] = std::max(busyEnd[w], b);
    }
    if (!any)
      ++r.launchesOutsideWindows;
  }

  // Calibrated power per kernel (only kernels that ran inside a window need one).
  std::vector<double> P(K, 0.0), rel(K, 0.0);
  for (size_t k = 0; k < K; ++k) {
    if (ke[k].launches == 0)
      continue;
    auto it = calibration.kernels.find(static_cast<uint32_t>(k));
    if (it == calibration.kernels.end()) {
      if (measured.measured && ke[k].secondsInWindows > 0.0)
        throw Error("energy attribution: kernel '" + ke[k].name + "' has no calibration");
      continue;
    }
    P[k] = it->second.watts;
    rel[k] = it->second.relSpread;
  }
  const double Pidle = calibration.idle.watts, relIdle = calibration.idle.relSpread;
  const double lagSeconds = options.lagSeconds >= 0.0 ? options.lagSeconds : measured.updatePeriodSeconds;

  // a[w][k]: kernel k's joules in window w; f[w][j]: j's share of the prediction
  // (j == K: idle).
  std::vector<std::vector<double>> a(W, std::vector<double>(K, 0.0));
  std::vector<std::vector<double>> f(W, std::vector<double>(K + 1, 0.0));
  std::vector<double> scale(W, 1.0), idleW(W, 0.0), meterRel(W, 0.0);
  for (size_t w = 0; w < W; ++w) {
    const EnergyWindow &ew = win[w];
    WindowEnergy out;
    out.start = ew.start;
    out.end = ew.end;
    out.measuredJoules = ew.joules;
    out.busySeconds = busy[w];
    double dur = ew.end - ew.start;
    double gap = std::max(0.0, dur - busy[w]);
    double predicted = gap * Pidle;
    for (size_t k = 0; k < K; ++k)
      predicted += t[w][k] * P[k];
    double kernels = 0.0;
    if (predicted > 0.0) {
      scale[w] = ew.joules / predicted;
      for (size_t k = 0; k < K; ++k) {
        a[w][k] = scale[w] * t[w][k] * P[k];
        f[w][k] = t[w][k] * P[k] / predicted;
        kernels += a[w][k];
      }
      f[w][K] = gap * Pidle / predicted;
    } else {
      f[w][K] = 1.0; // nothing predicted: all of it is the remainder
    }
    idleW[w] = ew.joules - kernels; // the remainder: conservation by construction
    out.boundaryLagSeconds = ew.boundaryLagSeconds;
    out.lagSeconds = std::max(lagSeconds, ew.boundaryLagSeconds);
    out.meterErrJoules = measured.resolutionJoules + out.lagSeconds * ew.joules / dur;
    meterRel[w] = ew.joules > 0.0 ? out.meterErrJoules / ew.joules : 0.0;
    out.kernelJoules = kernels;
    out.idleJoules = idleW[w];
    out.scale = scale[w];
    r.windows.push_back(out);
    r.measuredJoules += ew.joules;
    r.measuredSeconds += dur;
    r.idleSeconds += gap;
    r.idleJoules += idleW[w];
  }

  // Uncertainty of entry k (k == K: idle) as a linear worst-case bound.
  auto bound = [&](size_t k) {
    auto aw = [&](size_t w) { return k == K ? idleW[w] : a[w][k]; };
    double err = 0.0;
    for (size_t w = 0; w < W; ++w)
      err += std::fabs(aw(w)) * meterRel[w];
    for (size_t j = 0; j <= K; ++j) {
      double rj = j == K ? relIdle : rel[j];
      if (rj == 0.0)
        continue;
      double c = 0.0;
      for (size_t w = 0; w < W; ++w)
        c += aw(w) * ((j == k ? 1.0 : 0.0) - f[w][j]);
      err += std::fabs(c) * rj;
    }
    return err;
  };

  for (size_t k = 0; k < K; ++k) {
    if (!measured.measured) {
      ke[k].joules = ke[k].joulesErr = ke[k].share = ke[k].watts = nan;
      continue;
    }
    double j = 0.0;
    for (size_t w = 0; w < W; ++w)
      j += a[w][k];
    ke[k].joules = j;
    ke[k].joulesErr = bound(k);
    ke[k].share = r.measuredJoules > 0.0 ? j / r.measuredJoules : 0.0;
    ke[k].watts = ke[k].secondsInWindows > 0.0 ? j / ke[k].secondsInWindows : 0.0;
  }
  if (measured.measured) {
    r.idleJoulesErr = bound(K);
    r.idleShare = r.measuredJoules > 0.0 ? r.idleJoules / r.measuredJoules : 0.0;
  } else {
    r.measuredJoules = r.idleJoules = r.idleJoulesErr = r.idleShare = nan;
  }

  // Per-step totals (kernels only).
  std::map<int64_t, StepEnergy> steps;
  std::map<int64_t, std::vector<double>> stepKernelJoules;
  for (const KernelLaunch &l : launches) {
    StepEnergy &s = steps[l.step];
    s.step = l.step;
    ++s.launches;
    s.seconds += l.end - l.start;
  }
  for (const Piece &p : pieces) {
    const KernelLaunch &l = launches[p.launch];
    double j = scale[p.window] * p.seconds * P[l.kernel];
    steps[l.step].joules += j;
    steps[l.step].secondsInWindows += p.seconds;
    auto &v = stepKernelJoules[l.step];
    if (v.empty())
      v.assign(K, 0.0);
    v[l.kernel] += j;
  }
  for (auto &kv : steps) {
    StepEnergy s = kv.second;
    if (!measured.measured || (s.secondsInWindows == 0.0 && s.seconds > 0.0)) {
      s.joules = s.joulesErr = nan;
    } else {
      auto it = stepKernelJoules.find(kv.first);
      if (it != stepKernelJoules.end())
        for (size_t k = 0; k < K; ++k)
          if (ke[k].joules > 0.0)
            s.joulesErr += it->second[k] / ke[k].joules * ke[k].joulesErr;
    }
    r.steps.push_back(s);
  }

  std::sort(ke.begin(), ke.end(), [&](const KernelEnergy &x, const KernelEnergy &y) {
    if (measured.measured && x.joules != y.joules)
      return x.joules > y.joules;
    if (x.seconds != y.seconds)
      return x.seconds > y.seconds;
    return x.kernel < y.kernel;
  });
  for (KernelEnergy &k : ke)
    if (k.launches > 0)
      r.kernels.push_back(std::move(k));
  return r;
}

} // namespace mantissa
