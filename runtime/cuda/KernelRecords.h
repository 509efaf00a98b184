//===- KernelRecords.h - device records of graph replays -> plan-step spans ===//
//
// The pure part of the CUPTI timeline (CuptiTimeline.h), kept free of CUDA and
// CUPTI so that it is tested without either: which plan step each device record
// (a kernel, memset or memcpy that ran inside a replayed CUDA graph) belongs to,
// in which run, and on which clock.
//
//  - Steps: while a function is captured, every graph node CUDA creates is tagged
//    with the plan step being launched (CUPTI's node-created callback), and each
//    node that cudaGraphInstantiate clones from it gets the same tag (the
//    node-cloned callback): records carry the executable graph's node id.
//  - Runs: each cudaGraphLaunch's correlation id (CUPTI's API callbacks) names
//    the run and its training-step tag; a record carries the id of the launch that
//    ran it. Should no record of a batch carry a known launch id, records are
//    matched to runs by order instead: the k-th record of a node, by start time,
//    belongs to the k-th launch of its function (one record per node per launch;
//    accepted only where the counts agree).
//  - Should no record of a run carry a node id we know, its records are matched to
//    the capture's record-giving nodes by position (foldKernelRecords).
//  - Clock: CUPTI's timestamps (ns) map to timelineClock() (s) through anchors,
//    pairs of both clocks read together; between two anchors the map is linear,
//    so the drift of one clock against the other stays inside the anchor interval.
//    (CuptiTimeline gives CUPTI steady_clock itself where the library allows, and
//    the map is then the identity up to the anchors' read error; else CUPTI's clock
//    is CLOCK_REALTIME.)
//===----------------------------------------------------------------------===//
#pragma once

#include "runtime/backend/Executor.h"

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace mantissa {

/// One device activity record, as the CUPTI layer copies it out of CUPTI's buffer.
struct KernelRecord {
  uint64_t start = 0, end = 0; // ns on CUPTI's clock (both 0: not timed)
  uint64_t graphNode = 0;      // the executable graph's node id; 0: not a graph launch
  uint32_t correlation = 0;    // the launching API call's correlation id
  uint32_t name = 0;           // index into the caller's name table
};

/// The plan step a graph node was created for.
struct NodeStep {
  uint32_t function = 0;
  uint32_t step = 0;
};

/// What the captures told: each node's step (the captured nodes and their clones),
/// and per function the step of each node that gives a record (kernel, memset,
/// memcpy), in the order the capture created them (the stream's order).
struct CapturedGraphs {
  std::unordered_map<uint64_t, NodeStep> nodes;
  std::vector<std::vector<uint32_t>> recordSteps; // [function]
};

/// One cudaGraphLaunch of a function's graph, in launch order. CUPTI reports the
/// launch to the runtime-API and the driver-API callbacks; should their correlation
/// ids differ, the records may carry either, so both are kept.
struct GraphRun {
  uint32_t correlation = 0;
  uint32_t function = 0;
  int64_t tag = -1;
  uint32_t otherCorrelation = 0; // 0: none
};

/// A pair of readings of CUPTI's clock (ns) and timelineClock() (s) taken together.
struct ClockAnchor {
  uint64_t ns = 0;
  double host = 0.0;
};

/// CUPTI time -> timelineClock(): linear through the anchors `a` and `b` (b later);
/// the offset of `b` alone when the two coincide.
double cuptiToHost(uint64_t ns, const ClockAnchor &a, const ClockAnchor &b);

/// One plan step in one run, from its records.
struct StepRecords {
  StepSpan span;            // [first record's start, last record's end] on the host clock,
                            // the start clipped to the previous step's end
  double busySeconds = 0.0; // sum of the records' durations (<= the span)
  uint32_t records = 0;
  std::vector<uint32_t> names; // the distinct names of its records, in order of start
};

struct FoldStats {
  size_t records = 0;      // all records given
  size_t used = 0;         // assigned to a run and a step
  size_t notGraph = 0;     // graphNode 0 (eager launches: timed by events) or untimed
  size_t unknownNode = 0;  // a node no capture of ours created (another graph)
  size_t unknownRun = 0;   // a node of ours, but no launch of this batch ran it
  bool byOrder = false;    // runs matched by order (no known correlation id)
  bool byPosition = false; // a run's records matched to its nodes by position (below)
  /// Step spans that began before the previous step of their run had ended, and the
  /// time cut from their starts (see foldKernelRecords).
  size_t overlapped = 0;
  double overlapSeconds = 0.0;
  /// Steps with graph nodes that got no record in some run ("function:step").
  std::vector<std::string> missing;
  size_t missingCount = 0;
};

/// Assigns `records` to (run, step) and folds each into a StepRecords. `runs` are
/// the launches since the previous fold, in launch order. A step with a node that
/// gives records must get one in each run of its function, else it is reported
/// missing. Last resort, for a run none of whose records carries a node id we know
/// (should CUPTI name nodes in a way no callback told us): if the run has exactly
/// as many graph records as its function has record-giving nodes, the k-th record
/// by start time is the k-th node's (one stream: the capture's order is the order
/// they start in). A step's span starts no earlier than the previous step of its run
/// ended: kernels launched programmatically dependent (cuBLAS on Hopper) start while
/// their predecessor finishes, and that shared time is the predecessor's.
std::vector<StepRecords> foldKernelRecords(const std::vector<KernelRecord> &records,
                                           const CapturedGraphs &graphs,
                                           const std::vector<GraphRun> &runs, const ClockAnchor &a,
                                           const ClockAnchor &b, FoldStats &stats);

} // namespace mantissa
