//===- Report.h - energy attribution as a table, CSV, JSON, Chrome trace --===//
//
// Every formatter prints "not measured" (text, CSV) or null plus
// "measured": false (JSON) where the result has no meter: never an invented joule
// (DESIGN.md, energy step 5). The HTML report is a follow-up.
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/energy/Attribution.h"

#include <string>

namespace mantissa {

/// The human table: kernels by energy (launches, time, joules +/- error, share,
/// average watts), the idle/gap remainder apart, the measured total.
std::string formatAttributionTable(const AttributionResult &r, size_t maxKernels = 20);

/// One row per kernel, then an "(idle)" row; joule columns say "not measured"
/// when there is no meter.
std::string attributionCsv(const AttributionResult &r);

/// Every figure: kernels, steps, windows, idle, totals.
std::string attributionJson(const AttributionResult &r);

/// Chrome / Perfetto trace: an "X" slice per launch (µs), and, when measured, a
/// "C" counter track "power" with each window's measured average watts.
std::string chromeTraceJson(const KernelTimeline &timeline, const AttributionResult &r);

} // namespace mantissa
