//===- NvmlMeterTest.cpp - NvmlMeter against a fake libnvidia-ml ----------===//
#include "runtime/energy/NvmlMeter.h"

#include <cmath>
#include <gtest/gtest.h>

using namespace mantissa;

TEST(NvmlMeter, ReadsTheCounterInJoulesAndTheReadingsInTheirUnits) {
  std::string reason;
  auto m = openGpuMeter(0, reason, MANTISSA_FAKE_NVML);
  ASSERT_TRUE(m) << reason;
  // The fake counter moves 1500 mJ per read (one read was spent probing it).
  double a = m->readJoules(), b = m->readJoules();
  EXPECT_DOUBLE_EQ(a, 3.0);
  EXPECT_DOUBLE_EQ(b - a, 1.5);
  EXPECT_DOUBLE_EQ(m->resolutionJoules(), 1e-3);
  EXPECT_DOUBLE_EQ(m->updatePeriodSeconds(), 0.1);
  GpuReadings g = m->readings();
  EXPECT_DOUBLE_EQ(g.watts, 250.5);
  EXPECT_DOUBLE_EQ(g.celsius, 47);
  EnergyMeter &meter = *m; // profile's heat matching reads it through the base class
  EXPECT_DOUBLE_EQ(meter.celsius(), 47);
  EXPECT_DOUBLE_EQ(g.smClockMHz, 1980);
  EXPECT_EQ(m->deviceName(), "Fake GPU");
  EXPECT_EQ(m->driverVersion(), "999.1");
  EXPECT_NE(m->name().find("Fake GPU, driver 999.1"), std::string::npos) << m->name();
}

TEST(NvmlMeter, AMissingDeviceIsAReasonNotAMeter) {
  std::string reason;
  EXPECT_FALSE(openGpuMeter(3, reason, MANTISSA_FAKE_NVML));
  EXPECT_NE(reason.find("nvmlDeviceGetHandleByIndex_v2(3) failed: Invalid Argument"),
            std::string::npos)
      << reason;
}

TEST(NvmlMeter, NoLibraryIsAReasonNotACrash) {
  std::string reason;
  EXPECT_FALSE(openGpuMeter(0, reason, "libnvidia-ml-does-not-exist.so.1"));
  EXPECT_NE(reason.find("NVML is not available"), std::string::npos) << reason;
}
