//===- CostReport.cpp - inspect --cost: the cost model per step of a plan --===//
#include "common/Error.h"
#include "runtime/cost/CostModel.h"
#include "runtime/io/AtomicFile.h"
#include "runtime/io/MiniJson.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace mantissa {
namespace {

const char *kUsage = "usage: inspect --cost h100|h200|DEVICE.json PLAN [--json OUT.json]\n"
                     "       inspect --cost h100|h200|DEVICE.json --fit MEASURED.json -o OUT.json\n";

const json::Value &field(const json::Value &v, const char *key, json::Value::Kind kind,
                         const std::string &where) {
  for (const auto &[k, m] : v.members)
    if (k == key) {
      if (m.kind != kind) {
        json::Value expected;
        expected.kind = kind;
        throw Error(where + ": \"" + key + "\" is " + m.kindName() + ", expected " +
                    expected.kindName());
      }
      return m;
    }
  throw Error(where + ": no \"" + key + "\"");
}

double median(std::vector<double> v) {
  if (v.empty())
    return NAN;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/// One plan's measured kernels against the model: (modelled, measured) seconds per step.
struct MeasuredStep {
  int index = 0;
  double seconds = 0;
  double watts = NAN; // the device's power while it runs, where measured
};
struct Measured {
  std::string plan;
  std::vector<MeasuredStep> steps;
};

std::vector<Measured> readMeasured(const std::string &path) {
  std::ifstream in(path);
  if (!in)
    throw Error("--fit '" + path + "': cannot read it");
  json::Value root = json::parseFile(path); // a directory opens, but is no file
  std::vector<Measured> out;
  const json::Value &plans = field(root, "plans", json::Value::Kind::Array, path);
  for (size_t p = 0; p < plans.items.size(); ++p) {
    const std::string where = path + ": plans[" + std::to_string(p) + "]";
    Measured m;
    m.plan = field(plans.items[p], "plan", json::Value::Kind::String, where).text;
    const json::Value &steps = field(plans.items[p], "steps", json::Value::Kind::Array, where);
    for (size_t i = 0; i < steps.items.size(); ++i) {
      const std::string at = where + ".steps[" + std::to_string(i) + "]";
      int64_t index = 0;
      if (!field(steps.items[i], "index", json::Value::Kind::Number, at).asInt64(index) || index < 0)
        throw Error(at + ": \"index\" is not a step index");
      double s = std::strtod(
          field(steps.items[i], "seconds", json::Value::Kind::Number, at).text.c_str(), nullptr);
      if (!(s >= 0) || !std::isfinite(s))
        throw Error(at + ": \"seconds\" must be a time >= 0");
      double watts = NAN;
      for (const auto &[k, v] : steps.items[i].members)
        if (k == "watts") {
          watts = std::strtod(
              field(steps.items[i], "watts", json::Value::Kind::Number, at).text.c_str(), nullptr);
          if (!(watts > 0) || !std::isfinite(watts))
            throw Error(at + ": \"watts\" must be a power > 0");
        }
      m.steps.push_back({int(index), s, watts});
    }
    out.push_back(std::move(m));
  }
  if (out.empty())
    throw Error(path + ": no plans measured");
  return out;
}

int fitMain(const DeviceSpec &device, const std::string &measuredPath, const std::string &outPath) {
  std::vector<Measured> measured = readMeasured(measuredPath);
  struct Row {
    std::string plan, costClass;
    OpClass opClass;
    double roofline, measured, watts;
  };
  std::vector<Row> rows;
  DeviceSpec unfitted = device;
  unfitted.efficiency.clear();
  for (const Measured &m : measured) {
    LoadedPlan plan = LoadedPlan::load(m.plan);
    PlanCost cost = costPlan(plan, unfitted);
    for (const MeasuredStep &st : m.steps) {
      if (size_t(st.index) >= cost.kernels.size())
        throw Error(measuredPath + ": " + m.plan + " has " + std::to_string(cost.kernels.size()) +
                    " train_step steps, no step " + std::to_string(st.index));
      const KernelCost &k = cost.kernels[size_t(st.index)];
      rows.push_back({m.plan, k.work.costClass, k.work.opClass,
                      k.time.seconds - device.launchOverhead, st.seconds, st.watts});
    }
  }
  std::vector<FitSample> samples;
  for (const Row &r : rows)
    samples.push_back({r.costClass, r.roofline, r.measured});
  DeviceSpec fitted = unfitted;
  fitted.efficiency = fitEfficiency(samples, device.launchOverhead);
  // Power per op class, where the kernels' watts were measured (a profile's calibration):
  // their time-weighted mean, so that the class's modelled joules add up to measured ones.
  std::map<OpClass, std::pair<double, double>> power; // joules, seconds
  for (const Row &r : rows)
    if (!std::isnan(r.watts)) {
      power[r.opClass].first += r.watts * r.measured;
      power[r.opClass].second += r.measured;
    }
  for (const auto &[opClass, js] : power) {
    if (!(js.second > 0))
      continue;
    opClassPower(fitted, opClass) = js.first / js.second;
  }
  // A row's modelled time on `d`.
  auto modelled = [](const DeviceSpec &d, const Row &r) {
    return r.roofline / efficiencyOf(d, r.costClass) + d.launchOverhead;
  };

  std::printf("efficiency per cost class, fitted to %zu kernels of %zu plans (%s) on %s:\n",
              rows.size(), measured.size(), measuredPath.c_str(), device.name.c_str());
  std::printf("%-32s %7s %12s %12s %10s\n", "class", "kernels", "measured ms", "roofline ms",
              "efficiency");
  std::map<std::string, std::pair<int, std::pair<double, double>>> byClass;
  for (const Row &r : rows) {
    auto &c = byClass[r.costClass];
    ++c.first;
    c.second.first += r.measured;
    c.second.second += r.roofline;
  }
  for (const auto &[costClass, c] : byClass) {
    auto e = fitted.efficiency.find(costClass);
    std::printf("%-32s %7d %12.4f %12.4f %10s\n", costClass.c_str(), c.first, c.second.first * 1e3,
                c.second.second * 1e3,
                e == fitted.efficiency.end() ? "- (launch)" : std::to_string(e->second).c_str());
  }
  // The model's error before and after, per kernel and per plan (in sample: the fit
  // makes each class's total exact over these kernels; a held-out plan tests it).
  auto errors = [&](const DeviceSpec &d, const char *label) {
    std::vector<double> absErr;
    std::map<std::string, std::pair<double, double>> totals; // plan: modelled, measured
    for (const Row &r : rows) {
      const double t = modelled(d, r);
      absErr.push_back(std::fabs(t - r.measured));
      totals[r.plan].first += t;
      totals[r.plan].second += r.measured;
    }
    std::printf("%s: median |error| per kernel %.1f us", label, median(absErr) * 1e6);
    for (const auto &[plan, t] : totals)
      std::printf("; %s %.3f ms modelled, %.3f measured", plan.c_str(), t.first * 1e3,
                  t.second * 1e3);
    std::printf("\n");
  };
  errors(unfitted, "roofline");
  errors(fitted, "fitted");
  if (!power.empty()) {
    std::printf("power per op class, time-weighted over the kernels with measured watts:");
    for (const auto &[opClass, js] : power)
      std::printf(" %s %.1f W (was %.0f)", opClassName(opClass), js.first / js.second,
                  opClassPower(device, opClass));
    std::printf("\n");
    // Energy of those kernels: modelled (time x class power) against measured (time x watts).
    double before = 0, after = 0, measuredJ = 0;
    for (const Row &r : rows)
      if (!std::isnan(r.watts)) {
        before += modelled(unfitted, r) * opClassPower(unfitted, r.opClass);
        after += modelled(fitted, r) * opClassPower(fitted, r.opClass);
        measuredJ += r.measured * r.watts;
      }
    std::printf("energy of those kernels: roofline %.4g J, fitted %.4g J, measured %.4g J\n",
                before, after, measuredJ);
  }
  std::string text = formatDeviceSpec(
      fitted, device.name + " with efficiencies fitted to the kernel times in " + measuredPath);
  writeFileAtomic(outPath, text.data(), text.size());
  std::printf("wrote %s (use it as --device / --cost)\n", outPath.c_str());
  return 0;
}

} // namespace

int costMain(int argc, char **argv) {
  try {
    std::string device, plan, jsonPath, fitPath, outPath;
    for (int i = 0; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        std::fputs(kUsage, stdout);
        return 0;
      }
      if ((arg == "--cost" || arg == "--json" || arg == "--fit" || arg == "-o") && i + 1 < argc) {
        (arg == "--cost" ? device : arg == "--json" ? jsonPath : arg == "--fit" ? fitPath : outPath) =
            argv[++i];
      } else if (!arg.empty() && arg[0] != '-' && plan.empty()) {
        plan = arg;
      } else {
        throw Error("inspect --cost: unexpected argument '" + arg + "'\n" + kUsage);
      }
    }
    if (!fitPath.empty()) {
      if (device.empty() || outPath.empty() || !plan.empty() || !jsonPath.empty())
        throw Error(std::string("inspect --cost --fit needs a device, the measured times and "
                                "-o OUT.json (the plans are named in the measured file)\n") +
                    kUsage);
      return fitMain(loadDeviceSpec(device), fitPath, outPath);
    }
    if (device.empty() || plan.empty())
      throw Error(std::string("inspect --cost needs a device and a plan\n") + kUsage);
    DeviceSpec spec = loadDeviceSpec(device);
    LoadedPlan loaded = LoadedPlan::load(plan);
    PlanCost cost = costPlan(loaded, spec);
    std::printf("modelled cost of %s train_step on %s (roofline%s + %.1f us launch per kernel)\n",
                plan.c_str(), spec.name.c_str(),
                spec.efficiency.empty() ? "" : " / fitted efficiency", spec.launchOverhead * 1e6);
    std::printf("%-48s %-7s %12s %12s %10s %10s\n", "step", "class", "GFLOP", "MB", "us", "mJ");
    std::string rows;
    for (size_t i = 0; i < cost.kernels.size(); ++i) {
      const KernelCost &k = cost.kernels[i];
      std::string where = "step " + std::to_string(i) + " '" + k.step + "' (" + k.kernel + ")";
      std::printf("%-48s %-7s %12.4f %12.4f %10.2f %10.4f\n", where.c_str(), opClassName(k.work.opClass),
                  k.work.flops * 1e-9, k.work.bytes * 1e-6, k.time.seconds * 1e6, k.time.joules * 1e3);
      char buf[256];
      std::snprintf(buf, sizeof buf, "\"class\": \"%s\", \"flops\": %.6g, \"bytes\": %.6g, \"seconds\": %.6g, \"joules\": %.6g}",
                    opClassName(k.work.opClass), k.work.flops, k.work.bytes, k.time.seconds, k.time.joules);
      rows += std::string(rows.empty() ? "" : ",\n") + "    {\"index\": " + std::to_string(i) +
              ", \"where\": " + json::quote(where) + ", \"cost_class\": " +
              json::quote(k.work.costClass) + ", " + buf;
    }
    std::printf("total: %.4f ms/step, %.4f J/step (%zu kernels)\n", cost.seconds * 1e3, cost.joules,
                cost.kernels.size());
    if (!jsonPath.empty()) {
      std::ofstream out(jsonPath);
      char total[128];
      std::snprintf(total, sizeof total, "\"seconds\": %.6g, \"joules\": %.6g", cost.seconds, cost.joules);
      out << "{\n  \"device\": " << json::quote(spec.name) << ",\n  \"plan\": " << json::quote(plan)
          << ",\n  " << total << ",\n  \"steps\": [\n" << rows << "\n  ]\n}\n";
      if (!out)
        throw Error("cannot write '" + jsonPath + "'");
    }
    return 0;
  } catch (const Error &e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

} // namespace mantissa
