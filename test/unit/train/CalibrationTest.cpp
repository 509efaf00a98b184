//===- CalibrationTest.cpp - the calibration file: heat matching's fields ---===//
#include "runtime/train/Calibration.h"
#include "common/Error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <unistd.h>

using namespace mantissa;

namespace {

std::string tempPath(const char *name) {
  return testing::TempDir() + "/" + std::to_string(getpid()) + "-" + name;
}

void writeText(const std::string &path, const std::string &text) { std::ofstream(path) << text; }

TEST(CalibrationFile, TrainingAndWindowStartTemperaturesRoundTrip) {
  CalibrationFile c;
  c.plan = "m.plan", c.device = "dev", c.meter = "NVML (GPU 0)";
  c.trainingCelsius = 61.5;
  c.idle = {"(idle)", 120.25, 0.01, 0, 0, 61.0, 61.75, 1980, 3};
  c.kernels.push_back({"gemm", 600.5, 0.02, 1e-3, 2e-6, 62.5, 61.25, 1980, 4});
  std::string path = tempPath("calib.json");
  writeCalibration(path, c);
  CalibrationFile r = readCalibration(path);
  EXPECT_EQ(r.trainingCelsius, 61.5);
  EXPECT_EQ(r.idle.celsiusStart, 61.75);
  EXPECT_EQ(r.idle.celsius, 61.0);
  ASSERT_EQ(r.kernels.size(), 1u);
  EXPECT_EQ(r.kernels[0].celsiusStart, 61.25);
  EXPECT_EQ(r.kernels[0].celsius, 62.5);
  EXPECT_EQ(r.kernels[0].watts, 600.5);

  c.trainingCelsius = std::nan(""); // not heat-matched: null, read back as NaN
  writeCalibration(path, c);
  EXPECT_TRUE(std::isnan(readCalibration(path).trainingCelsius));
  std::remove(path.c_str());
}

TEST(CalibrationFile, FilesWithoutHeatMatchingStillRead) {
  // As profile wrote them before heat matching: no training_celsius, no celsius_start.
  std::string path = tempPath("old.json");
  writeText(path,
            R"json({"plan": "m.plan", "device": "dev", "meter": "NVML (GPU 0)", "timeline": "cupti",
 "idle": {"name": "(idle)", "watts": 121.8, "rel_spread": 0.01, "joules_per_launch": null,
          "seconds_per_launch": null, "celsius": 47, "sm_clock_mhz": 1980, "repeats": 3},
 "kernels": [{"name": "gemm", "watts": 600, "rel_spread": 0.02, "joules_per_launch": 0.001,
              "seconds_per_launch": 2e-6, "celsius": 62, "sm_clock_mhz": 1980, "repeats": 3}]}
)json");
  CalibrationFile r = readCalibration(path);
  EXPECT_TRUE(std::isnan(r.trainingCelsius));
  EXPECT_TRUE(std::isnan(r.kernels.at(0).celsiusStart));
  EXPECT_EQ(r.kernels.at(0).celsius, 62);
  EXPECT_EQ(r.idle.watts, 121.8);
  std::remove(path.c_str());
}

TEST(CalibrationFile, ATrainingTemperatureThatIsNotANumberIsAnError) {
  std::string path = tempPath("bad.json");
  writeText(path, R"json({"plan": "p", "device": "d", "meter": "m", "training_celsius": "hot",
 "idle": {"name": "(idle)", "watts": 1, "rel_spread": 0, "joules_per_launch": null,
          "seconds_per_launch": null, "celsius": null, "sm_clock_mhz": null, "repeats": 1},
 "kernels": []})json");
  try {
    readCalibration(path);
    ADD_FAILURE() << "read a non-numeric training_celsius";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find(path + ": 'training_celsius' is not a number"),
              std::string::npos)
        << e.what();
  }
  std::remove(path.c_str());
}

} // namespace
