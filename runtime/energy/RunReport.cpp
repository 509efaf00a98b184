//===- RunReport.cpp ------------------------------------------------------===//
#include "runtime/energy/RunReport.h"
#include "runtime/energy/ReportFormat.h"

#include "runtime/io/MiniJson.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <tuple>

namespace mantissa {
using namespace report;
namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

std::vector<GroupEnergy> groupBy(const EnergyRun &run, std::string KernelLabel::*field) {
  const AttributionResult &r = run.attribution;
  std::map<std::string, GroupEnergy> groups;
  for (const KernelEnergy &k : r.kernels) {
    auto it = run.labels.find(k.name);
    std::string key = it == run.labels.end() ? "?" : it->second.*field;
    GroupEnergy &g = groups[key];
    g.group = key;
    g.launches += k.launches;
    g.seconds += k.seconds;
    g.joules += k.joules;
    g.joulesErr += k.joulesErr; // worst-case bounds add
  }
  std::vector<GroupEnergy> out;
  for (auto &[key, g] : groups) {
    if (!r.measured)
      g.joules = g.joulesErr = g.share = kNaN;
    else
      g.share = r.measuredJoules > 0 ? g.joules / r.measuredJoules : 0.0;
    out.push_back(g);
  }
  std::sort(out.begin(), out.end(), [&](const GroupEnergy &a, const GroupEnergy &b) {
    return r.measured ? a.joules > b.joules : a.seconds > b.seconds;
  });
  return out;
}

double windowWatts(const WindowEnergy &w) { return w.measuredJoules / (w.end - w.start); }

} // namespace

std::vector<GroupEnergy> EnergyRun::byOpClass() const {
  return groupBy(*this, &KernelLabel::opClass);
}
std::vector<GroupEnergy> EnergyRun::byPrecision() const {
  return groupBy(*this, &KernelLabel::precision);
}

CumulativeEnergy cumulativeEnergyAt(const AttributionResult &r, double runStart, double t) {
  if (!r.measured || r.windows.empty())
    return {kNaN, kNaN};
  CumulativeEnergy c;
  // An unmeasured stretch [a, b] at power p: its estimate, wholly uncertain.
  auto extrapolate = [&](double a, double b, double watts) {
    if (b > a) {
      c.joules += watts * (b - a);
      c.joulesErr += watts * (b - a);
    }
  };
  double covered = runStart; // everything before this is counted
  for (const WindowEnergy &w : r.windows) {
    if (t <= covered)
      break;
    extrapolate(covered, std::min(t, w.start), windowWatts(w)); // before or between windows
    if (t >= w.end) {
      c.joules += w.measuredJoules;
      c.joulesErr += w.meterErrJoules;
    } else if (t > w.start) {
      // Pro rata inside the window (its power is known only on average).
      c.joules += w.measuredJoules * (t - w.start) / (w.end - w.start);
      c.joulesErr += w.meterErrJoules;
    }
    covered = std::max(covered, w.end);
  }
  extrapolate(covered, t, windowWatts(r.windows.back())); // after the last window
  return c;
}

PerStepEnergy perStepEnergy(const AttributionResult &r) {
  PerStepEnergy p;
  double seconds = 0;
  for (const StepEnergy &s : r.steps) {
    if (s.step < 0)
      continue; // launches outside training steps
    ++p.steps;
    seconds += s.seconds;
    if (s.seconds > 0)
      p.covered += s.secondsInWindows / s.seconds;
  }
  p.kernelSeconds = p.steps ? seconds / double(p.steps) : 0.0;
  if (!r.measured || p.covered <= 0) {
    p.kernelJoules = p.kernelJoulesErr = p.idleJoules = p.idleJoulesErr = p.totalJoules =
        p.totalJoulesErr = kNaN;
    return p;
  }
  double meterErr = 0;
  for (const WindowEnergy &w : r.windows)
    meterErr += w.meterErrJoules;
  for (const KernelEnergy &k : r.kernels) {
    p.kernelJoules += k.joules;
    p.kernelJoulesErr += k.joulesErr;
  }
  p.kernelJoules /= p.covered;
  p.kernelJoulesErr /= p.covered;
  p.idleJoules = r.idleJoules / p.covered;
  p.idleJoulesErr = r.idleJoulesErr / p.covered;
  p.totalJoules = r.measuredJoules / p.covered;
  p.totalJoulesErr = meterErr / p.covered;
  return p;
}

void setTarget(EnergyRun &run, double targetLoss) {
  run.targetLoss = targetLoss;
  run.targetStep = -1;
  for (const LossPoint &p : run.losses)
    if (p.loss <= targetLoss) {
      run.targetStep = p.step;
      run.targetSeconds = p.seconds - run.runStart;
      run.targetEnergy = cumulativeEnergyAt(run.attribution, run.runStart, p.seconds);
      return;
    }
}

//===--- text -----------------------------------------------------------------===//

namespace {

void groupTable(std::ostringstream &o, const char *title, const std::vector<GroupEnergy> &groups,
                bool measured) {
  o << title << "\n";
  for (const GroupEnergy &g : groups) {
    char line[256];
    if (measured)
      std::snprintf(line, sizeof line, "  %-28.28s %9lld launches %12s %10.3f ± %-7.3f J %5.1f%%\n",
                    g.group.c_str(), (long long)g.launches, seconds(g.seconds).c_str(), g.joules,
                    g.joulesErr, 100 * g.share);
    else
      std::snprintf(line, sizeof line, "  %-28.28s %9lld launches %12s  not measured\n",
                    g.group.c_str(), (long long)g.launches, seconds(g.seconds).c_str());
    o << line;
  }
}

} // namespace

std::string formatEnergyRun(const EnergyRun &run, size_t maxKernels) {
  const AttributionResult &r = run.attribution;
  std::ostringstream o;
  o << "\nenergy (timeline: " << (run.timeline.empty() ? "" : run.timeline + ": ")
    << run.timelineMethod << ")\n";
  if (r.measured)
    o << "calibration: " << run.calibration << "\n";
  o << formatAttributionTable(r, maxKernels, run.labels);
  if (!run.deviceKernels.empty()) {
    // What the table's plan kernels ran as on the device (a cuBLAS call: several).
    o << "device kernels (as the timeline saw them):\n";
    size_t shown = 0;
    for (const KernelEnergy &k : r.kernels) {
      auto it = run.deviceKernels.find(k.name);
      if (it == run.deviceKernels.end())
        continue;
      if (shown++ == maxKernels)
        break;
      std::string list;
      for (const std::string &d : it->second)
        list += (list.empty() ? "" : ", ") + (d.size() > 60 ? d.substr(0, 57) + "..." : d);
      o << "  " << k.name << ": " << list << "\n";
    }
  }
  groupTable(o, "by op class:", run.byOpClass(), r.measured);
  groupTable(o, "by precision:", run.byPrecision(), r.measured);
  PerStepEnergy ps = perStepEnergy(r);
  if (ps.steps > 0) {
    if (r.measured)
      o << "per step: " << fmt("%.4g", ps.totalJoules) << " ± " << fmt("%.2g J", ps.totalJoulesErr)
        << " (kernels " << fmt("%.4g", ps.kernelJoules) << " ± "
        << fmt("%.2g J", ps.kernelJoulesErr) << ", idle/gaps " << fmt("%.4g", ps.idleJoules)
        << " ± " << fmt("%.2g J", ps.idleJoulesErr) << "), " << seconds(ps.kernelSeconds)
        << " of kernel time; the windows cover " << fmt("%.1f", ps.covered) << " of " << ps.steps
        << " steps\n";
    else
      o << "per step: " << seconds(ps.kernelSeconds) << " of kernel time (" << ps.steps
        << " steps), energy not measured\n";
  }
  o << formatEnergyTarget(run);
  return o.str();
}

std::string formatEnergyTarget(const EnergyRun &run) {
  if (std::isnan(run.targetLoss))
    return "";
  std::ostringstream o;
  o << "energy to target loss " << fmt("%g", run.targetLoss) << ": ";
  if (run.targetStep < 0) {
    o << "not reached\n";
    return o.str();
  }
  o << "reached at step " << run.targetStep + 1 << " after " << fmt("%.3f s", run.targetSeconds);
  if (run.attribution.measured && !std::isnan(run.targetEnergy.joules))
    o << ", " << fmt("%.4g", run.targetEnergy.joules) << " ± "
      << fmt("%.2g J", run.targetEnergy.joulesErr) << "\n";
  else
    o << ", energy not measured\n";
  return o.str();
}

std::string energyRunCsv(const EnergyRun &run) {
  return attributionCsv(run.attribution, run.labels);
}

std::string energyRunJson(const EnergyRun &run) {
  const AttributionResult &r = run.attribution;
  std::ostringstream o;
  o << "{\"timeline\": " << json::quote(run.timeline)
    << ", \"timeline_method\": " << json::quote(run.timelineMethod)
    << ", \"calibration\": " << json::quote(run.calibration)
    << ", \"calibrated\": " << (run.calibrated ? "true" : "false")
    << ", \"run_seconds\": " << num(run.runEnd - run.runStart)
    << ", \"clock_origin_seconds\": " << fmt("%.9f", run.clockOrigin)
    << ",\n\"attribution\": " << attributionJson(r, run.labels);
  auto groups = [&](const char *key, const std::vector<GroupEnergy> &gs) {
    o << ",\n\"" << key << "\": [";
    for (size_t i = 0; i < gs.size(); ++i)
      o << (i ? ", " : "") << "{\"group\": " << json::quote(gs[i].group)
        << ", \"launches\": " << gs[i].launches << ", \"seconds\": " << num(gs[i].seconds)
        << ", \"joules\": " << num(gs[i].joules) << ", \"joules_err\": " << num(gs[i].joulesErr)
        << ", \"share\": " << num(gs[i].share) << "}";
    o << "]";
  };
  PerStepEnergy ps = perStepEnergy(r);
  o << ",\n\"per_step\": {\"steps\": " << ps.steps << ", \"covered\": " << num(ps.covered)
    << ", \"kernel_seconds\": " << num(ps.kernelSeconds) << ", \"joules\": " << num(ps.totalJoules)
    << ", \"joules_err\": " << num(ps.totalJoulesErr)
    << ", \"kernel_joules\": " << num(ps.kernelJoules)
    << ", \"kernel_joules_err\": " << num(ps.kernelJoulesErr)
    << ", \"idle_joules\": " << num(ps.idleJoules)
    << ", \"idle_joules_err\": " << num(ps.idleJoulesErr) << "}";
  o << ",\n\"device_kernels\": {";
  bool firstKernel = true;
  for (const auto &[name, list] : run.deviceKernels) {
    o << (firstKernel ? "" : ", ") << json::quote(name) << ": [";
    for (size_t i = 0; i < list.size(); ++i)
      o << (i ? ", " : "") << json::quote(list[i]);
    o << "]";
    firstKernel = false;
  }
  o << "}";
  groups("by_op_class", run.byOpClass());
  groups("by_precision", run.byPrecision());
  o << ",\n\"losses\": [";
  for (size_t i = 0; i < run.losses.size(); ++i) {
    const LossPoint &p = run.losses[i];
    CumulativeEnergy c = cumulativeEnergyAt(r, run.runStart, p.seconds);
    o << (i ? ",\n  " : "\n  ") << "{\"step\": " << p.step
      << ", \"seconds\": " << num(p.seconds - run.runStart) << ", \"loss\": " << num(p.loss)
      << ", \"cumulative_joules\": " << num(c.joules)
      << ", \"cumulative_joules_err\": " << num(c.joulesErr) << "}";
  }
  o << "]";
  if (!std::isnan(run.targetLoss)) {
    bool reached = run.targetStep >= 0;
    o << ",\n\"target\": {\"loss\": " << num(run.targetLoss)
      << ", \"reached\": " << (reached ? "true" : "false")
      << ", \"step\": " << (reached ? std::to_string(run.targetStep) : "null")
      << ", \"seconds\": " << num(reached ? run.targetSeconds : kNaN)
      << ", \"joules\": " << num(reached ? run.targetEnergy.joules : kNaN)
      << ", \"joules_err\": " << num(reached ? run.targetEnergy.joulesErr : kNaN) << "}";
  }
  o << "}\n";
  return o.str();
}

//===--- HTML -----------------------------------------------------------------===//

namespace {

std::string esc(const std::string &s) {
  std::string o;
  for (char c : s) {
    switch (c) {
    case '<':
      o += "&lt;";
      break;
    case '>':
      o += "&gt;";
      break;
    case '&':
      o += "&amp;";
      break;
    case '"':
      o += "&quot;";
      break;
    default:
      o += c;
    }
  }
  return o;
}

struct Point {
  double x, y;
};

/// At most `n` points: consecutive points averaged in equal buckets (a long run's
/// per-step series stays a page, not megabytes).
std::vector<Point> thin(const std::vector<Point> &p, size_t n) {
  if (p.size() <= n)
    return p;
  std::vector<Point> out;
  for (size_t b = 0; b < n; ++b) {
    size_t a = b * p.size() / n, e = (b + 1) * p.size() / n;
    Point m{0, 0};
    for (size_t i = a; i < e; ++i)
      m.x += p[i].x, m.y += p[i].y;
    out.push_back({m.x / double(e - a), m.y / double(e - a)});
  }
  return out;
}

constexpr int kW = 640, kH = 300, kL = 70, kR = 20, kT = 30, kB = 45;

/// A line plot with a marker per point (class "point", data-x / data-y).
std::string linePlot(const std::string &id, const std::string &title, const std::string &xLabel,
                     const std::string &yLabel, std::vector<Point> pts) {
  pts = thin(pts, 1000);
  std::ostringstream o;
  o << "<figure><svg id=\"" << id
    << "\" class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kW << "\" height=\""
    << kH << "\" data-points=\"" << pts.size() << "\">\n"
    << "<text x=\"" << kW / 2 << "\" y=\"18\" text-anchor=\"middle\" class=\"title\">" << esc(title)
    << "</text>\n";
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (!pts.empty()) {
    x0 = x1 = pts[0].x;
    y1 = pts[0].y;
    y0 = std::min(0.0, pts[0].y);
    for (const Point &p : pts) {
      x0 = std::min(x0, p.x), x1 = std::max(x1, p.x);
      y0 = std::min(y0, p.y), y1 = std::max(y1, p.y);
    }
    if (x1 == x0)
      x1 = x0 + 1;
    if (y1 == y0)
      y1 = y0 + 1;
  }
  auto X = [&](double x) { return kL + (x - x0) / (x1 - x0) * (kW - kL - kR); };
  auto Y = [&](double y) { return kH - kB - (y - y0) / (y1 - y0) * (kH - kT - kB); };
  o << "<line x1=\"" << kL << "\" y1=\"" << kH - kB << "\" x2=\"" << kW - kR << "\" y2=\""
    << kH - kB << "\" stroke=\"#333\"/><line x1=\"" << kL << "\" y1=\"" << kT << "\" x2=\"" << kL
    << "\" y2=\"" << kH - kB << "\" stroke=\"#333\"/>\n";
  for (double f : {0.0, 0.5, 1.0}) {
    o << "<text x=\"" << X(x0 + f * (x1 - x0)) << "\" y=\"" << kH - kB + 16
      << "\" text-anchor=\"middle\" class=\"tick\">" << fmt("%.4g", x0 + f * (x1 - x0)) << "</text>"
      << "<text x=\"" << kL - 6 << "\" y=\"" << Y(y0 + f * (y1 - y0)) + 4
      << "\" text-anchor=\"end\" class=\"tick\">" << fmt("%.4g", y0 + f * (y1 - y0)) << "</text>\n";
  }
  o << "<text x=\"" << (kL + kW - kR) / 2 << "\" y=\"" << kH - 6 << "\" text-anchor=\"middle\">"
    << esc(xLabel) << "</text><text transform=\"translate(14," << (kT + kH - kB) / 2
    << ") rotate(-90)\" text-anchor=\"middle\">" << esc(yLabel) << "</text>\n";
  if (!pts.empty()) {
    o << "<polyline fill=\"none\" stroke=\"#1f77b4\" points=\"";
    for (const Point &p : pts)
      o << fmt("%.1f", X(p.x)) << "," << fmt("%.1f", Y(p.y)) << " ";
    o << "\"/>\n";
    for (const Point &p : pts)
      o << "<circle class=\"point\" r=\"2.5\" fill=\"#1f77b4\" cx=\"" << fmt("%.1f", X(p.x))
        << "\" cy=\"" << fmt("%.1f", Y(p.y)) << "\" data-x=\"" << num(p.x) << "\" data-y=\""
        << num(p.y) << "\"/>\n";
  } else {
    o << "<text x=\"" << kW / 2 << "\" y=\"" << kH / 2
      << "\" text-anchor=\"middle\">no data</text>\n";
  }
  o << "</svg></figure>\n";
  return o.str();
}

struct Bar {
  std::string label;
  double value, err; // err NaN: no error bar
};

/// Horizontal bars (class "bar", data-value) with +/- whiskers.
std::string barPlot(const std::string &id, const std::string &title, const std::string &unit,
                    const std::vector<Bar> &bars) {
  const int rowH = 20, labelW = 220, h = kT + rowH * int(bars.size()) + 20;
  double vmax = 0;
  for (const Bar &b : bars)
    vmax = std::max(vmax, b.value + (std::isnan(b.err) ? 0 : b.err));
  if (vmax <= 0)
    vmax = 1;
  auto X = [&](double v) { return labelW + v / vmax * (kW - labelW - 90); };
  std::ostringstream o;
  o << "<figure><svg id=\"" << id
    << "\" class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kW << "\" height=\""
    << h << "\" data-points=\"" << bars.size() << "\">\n"
    << "<text x=\"" << kW / 2 << "\" y=\"18\" text-anchor=\"middle\" class=\"title\">" << esc(title)
    << "</text>\n";
  for (size_t i = 0; i < bars.size(); ++i) {
    const Bar &b = bars[i];
    int y = kT + rowH * int(i);
    o << "<text x=\"" << labelW - 6 << "\" y=\"" << y + 14 << "\" text-anchor=\"end\">"
      << esc(b.label.substr(0, 32)) << "</text><rect class=\"bar\" x=\"" << labelW << "\" y=\""
      << y + 3 << "\" height=\"" << rowH - 6 << "\" width=\"" << fmt("%.1f", X(b.value) - labelW)
      << "\" fill=\"#ff7f0e\" data-label=\"" << esc(b.label) << "\" data-value=\"" << num(b.value)
      << "\"/>";
    if (!std::isnan(b.err))
      o << "<line x1=\"" << fmt("%.1f", X(std::max(0.0, b.value - b.err))) << "\" x2=\""
        << fmt("%.1f", X(b.value + b.err)) << "\" y1=\"" << y + rowH / 2 << "\" y2=\""
        << y + rowH / 2 << "\" stroke=\"#333\"/>";
    o << "<text x=\"" << fmt("%.1f", X(b.value + (std::isnan(b.err) ? 0 : b.err)) + 4) << "\" y=\""
      << y + 14 << "\">" << fmt("%.4g", b.value) << " " << esc(unit) << "</text>\n";
  }
  o << "</svg></figure>\n";
  return o.str();
}

} // namespace

std::string energyRunHtml(const EnergyRun &run, const std::string &title) {
  const AttributionResult &r = run.attribution;
  const bool m = r.measured;
  std::ostringstream o;
  o << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" << esc(title)
    << "</title>\n<style>body{font-family:sans-serif;max-width:700px;margin:1em auto}"
       "svg{background:#fafafa;border:1px solid #ddd}text{font-size:11px}.title{font-size:13px;"
       "font-weight:bold}table{border-collapse:collapse}td,th{padding:2px 8px;text-align:right}"
       "</style></head><body>\n<h1>"
    << esc(title) << "</h1>\n<p>meter: " << esc(r.meterName)
    << "<br>timeline: " << esc(run.timelineMethod) << "<br>calibration: " << esc(run.calibration)
    << "</p>\n";
  if (m)
    o << "<p id=\"total\">measured: " << fmt("%.4g J", r.measuredJoules) << " over "
      << fmt("%.3f s", r.measuredSeconds) << " in " << r.windows.size() << " windows; idle/gaps "
      << fmt("%.4g J", r.idleJoules) << " ± " << fmt("%.2g J", r.idleJoulesErr) << "</p>\n";
  else
    o << "<p id=\"total\"><b>energy not measured</b>: no meter; the plots show time instead of "
         "joules.</p>\n";
  if (!std::isnan(run.targetLoss)) {
    o << "<p id=\"target\">energy to target loss " << fmt("%g", run.targetLoss) << ": ";
    if (run.targetStep < 0)
      o << "not reached";
    else
      o << "step " << run.targetStep + 1 << ", " << fmt("%.3f s", run.targetSeconds)
        << (m && !std::isnan(run.targetEnergy.joules)
                ? ", " + fmt("%.4g", run.targetEnergy.joules) + " ± " +
                      fmt("%.2g J", run.targetEnergy.joulesErr)
                : std::string(", energy not measured"));
    o << "</p>\n";
  }

  std::vector<Point> perStep;
  for (const StepEnergy &s : r.steps)
    if (s.step >= 0 && (!m || s.secondsInWindows >= 0.999 * s.seconds)) // whole steps only
      perStep.push_back({double(s.step + 1), m ? s.joules : s.seconds * 1e3});
  o << linePlot("per-step",
                m ? "energy per step (kernels)" : "kernel time per step (energy not measured)",
                "step", m ? "J" : "ms", perStep);

  std::vector<Bar> kernels;
  for (size_t i = 0; i < r.kernels.size() && i < 15; ++i) {
    const KernelEnergy &k = r.kernels[i];
    kernels.push_back(m ? Bar{k.name, k.joules, k.joulesErr} : Bar{k.name, k.seconds, kNaN});
  }
  if (m)
    kernels.push_back({"(idle / gaps)", r.idleJoules, r.idleJoulesErr});
  o << barPlot("by-kernel",
               m ? "energy by kernel (top 15)" : "time by kernel (top 15; energy not measured)",
               m ? "J" : "s", kernels);
  for (auto [id, name, groups] : {std::tuple{"by-op-class", "op class", run.byOpClass()},
                                  std::tuple{"by-precision", "precision", run.byPrecision()}}) {
    std::vector<Bar> bars;
    for (const GroupEnergy &g : groups)
      bars.push_back(m ? Bar{g.group, g.joules, g.joulesErr} : Bar{g.group, g.seconds, kNaN});
    o << barPlot(
        id, std::string(m ? "energy by " : "time by ") + name + (m ? "" : " (energy not measured)"),
        m ? "J" : "s", bars);
  }

  std::vector<Point> loss;
  for (const LossPoint &p : run.losses) {
    double x = m ? cumulativeEnergyAt(r, run.runStart, p.seconds).joules : p.seconds - run.runStart;
    loss.push_back({x, p.loss});
  }
  o << linePlot("loss",
                m ? "loss against cumulative energy" : "loss against time (energy not measured)",
                m ? "cumulative energy (J)" : "seconds", "loss", loss);
  o << "</body></html>\n";
  return o.str();
}

} // namespace mantissa
