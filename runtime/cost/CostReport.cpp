//===- CostReport.cpp - inspect --cost: the cost model per step of a plan --===//
#include "common/Error.h"
#include "runtime/cost/CostModel.h"
#include "runtime/io/MiniJson.h"

#include <cstdio>
#include <cstring>
#include <fstream>

namespace mantissa {

int costMain(int argc, char **argv) {
  const char *usage = "usage: inspect --cost h100|h200|DEVICE.json PLAN [--json OUT.json]\n";
  try {
    std::string device, plan, jsonPath;
    for (int i = 0; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        std::fputs(usage, stdout);
        return 0;
      }
      if ((arg == "--cost" || arg == "--json") && i + 1 < argc) {
        (arg == "--cost" ? device : jsonPath) = argv[++i];
      } else if (!arg.empty() && arg[0] != '-' && plan.empty()) {
        plan = arg;
      } else {
        throw Error("inspect --cost: unexpected argument '" + arg + "'\n" + usage);
      }
    }
    if (device.empty() || plan.empty())
      throw Error(std::string("inspect --cost needs a device and a plan\n") + usage);
    DeviceSpec spec = loadDeviceSpec(device);
    LoadedPlan loaded = LoadedPlan::load(plan);
    PlanCost cost = costPlan(loaded, spec);
    std::printf("modelled cost of %s train_step on %s (roofline + %.1f us launch per kernel)\n",
                plan.c_str(), spec.name.c_str(), spec.launchOverhead * 1e6);
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
              ", \"where\": " + json::quote(where) + ", " + buf;
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
