//===- Report.cpp ---------------------------------------------------------===//
#include "runtime/energy/Report.h"
#include "runtime/energy/ReportFormat.h"

#include "runtime/io/MiniJson.h"

#include <cmath>
#include <cstdio>
#include <sstream>

namespace mantissa {
using namespace report;
namespace {

/// The op class and precision columns ("" without labels; "?" for an unlabelled kernel).
std::string labelColumns(const KernelLabels &labels, const std::string &kernel) {
  if (labels.empty())
    return "";
  auto it = labels.find(kernel);
  char buf[64];
  std::snprintf(buf, sizeof buf, "  %-28.28s %-5.5s", it == labels.end() ? "?" : it->second.opClass.c_str(),
                it == labels.end() ? "?" : it->second.precision.c_str());
  return buf;
}

std::string labelHeader(const KernelLabels &labels) {
  return labels.empty() ? "" : "  op class                     prec.";
}

} // namespace

std::string formatAttributionTable(const AttributionResult &r, size_t maxKernels,
                                   const KernelLabels &labels) {
  std::ostringstream o;
  if (!r.measured) {
    o << "energy: not measured (meter: " << r.meterName << ")\n";
    o << "kernel                          launches        time  energy      " << labelHeader(labels) << "\n";
    size_t n = 0;
    for (const KernelEnergy &k : r.kernels) {
      if (n++ == maxKernels)
        break;
      char line[256];
      std::snprintf(line, sizeof line, "%-30.30s %9lld %12s  not measured", k.name.c_str(),
                    static_cast<long long>(k.launches), seconds(k.seconds).c_str());
      o << line << labelColumns(labels, k.name) << "\n";
    }
    return o.str();
  }
  o << "energy by kernel (meter: " << r.meterName << "; " << r.windows.size()
    << " windows, " << fmt("%.3f", r.measuredSeconds) << " s, "
    << fmt("%.3f", r.measuredJoules) << " J measured)\n";
  o << "kernel                          launches        time            joules  share    watts"
    << labelHeader(labels) << "\n";
  size_t n = 0;
  for (const KernelEnergy &k : r.kernels) {
    if (n++ == maxKernels) {
      o << "... " << (r.kernels.size() - maxKernels) << " more kernels\n";
      break;
    }
    char line[256];
    std::snprintf(line, sizeof line, "%-30.30s %9lld %12s %9.3f ± %-6.3f %5.1f%% %8.1f",
                  k.name.c_str(), static_cast<long long>(k.launches), seconds(k.seconds).c_str(),
                  k.joules, k.joulesErr, 100.0 * k.share, k.watts);
    o << line << labelColumns(labels, k.name) << "\n";
  }
  char line[256];
  std::snprintf(line, sizeof line, "%-30.30s %9s %12s %9.3f ± %-6.3f %5.1f%%\n", "(idle / gaps)", "",
                seconds(r.idleSeconds).c_str(), r.idleJoules, r.idleJoulesErr,
                100.0 * r.idleShare);
  o << line;
  return o.str();
}

std::string attributionCsv(const AttributionResult &r, const KernelLabels &labels) {
  std::ostringstream o;
  o << "kernel,launches,seconds,seconds_in_windows,joules,joules_err,share,watts"
    << (labels.empty() ? "" : ",op_class,precision") << "\n";
  auto labelFields = [&](const std::string &kernel) -> std::string {
    if (labels.empty())
      return "";
    auto it = labels.find(kernel);
    return it == labels.end() ? ",," : "," + csvField(it->second.opClass) + "," + csvField(it->second.precision);
  };
  auto j = [&](double v) { return r.measured ? num(v) : std::string("not measured"); };
  for (const KernelEnergy &k : r.kernels)
    o << csvField(k.name) << ',' << k.launches << ',' << num(k.seconds) << ','
      << num(k.secondsInWindows) << ',' << j(k.joules) << ',' << j(k.joulesErr) << ','
      << j(k.share) << ',' << j(k.watts) << labelFields(k.name) << '\n';
  o << "(idle),," << num(r.idleSeconds) << ',' << num(r.idleSeconds) << ',' << j(r.idleJoules)
    << ',' << j(r.idleJoulesErr) << ',' << j(r.idleShare) << ','
    << j(r.measured && r.idleSeconds > 0 ? r.idleJoules / r.idleSeconds : 0.0)
    << (labels.empty() ? "" : ",,") << '\n';
  return o.str();
}

std::string attributionJson(const AttributionResult &r, const KernelLabels &labels) {
  std::ostringstream o;
  o << "{\"measured\": " << (r.measured ? "true" : "false")
    << ", \"meter\": " << json::quote(r.meterName)
    << ", \"measured_joules\": " << num(r.measuredJoules)
    << ", \"measured_seconds\": " << num(r.measuredSeconds)
    << ", \"launches_outside_windows\": " << r.launchesOutsideWindows
    << ",\n \"idle\": {\"seconds\": " << num(r.idleSeconds) << ", \"joules\": " << num(r.idleJoules)
    << ", \"joules_err\": " << num(r.idleJoulesErr) << ", \"share\": " << num(r.idleShare) << "},\n"
    << " \"kernels\": [";
  for (size_t i = 0; i < r.kernels.size(); ++i) {
    const KernelEnergy &k = r.kernels[i];
    o << (i ? ",\n  " : "\n  ") << "{\"name\": " << json::quote(k.name)
      << ", \"launches\": " << k.launches << ", \"seconds\": " << num(k.seconds)
      << ", \"seconds_in_windows\": " << num(k.secondsInWindows)
      << ", \"joules\": " << num(k.joules) << ", \"joules_err\": " << num(k.joulesErr)
      << ", \"share\": " << num(k.share) << ", \"watts\": " << num(k.watts);
    auto it = labels.find(k.name);
    if (it != labels.end())
      o << ", \"op_class\": " << json::quote(it->second.opClass)
        << ", \"precision\": " << json::quote(it->second.precision);
    o << "}";
  }
  o << "],\n \"steps\": [";
  for (size_t i = 0; i < r.steps.size(); ++i) {
    const StepEnergy &s = r.steps[i];
    o << (i ? ",\n  " : "\n  ") << "{\"step\": " << s.step << ", \"launches\": " << s.launches
      << ", \"seconds\": " << num(s.seconds)
      << ", \"seconds_in_windows\": " << num(s.secondsInWindows) << ", \"joules\": " << num(s.joules)
      << ", \"joules_err\": " << num(s.joulesErr) << "}";
  }
  o << "],\n \"windows\": [";
  for (size_t i = 0; i < r.windows.size(); ++i) {
    const WindowEnergy &w = r.windows[i];
    o << (i ? ",\n  " : "\n  ") << "{\"start\": " << num(w.start) << ", \"end\": " << num(w.end)
      << ", \"measured_joules\": " << num(w.measuredJoules)
      << ", \"meter_err_joules\": " << num(w.meterErrJoules)
      << ", \"lag_seconds\": " << num(w.lagSeconds)
      << ", \"boundary_lag_seconds\": " << num(w.boundaryLagSeconds)
      << ", \"kernel_joules\": " << num(w.kernelJoules)
      << ", \"idle_joules\": " << num(w.idleJoules)
      << ", \"busy_seconds\": " << num(w.busySeconds) << ", \"scale\": " << num(w.scale) << "}";
  }
  o << "]}\n";
  return o.str();
}

std::string chromeTraceJson(const KernelTimeline &timeline, const AttributionResult &r) {
  std::ostringstream o;
  o << "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n";
  bool first = true;
  auto sep = [&]() {
    if (!first)
      o << ",\n";
    first = false;
  };
  sep();
  o << "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": 0, \"args\": {\"name\": \"device\"}}";
  for (const KernelLaunch &l : timeline.launches()) {
    sep();
    o << "{\"name\": " << json::quote(timeline.names()[l.kernel])
      << ", \"cat\": \"kernel\", \"ph\": \"X\", \"pid\": 0, \"tid\": 0, \"ts\": "
      << fmt("%.3f", l.start * 1e6) << ", \"dur\": " << fmt("%.3f", (l.end - l.start) * 1e6)
      << ", \"args\": {\"step\": " << l.step << "}}";
  }
  if (r.measured) {
    for (const WindowEnergy &w : r.windows) {
      double watts = w.measuredJoules / (w.end - w.start);
      sep();
      o << "{\"name\": \"power\", \"ph\": \"C\", \"pid\": 0, \"ts\": " << fmt("%.3f", w.start * 1e6)
        << ", \"args\": {\"watts\": " << num(watts) << "}}";
    }
    if (!r.windows.empty()) {
      sep();
      o << "{\"name\": \"power\", \"ph\": \"C\", \"pid\": 0, \"ts\": "
        << fmt("%.3f", r.windows.back().end * 1e6) << ", \"args\": {\"watts\": 0}}";
    }
  }
  o << "\n]}\n";
  return o.str();
}

} // namespace mantissa
