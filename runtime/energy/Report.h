//===- Report.h - energy attribution as a table, CSV, JSON, Chrome trace --===//
//
// Every formatter prints "not measured" (text, CSV) or null plus
// "measured": false (JSON) where the result has no meter: never an invented joule
// (DESIGN.md, energy step 5). With labels, each kernel also shows its op class and
// precision. The run-level report (totals per op class and precision, energy to a
// target loss, the HTML page) is RunReport.h.
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/energy/Attribution.h"

#include <map>
#include <string>

namespace mantissa {

/// What a kernel is, for the report's columns and totals.
struct KernelLabel {
  std::string opClass;   // e.g. Gemm, Conv2d, Elementwise (the plan's kernel kind)
  std::string precision; // fp32 | fp16 | bf16 | i32
};
using KernelLabels = std::map<std::string, KernelLabel>; // by kernel name

/// The human table: kernels by energy (launches, time, joules +/- error, share,
/// average watts), the idle/gap remainder apart, the measured total.
std::string formatAttributionTable(const AttributionResult &r, size_t maxKernels = 20,
                                   const KernelLabels &labels = {});

/// One row per kernel, then an "(idle)" row; joule columns say "not measured"
/// when there is no meter.
std::string attributionCsv(const AttributionResult &r, const KernelLabels &labels = {});

/// Every figure: kernels, steps, windows, idle, totals.
std::string attributionJson(const AttributionResult &r, const KernelLabels &labels = {});

/// Chrome / Perfetto trace: an "X" slice per launch (µs), and, when measured, a
/// "C" counter track "power" with each window's measured average watts.
std::string chromeTraceJson(const KernelTimeline &timeline, const AttributionResult &r);

} // namespace mantissa
