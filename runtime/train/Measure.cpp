//===- Measure.cpp - mantissa-run measure: time per training step of plans ===//
#include "runtime/train/Measure.h"

#include "common/Error.h"
#include "runtime/io/AtomicFile.h"
#include "runtime/io/MiniJson.h"
#include "runtime/train/Trainer.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace mantissa {
namespace {

const char *kMeasureUsage =
    "usage: mantissa-run measure PLAN... --json RESULTS.json [options]\n"
    "  --steps N          timed steps per plan (default 50)\n"
    "  --warmup N         untimed steps first (default 10)\n"
    "  --backend cpu|cuda (default cuda; falls back to cpu without a GPU, saying so)\n"
    "  --data D           as for train (default: by task; nowcast uses 64 samples)\n"
    "  --threads N        CPU threads\n";

int64_t positive(const std::string &option, const std::string &value) {
  char *end = nullptr;
  errno = 0;
  long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || v < 0)
    throw Error("option '" + option + "' needs a non-negative integer, got '" + value + "'");
  // strtoll clamps what does not fit, and warmup + steps must not overflow; --threads is an int.
  if (errno == ERANGE || v > std::numeric_limits<int>::max())
    throw Error("option '" + option + "' '" + value + "': too large");
  return v;
}

} // namespace

int measureMain(int argc, char **argv) {
  try {
    std::vector<std::string> plans;
    std::string jsonPath, backend = "cuda", data;
    int64_t steps = 50, warmup = 10, threads = 0;
    for (int i = 0; i < argc; ++i) {
      std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        std::fputs(kMeasureUsage, stdout);
        return 0;
      }
      if (arg.empty() || arg[0] != '-') {
        plans.push_back(arg);
        continue;
      }
      if (i + 1 >= argc)
        throw Error("option '" + arg + "' needs a value");
      std::string value = argv[++i];
      if (arg == "--json")
        jsonPath = value;
      else if (arg == "--steps")
        steps = positive(arg, value);
      else if (arg == "--warmup")
        warmup = positive(arg, value);
      else if (arg == "--backend")
        backend = value;
      else if (arg == "--data")
        data = value;
      else if (arg == "--threads")
        threads = positive(arg, value);
      else
        throw Error("unknown measure option '" + arg + "'\n" + kMeasureUsage);
    }
    if (plans.empty())
      throw Error("measure needs at least one plan");
    if (jsonPath.empty())
      throw Error("measure needs --json RESULTS.json");
    if (steps == 0)
      throw Error("--steps must be positive");
    // Written after every plan has run: its folder is checked now, and it may not be a plan.
    checkOutputPath("--json", jsonPath);
    for (const std::string &plan : plans) {
      std::error_code ec;
      if (std::filesystem::equivalent(plan, jsonPath, ec))
        throw Error("--json " + jsonPath + " is the plan " + plan + "; name the results differently");
    }

    std::string device, ranOn;
    std::string rows;
    std::printf("%-48s %12s\n", "plan", "ms/step");
    for (size_t i = 0; i < plans.size(); ++i) {
      TrainOptions t;
      t.plan = plans[i];
      t.data = data;
      t.steps = warmup + steps;
      t.warmupSteps = warmup;
      t.fixedBatch = true; // one batch fed once: the data pipeline is not timed
      t.backend = backend;
      t.threads = int(threads);
      t.trainSamples = 64;
      t.heldOutSamples = 16;
      t.quiet = true;
      TrainSummary s = train(t);
      device = s.device;
      ranOn = s.backend;
      double ms = s.timedSecondsPerStep * 1e3;
      std::printf("%-48s %12.4f\n", plans[i].c_str(), ms);
      char num[64];
      std::snprintf(num, sizeof num, "%.6g", ms);
      rows += std::string(rows.empty() ? "" : ",\n") + "    {\"plan\": " + json::quote(plans[i]) +
              ", \"ms_per_step\": " + num + ", \"precision\": " + json::quote(s.precision) +
              ", \"skipped_steps\": " + std::to_string(s.skippedSteps) + "}";
    }
    std::ostringstream out;
    out << "{\n  \"backend\": " << json::quote(ranOn) << ",\n  \"device\": " << json::quote(device)
        << ",\n  \"steps\": " << steps << ",\n  \"warmup\": " << warmup
        << ",\n  \"timing\": \"wall clock per training step on one fixed batch, after warmup, "
           "between device synchronisations\",\n  \"plans\": [\n"
        << rows << "\n  ]\n}\n";
    const std::string text = out.str();
    writeFileAtomic(jsonPath, text.data(), text.size()); // an Error naming the path

    std::printf("wrote %s (%s: %s)\n", jsonPath.c_str(), ranOn.c_str(), device.c_str());
    return 0;
  } catch (const Error &e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

} // namespace mantissa
