//===- KernelRecords.cpp --------------------------------------------------===//
#include "runtime/cuda/KernelRecords.h"

#include <algorithm>
#include <map>

namespace mantissa {

double cuptiToHost(uint64_t ns, const ClockAnchor &a, const ClockAnchor &b) {
  // Differences first: ns counts since boot do not fit a double's 53 bits exactly
  // when added to seconds; their differences do.
  const double d = double(int64_t(ns - b.ns)) * 1e-9;
  if (b.ns <= a.ns)
    return b.host + d;
  const double rate = (b.host - a.host) / (double(b.ns - a.ns) * 1e-9);
  // A rate far from 1 means an anchor was taken badly (a preempted read): the
  // offset alone is then the better guess.
  return b.host + d * (rate > 0.999 && rate < 1.001 ? rate : 1.0);
}

std::vector<StepRecords> foldKernelRecords(const std::vector<KernelRecord> &records,
                                           const CapturedGraphs &graphs,
                                           const std::vector<GraphRun> &runs, const ClockAnchor &a,
                                           const ClockAnchor &b, FoldStats &stats) {
  stats = FoldStats();
  stats.records = records.size();
  std::unordered_map<uint32_t, size_t> runOf; // correlation id -> index into runs
  for (size_t r = 0; r < runs.size(); ++r) {
    runOf.emplace(runs[r].correlation, r);
    if (runs[r].otherCorrelation)
      runOf.emplace(runs[r].otherCorrelation, r);
  }

  // Records of our graphs' nodes, and whether any names a launch of this batch;
  // records of unknown nodes from our launches, per run (the last resort).
  std::vector<std::pair<const KernelRecord *, NodeStep>> ours;
  std::map<size_t, std::vector<const KernelRecord *>> unplaced;
  bool anyKnownRun = false;
  for (const KernelRecord &k : records) {
    if (k.graphNode == 0 || (k.start == 0 && k.end == 0)) {
      ++stats.notGraph;
      continue;
    }
    auto n = graphs.nodes.find(k.graphNode);
    if (n != graphs.nodes.end()) {
      ours.push_back({&k, n->second});
      anyKnownRun = anyKnownRun || runOf.count(k.correlation);
    } else if (auto r = runOf.find(k.correlation); r != runOf.end()) {
      unplaced[r->second].push_back(&k);
    } else {
      ++stats.unknownNode;
    }
  }

  // (run, step) -> the records assigned to it.
  std::map<std::pair<size_t, uint32_t>, std::vector<const KernelRecord *>> groups;
  if (anyKnownRun) {
    for (auto &[k, ns] : ours) {
      auto r = runOf.find(k->correlation);
      if (r == runOf.end() || runs[r->second].function != ns.function) {
        ++stats.unknownRun;
        continue;
      }
      groups[{r->second, ns.step}].push_back(k);
    }
  } else if (!ours.empty()) {
    stats.byOrder = true;
    std::map<uint32_t, std::vector<size_t>> runsOf; // function -> its runs, in order
    for (size_t r = 0; r < runs.size(); ++r)
      runsOf[runs[r].function].push_back(r);
    std::map<uint64_t, std::vector<std::pair<const KernelRecord *, NodeStep>>> byNode;
    for (auto &p : ours)
      byNode[p.first->graphNode].push_back(p);
    for (auto &[node, list] : byNode) {
      const std::vector<size_t> &fr = runsOf[list.front().second.function];
      if (list.size() != fr.size()) {
        stats.unknownRun += list.size();
        continue;
      }
      std::sort(list.begin(), list.end(),
                [](auto &x, auto &y) { return x.first->start < y.first->start; });
      for (size_t i = 0; i < list.size(); ++i)
        groups[{fr[i], list[i].second.step}].push_back(list[i].first);
    }
  }

  std::vector<bool> placed(runs.size(), false);
  for (auto &g : groups)
    placed[g.first.first] = true;
  for (auto &[r, list] : unplaced) {
    const uint32_t f = runs[r].function;
    if (placed[r] || f >= graphs.recordSteps.size() ||
        list.size() != graphs.recordSteps[f].size()) {
      stats.unknownNode += list.size();
      continue;
    }
    stats.byPosition = true;
    std::sort(list.begin(), list.end(),
              [](const KernelRecord *x, const KernelRecord *y) { return x->start < y->start; });
    for (size_t i = 0; i < list.size(); ++i)
      groups[{r, graphs.recordSteps[f][i]}].push_back(list[i]);
  }

  std::vector<StepRecords> out;
  // Steps of one run, in step order (the stream's order): a step whose first record
  // starts before the previous step's last record ends overlapped it. cuBLAS's Hopper
  // kernels launch programmatically dependent: they start while their predecessor
  // finishes and wait on the device for it, so the time they share is the
  // predecessor's work. Each span starts at its predecessor's end, no earlier: the
  // spans of a run then tile its time once, as the attribution assumes.
  size_t prevRun = SIZE_MAX;
  uint64_t prevEnd = 0;
  for (auto &[key, list] : groups) {
    std::sort(list.begin(), list.end(),
              [](const KernelRecord *x, const KernelRecord *y) { return x->start < y->start; });
    const GraphRun &run = runs[key.first];
    StepRecords s;
    uint64_t first = list.front()->start, last = list.front()->end;
    for (const KernelRecord *k : list) {
      first = std::min(first, k->start);
      last = std::max(last, k->end);
      s.busySeconds += double(k->end - std::min(k->start, k->end)) * 1e-9;
      if (std::find(s.names.begin(), s.names.end(), k->name) == s.names.end())
        s.names.push_back(k->name);
    }
    const bool sameRun = key.first == prevRun;
    if (sameRun && first < prevEnd) {
      ++stats.overlapped;
      const uint64_t clipped = std::min(prevEnd, last);
      stats.overlapSeconds += double(clipped - first) * 1e-9;
      first = clipped;
    }
    prevEnd = sameRun ? std::max(prevEnd, last) : last;
    prevRun = key.first;
    s.records = uint32_t(list.size());
    s.span = {run.function, key.second, run.tag, cuptiToHost(first, a, b), cuptiToHost(last, a, b)};
    stats.used += list.size();
    out.push_back(std::move(s));
  }

  for (size_t r = 0; r < runs.size(); ++r) {
    const uint32_t f = runs[r].function;
    if (f >= graphs.recordSteps.size())
      continue;
    std::vector<uint32_t> expected = graphs.recordSteps[f];
    std::sort(expected.begin(), expected.end());
    expected.erase(std::unique(expected.begin(), expected.end()), expected.end());
    for (uint32_t s : expected)
      if (!groups.count({r, s})) {
        std::string name = std::to_string(f) + ":" + std::to_string(s);
        if (stats.missing.size() < 8 &&
            std::find(stats.missing.begin(), stats.missing.end(), name) == stats.missing.end())
          stats.missing.push_back(name);
        ++stats.missingCount;
      }
  }
  return out;
}

} // namespace mantissa
