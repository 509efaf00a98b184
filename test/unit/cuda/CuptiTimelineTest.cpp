// The CUPTI timeline without CUPTI or a GPU: the records -> plan-step fold, the clock
// conversion, and the loader's errors (runtime/cuda/KernelRecords.h, CuptiTimeline.h).
// Its GPU side is CudaBackendTest.cpp's CudaExecutor.CuptiTimelineAgreesWithEvents.
#include "runtime/cuda/CuptiTimeline.h"
#include "common/Error.h"
#include "runtime/cuda/KernelRecords.h"

#include <cuda.h>
#include <cupti_activity.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <dlfcn.h>
#include <filesystem>

using namespace mantissa;

namespace {

// CUPTI-like timestamps in ns, here ~1e18: beyond a double's exact integers (2^53 ~
// 9e15), so the conversion must work with differences.
constexpr uint64_t T0 = 987654321012345678ull;

const ClockAnchor kA{T0, 5000.0}, kB{T0 + 10'000'000'000ull, 5010.0}; // rate exactly 1

/// Graph of function 0 with three steps: step 0 one node (10), step 1 (a cuBLAS
/// call) three nodes (20, 21, 22), step 2 one node (30); function 1 one step (40).
CapturedGraphs graphs() {
  CapturedGraphs g;
  g.nodes = {{10, {0, 0}}, {20, {0, 1}}, {21, {0, 1}}, {22, {0, 1}}, {30, {0, 2}}, {40, {1, 0}}};
  g.recordSteps = {{0, 1, 1, 1, 2}, {0}};
  return g;
}

KernelRecord rec(uint64_t start, uint64_t end, uint64_t node, uint32_t corr, uint32_t name = 0) {
  return {T0 + start, T0 + end, node, corr, name};
}

const StepRecords *find(const std::vector<StepRecords> &v, uint32_t fn, uint32_t step,
                        int64_t tag) {
  for (const StepRecords &s : v)
    if (s.span.function == fn && s.span.step == step && s.span.tag == tag)
      return &s;
  return nullptr;
}

} // namespace

TEST(KernelRecords, StepsGetTheirKernelsAcrossRunsInAnyOrder) {
  // Two runs of function 0 (tags 7, 8; launches 100, 101), one of function 1 (tag 8),
  // whose records carry the launch's other correlation id (the driver's, say).
  std::vector<GraphRun> runs = {{100, 0, 7}, {101, 0, 8}, {90, 1, 8, 102}};
  std::vector<KernelRecord> r = {
      // run 101 first, shuffled
      rec(2'000'500, 2'000'900, 21, 101, 2),
      rec(2'000'000, 2'000'400, 10, 101, 1),
      rec(2'000'400, 2'000'500, 20, 101, 2),
      rec(2'001'000, 2'001'200, 22, 101, 3),
      rec(2'001'300, 2'001'800, 30, 101, 4),
      // run 100
      rec(1'000'000, 1'000'300, 10, 100, 1),
      rec(1'000'300, 1'000'400, 20, 100, 2),
      rec(1'000'450, 1'000'800, 21, 100, 2),
      rec(1'000'800, 1'001'000, 22, 100, 3),
      rec(1'001'000, 1'001'600, 30, 100, 4),
      // function 1
      rec(3'000'000, 3'000'050, 40, 102, 5),
      // ignored: an eager launch (no graph node), a node of another graph, an untimed
      // record, and a node of ours from a launch of another batch
      rec(4'000'000, 4'000'100, 0, 55),
      rec(4'000'000, 4'000'100, 999, 100),
      {0, 0, 10, 100, 1},
      rec(5'000'000, 5'000'100, 10, 77)};
  FoldStats st;
  std::vector<StepRecords> out = foldKernelRecords(r, graphs(), runs, kA, kB, st);
  EXPECT_EQ(st.records, 15u);
  EXPECT_EQ(st.used, 11u);
  EXPECT_EQ(st.notGraph, 2u);
  EXPECT_EQ(st.unknownNode, 1u);
  EXPECT_EQ(st.unknownRun, 1u);
  EXPECT_FALSE(st.byOrder);
  EXPECT_EQ(st.missingCount, 0u);
  ASSERT_EQ(out.size(), 7u);

  // The cuBLAS step of run 100: three records, span [first start, last end], busy
  // time the sum of the records (the 50 ns gap excluded), names in order of start.
  const StepRecords *s = find(out, 0, 1, 7);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->records, 3u);
  EXPECT_NEAR(s->span.start, 5000.0 + 1'000'300e-9, 1e-9);
  EXPECT_NEAR(s->span.end, 5000.0 + 1'001'000e-9, 1e-9);
  EXPECT_NEAR(s->busySeconds, (100 + 350 + 200) * 1e-9, 1e-15);
  EXPECT_EQ(s->names, (std::vector<uint32_t>{2, 3}));
  // The same step in run 101 (records given out of order).
  s = find(out, 0, 1, 8);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->records, 3u);
  EXPECT_NEAR(s->span.start, 5000.0 + 2'000'400e-9, 1e-9);
  EXPECT_NEAR(s->span.end, 5000.0 + 2'001'200e-9, 1e-9);
  // One record per one-kernel step, with its own times.
  s = find(out, 0, 2, 7);
  ASSERT_NE(s, nullptr);
  EXPECT_NEAR(s->span.end - s->span.start, 600e-9, 1e-12);
  s = find(out, 1, 0, 8);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->names, (std::vector<uint32_t>{5}));
}

TEST(KernelRecords, AStepStartedBeforeItsPredecessorEndedStartsAtItsEnd) {
  // Programmatic dependent launch (cuBLAS on Hopper): step 1's first kernel starts
  // 150 ns before step 0 ends and waits on the device; step 2 starts 400 ns before
  // step 1's last kernel ends and also ends first (inside it). Run 101 is a new run:
  // its step 0 is not clipped against run 100.
  std::vector<GraphRun> runs = {{100, 0, 1}, {101, 0, 2}};
  std::vector<KernelRecord> r = {rec(0, 300, 10, 100),     rec(150, 400, 20, 100),
                                 rec(400, 500, 21, 100),   rec(520, 900, 22, 100),
                                 rec(500, 800, 30, 100),   rec(850, 1000, 10, 101),
                                 rec(1000, 1100, 20, 101), rec(1100, 1200, 21, 101),
                                 rec(1200, 1300, 22, 101), rec(1300, 1400, 30, 101)};
  FoldStats st;
  std::vector<StepRecords> out = foldKernelRecords(r, graphs(), runs, kA, kB, st);
  ASSERT_EQ(out.size(), 6u);
  EXPECT_EQ(st.overlapped, 2u);
  EXPECT_NEAR(st.overlapSeconds, (150 + 300) * 1e-9, 1e-15);
  auto at = [](uint64_t ns) { return 5000.0 + double(ns) * 1e-9; };
  const StepRecords *s = find(out, 0, 0, 1);
  EXPECT_NEAR(s->span.start, at(0), 1e-9);
  EXPECT_NEAR(s->span.end, at(300), 1e-9);
  s = find(out, 0, 1, 1);
  EXPECT_NEAR(s->span.start, at(300), 1e-9); // was 150
  EXPECT_NEAR(s->span.end, at(900), 1e-9);
  s = find(out, 0, 2, 1);
  EXPECT_NEAR(s->span.start, at(800), 1e-9); // inside step 1: an empty span at its end
  EXPECT_NEAR(s->span.end, at(800), 1e-9);
  s = find(out, 0, 0, 2);
  EXPECT_NEAR(s->span.start, at(850), 1e-9); // the next run's first step: as recorded
}

TEST(KernelRecords, StepsWithoutARecordAreReported) {
  std::vector<GraphRun> runs = {{100, 0, 1}, {101, 0, 2}};
  // Run 100 lacks step 2, run 101 lacks step 1 entirely (all three of its nodes).
  std::vector<KernelRecord> r = {rec(0, 10, 10, 100),    rec(10, 20, 20, 100),
                                 rec(20, 30, 21, 100),   rec(30, 40, 22, 100),
                                 rec(100, 110, 10, 101), rec(130, 140, 30, 101)};
  FoldStats st;
  std::vector<StepRecords> out = foldKernelRecords(r, graphs(), runs, kA, kB, st);
  EXPECT_EQ(out.size(), 4u);
  EXPECT_EQ(st.missingCount, 2u);
  EXPECT_EQ(st.missing, (std::vector<std::string>{"0:2", "0:1"}));
  // A step that created no record-giving node (nothing launched) is not missing.
  CapturedGraphs g = graphs();
  g.recordSteps = {{0}, {0}};
  foldKernelRecords(r, g, runs, kA, kB, st);
  EXPECT_EQ(st.missingCount, 0u);
}

TEST(KernelRecords, WithoutKnownLaunchesRecordsMatchRunsByOrder) {
  // The launches' correlation ids never appear in the records (say CUPTI reported
  // another id): the k-th record of each node goes to the k-th launch of its function.
  std::vector<GraphRun> runs = {{500, 0, 3}, {501, 1, 3}, {502, 0, 4}};
  std::vector<KernelRecord> r;
  for (int run = 1; run >= 0; --run) // later run first
    for (uint64_t node : {10, 20, 21, 22, 30})
      r.push_back(rec(run * 1000 + node, run * 1000 + node + 1, node, 9));
  r.push_back(rec(600, 620, 40, 9));
  FoldStats st;
  std::vector<StepRecords> out = foldKernelRecords(r, graphs(), runs, kA, kB, st);
  EXPECT_TRUE(st.byOrder);
  EXPECT_EQ(st.used, 11u);
  EXPECT_EQ(st.missingCount, 0u);
  const StepRecords *first = find(out, 0, 1, 3), *second = find(out, 0, 1, 4);
  ASSERT_TRUE(first && second);
  EXPECT_NEAR(first->span.start, 5000.0 + 20e-9, 1e-9);
  EXPECT_NEAR(second->span.start, 5000.0 + 1020e-9, 1e-9);
  EXPECT_NE(find(out, 1, 0, 3), nullptr);

  // A node whose record count differs from its function's launches is not guessed.
  r.pop_back();
  r.push_back(rec(600, 620, 40, 9));
  r.push_back(rec(700, 720, 40, 9));
  out = foldKernelRecords(r, graphs(), runs, kA, kB, st);
  EXPECT_EQ(st.unknownRun, 2u);
  EXPECT_EQ(find(out, 1, 0, 3), nullptr);
  EXPECT_EQ(st.missingCount, 1u);
}

TEST(KernelRecords, ClockConversionFollowsTheAnchors) {
  // One anchor (or two at one instant): the offset alone.
  ClockAnchor a{T0, 100.0};
  EXPECT_NEAR(cuptiToHost(T0 + 1'500'000'000ull, a, a), 101.5, 1e-9);
  EXPECT_NEAR(cuptiToHost(T0 - 250'000'000ull, a, a), 99.75, 1e-9); // before the anchor
  // Two anchors 10 s apart on CUPTI's clock and 10.00002 s apart on the host's (2 ppm
  // drift): linear between them, and at each anchor exactly its host time.
  ClockAnchor b{T0 + 10'000'000'000ull, 110.00002};
  EXPECT_NEAR(cuptiToHost(a.ns, a, b), 100.0, 1e-9);
  EXPECT_NEAR(cuptiToHost(b.ns, a, b), 110.00002, 1e-9);
  EXPECT_NEAR(cuptiToHost(T0 + 5'000'000'000ull, a, b), 105.00001, 1e-9);
  // A rate far from 1 (an anchor read late after a preemption) is not trusted: the
  // later anchor's offset is used alone.
  ClockAnchor bad{T0 + 1'000'000ull, 100.5}; // 1 ms of CUPTI time, 0.5 s of host time
  EXPECT_NEAR(cuptiToHost(T0, a, bad), 100.5 - 0.001, 1e-9);
}

TEST(CuptiTimeline, AMissingLibraryIsOneClearReason) {
  std::string description, reason;
  EXPECT_FALSE(loadCuptiFrom("/nonexistent/libcupti.so.13", description, reason));
  EXPECT_NE(reason.find("CUPTI is not available"), std::string::npos) << reason;
  EXPECT_NE(reason.find("/nonexistent/libcupti.so.13"), std::string::npos) << reason;
  // A library that is not CUPTI: the first missing entry point is named.
  EXPECT_FALSE(loadCuptiFrom("libm.so.6", description, reason));
  EXPECT_NE(reason.find("libm.so.6 has no cuptiGetResultString"), std::string::npos) << reason;
}

TEST(CuptiTimeline, MantissaCuptiNamesTheLibrary) {
  // This test binary's loader state is its own (the plugin holds another copy); a
  // failed load is retried when MANTISSA_CUPTI changes.
  setenv("MANTISSA_CUPTI", "/nonexistent/cupti.so", 1);
  std::string description, reason;
  EXPECT_FALSE(loadCupti(description, reason));
  EXPECT_NE(reason.find("[MANTISSA_CUPTI=/nonexistent/cupti.so]"), std::string::npos) << reason;
  // open() fails with the same reason, and nothing is left half-started.
  EXPECT_EQ(CuptiTimeline::open(2, reason), nullptr);
  EXPECT_NE(reason.find("/nonexistent/cupti.so"), std::string::npos) << reason;
  unsetenv("MANTISSA_CUPTI");
}

/// The toolkit's libcupti.so.13, or "".
std::string toolkitCupti() {
  for (const char *p : {"/usr/local/cuda/lib64/libcupti.so.13",
                        "/usr/local/cuda/extras/CUPTI/lib64/libcupti.so.13"})
    if (std::filesystem::exists(p))
      return p;
  return "";
}

TEST(CuptiTimeline, TheToolkitLibraryLoads) {
  // No GPU or driver is needed to load it and read its version.
  std::string path = toolkitCupti();
  if (path.empty())
    GTEST_SKIP() << "no libcupti.so.13 in the CUDA toolkit here";
  std::string description, reason;
  ASSERT_TRUE(loadCuptiFrom(path, description, reason)) << reason;
  EXPECT_EQ(description.rfind("CUPTI 13.", 0), 0u) << description;
  EXPECT_NE(description.find(path), std::string::npos) << description;
}

TEST(CuptiTimeline, TheChoiceOfTimeline) {
  EXPECT_EQ(parseTimelineMode(""), TimelineMode::Auto);
  EXPECT_EQ(parseTimelineMode("auto"), TimelineMode::Auto);
  EXPECT_EQ(parseTimelineMode("cupti"), TimelineMode::Cupti);
  EXPECT_EQ(parseTimelineMode("events"), TimelineMode::Events);
  try {
    parseTimelineMode("CUPTI");
    ADD_FAILURE() << "MANTISSA_TIMELINE=CUPTI accepted";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(), "MANTISSA_TIMELINE=CUPTI: expected cupti, events or auto");
  }
  // auto and cupti try CUPTI when graphs run; events never does.
  EXPECT_TRUE(planTimeline(TimelineMode::Auto, true).tryCupti);
  EXPECT_TRUE(planTimeline(TimelineMode::Cupti, true).tryCupti);
  TimelinePlan p = planTimeline(TimelineMode::Events, true);
  EXPECT_FALSE(p.tryCupti);
  EXPECT_EQ(p.eventsBecause, "MANTISSA_TIMELINE=events");
  // Without graphs (every run eager) auto uses events and says why; cupti is an error.
  p = planTimeline(TimelineMode::Auto, false);
  EXPECT_FALSE(p.tryCupti);
  EXPECT_EQ(p.eventsBecause, "CUDA graphs are off");
  EXPECT_THROW(planTimeline(TimelineMode::Cupti, false), Error);
  // A failed open: auto falls back with CUPTI's reason, cupti makes it an error.
  EXPECT_EQ(cuptiFailed(TimelineMode::Auto, "cuptiSubscribe failed: X"),
            "cuptiSubscribe failed: X");
  try {
    cuptiFailed(TimelineMode::Cupti, "cuptiSubscribe failed: X");
    ADD_FAILURE() << "a demanded CUPTI's failure was not an error";
  } catch (const Error &e) {
    EXPECT_STREQ(e.what(), "MANTISSA_TIMELINE=cupti: cuptiSubscribe failed: X");
  }
}

TEST(KernelRecords, RecordsOfUnknownNodesMatchTheCaptureByPosition) {
  // No record names a node we know (as if CUPTI named the executable graph's nodes
  // without telling us), but the launches are known: a run with exactly one record
  // per record-giving node gets them in capture order.
  std::vector<GraphRun> runs = {{100, 0, 1}, {101, 0, 2}};
  std::vector<KernelRecord> r;
  for (uint64_t i : {4, 2, 0, 3, 1}) // node ids 500.. of run 100, shuffled
    r.push_back(rec(1000 + 10 * i, 1005 + 10 * i, 500 + i, 100, uint32_t(i)));
  for (uint64_t i : {0, 1, 2, 3}) // run 101 is one record short: not guessed
    r.push_back(rec(2000 + 10 * i, 2005 + 10 * i, 600 + i, 101));
  FoldStats st;
  std::vector<StepRecords> out = foldKernelRecords(r, graphs(), runs, kA, kB, st);
  EXPECT_TRUE(st.byPosition);
  EXPECT_EQ(st.used, 5u);
  EXPECT_EQ(st.unknownNode, 4u);
  ASSERT_EQ(out.size(), 3u);
  const StepRecords *s0 = find(out, 0, 0, 1), *s1 = find(out, 0, 1, 1), *s2 = find(out, 0, 2, 1);
  ASSERT_TRUE(s0 && s1 && s2);
  EXPECT_EQ(s0->names, (std::vector<uint32_t>{0}));
  EXPECT_EQ(s1->names, (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_NEAR(s1->span.end - s1->span.start, 25e-9, 1e-12);
  EXPECT_EQ(s2->names, (std::vector<uint32_t>{4}));
  EXPECT_EQ(st.missingCount, 3u); // run 101's three steps
}

//===--- the CUPTI side, against a fake libcupti (FakeCupti.cpp) -----------------===//

namespace {

/// The fake's controls, or a skip reason (no fake built, or another libcupti is
/// already this process's: the loader keeps the first it loads).
struct Fake {
  void (*failSubscribe)(int);
  void (*refuseTimestamp)(int);
  int (*registrations)();
  int (*kinds)();
  uint64_t (*now)();
  void (*created)(uint64_t, int);
  void (*cloned)(uint64_t, uint64_t, int);
  void (*launch)(uint32_t, uint32_t);
  void (*record)(int, uint64_t, uint64_t, uint64_t, uint32_t, const char *);
};

bool loadFake(Fake &f, std::string &skip) {
#ifndef MANTISSA_FAKE_CUPTI
  skip = "no fake libcupti in this build";
  return false;
#else
  const char *path = MANTISSA_FAKE_CUPTI;
  if (!std::filesystem::exists(path)) {
    skip = std::string("no fake libcupti at ") + path;
    return false;
  }
  setenv("MANTISSA_CUPTI", path, 1);
  std::string description, reason;
  bool loaded = loadCupti(description, reason);
  unsetenv("MANTISSA_CUPTI");
  if (!loaded || description.find(path) == std::string::npos) {
    skip = "this process holds another libcupti (" + description + reason + ")";
    return false;
  }
  void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
  if (!h) {
    skip = "the fake libcupti is not loaded";
    return false;
  }
  auto sym = [&](auto &fn, const char *name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
    if (!fn)
      ADD_FAILURE() << "the fake libcupti has no " << name;
  };
  sym(f.failSubscribe, "fakeCuptiFailSubscribe");
  sym(f.refuseTimestamp, "fakeCuptiRefuseTimestampCallback");
  sym(f.registrations, "fakeCuptiRegistrations");
  sym(f.kinds, "fakeCuptiKindsEnabled");
  sym(f.now, "fakeCuptiNow");
  sym(f.created, "fakeCuptiNodeCreated");
  sym(f.cloned, "fakeCuptiNodeCloned");
  sym(f.launch, "fakeCuptiGraphLaunch");
  sym(f.record, "fakeCuptiRecord");
  return true;
#endif
}

const StepSpan *spanOf(const std::vector<StepSpan> &v, uint32_t fn, uint32_t step, int64_t tag) {
  for (const StepSpan &s : v)
    if (s.function == fn && s.step == step && s.tag == tag)
      return &s;
  return nullptr;
}

/// Captures function 1 (three steps: a kernel; a cuBLAS call of a kernel and a
/// memset, plus an empty node; a kernel), instantiates it (clones n -> n + 100) and
/// launches it twice (tags 5 and 6), writing the records of both runs; returns the
/// records' start, on the records' clock.
uint64_t twoRuns(const Fake &f, CuptiTimeline &t, bool dropLastStepOfSecondRun = false) {
  const int kernel = CU_GRAPH_NODE_TYPE_KERNEL, memset = CU_GRAPH_NODE_TYPE_MEMSET,
            empty = CU_GRAPH_NODE_TYPE_EMPTY;
  t.beginCapture(1);
  t.captureStep(0);
  f.created(10, kernel);
  t.captureStep(1);
  f.created(20, kernel);
  f.created(21, memset);
  f.created(22, empty);
  t.captureStep(2);
  f.created(30, kernel);
  EXPECT_EQ(t.endCapture(), 5u);
  f.created(99, kernel); // after the capture (cudaGraphInstantiate's own): not tagged
  for (uint64_t n : {10, 20, 21, 22, 30, 99})
    f.cloned(n, n + 100, n == 21 ? memset : n == 22 ? empty : kernel);
  t.setTag(5);
  t.beforeLaunch(1);
  f.launch(700, 701);
  t.afterLaunch();
  t.setTag(6);
  t.beforeLaunch(1);
  f.launch(702, 703);
  t.afterLaunch();
  f.launch(800, 801);                      // someone else's launch: no run
  const uint64_t t0 = f.now() - 1'000'000; // the runs ran in the last millisecond
  const int K = CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, M = CUPTI_ACTIVITY_KIND_MEMSET;
  // Run 5 by the driver's correlation id, run 6 by the runtime's; out of order.
  f.record(K, t0 + 500, t0 + 600, 130, 701, "_Z4lastPf");
  f.record(K, t0 + 0, t0 + 100, 110, 701, "first");
  f.record(K, t0 + 100, t0 + 300, 120, 701, "_Z4gemmIfEvPKT_");
  f.record(M, t0 + 310, t0 + 320, 121, 701, nullptr);
  f.record(K, t0 + 1000, t0 + 1100, 110, 702, "first");
  f.record(K, t0 + 1100, t0 + 1300, 120, 702, "_Z4gemmIfEvPKT_");
  f.record(M, t0 + 1310, t0 + 1320, 121, 702, nullptr);
  if (!dropLastStepOfSecondRun)
    f.record(K, t0 + 1500, t0 + 1600, 130, 702, "_Z4lastPf");
  f.record(K, t0 + 2000, t0 + 2100, 0, 900, "eager");     // an eager launch
  f.record(K, t0 + 3000, t0 + 3100, 199, 801, "someone"); // another launch's node
  return t0;
}

} // namespace

TEST(CuptiTimeline, FakeCuptiRunsToSpans) {
  Fake f{};
  std::string skip, reason;
  if (!loadFake(f, skip))
    GTEST_SKIP() << skip;
  std::unique_ptr<CuptiTimeline> t = CuptiTimeline::open(2, reason);
  ASSERT_NE(t, nullptr) << reason;
  EXPECT_NE(t->description().find("timestamps on steady_clock"), std::string::npos)
      << t->description();
  EXPECT_EQ(f.kinds(), 3); // kernels, memsets, memcpys
  // Only one timeline at a time: CUPTI's buffer callbacks are global.
  EXPECT_EQ(CuptiTimeline::open(2, reason), nullptr);
  EXPECT_EQ(reason, "CUPTI is already in use by another CUDA executor's timeline");

  const uint64_t t0 = twoRuns(f, *t);
  std::vector<StepSpan> out;
  t->drain(out);
  const FoldStats &st = t->lastStats();
  EXPECT_EQ(st.records, 10u);
  EXPECT_EQ(st.used, 8u);
  EXPECT_EQ(st.notGraph, 1u);
  EXPECT_EQ(st.unknownNode, 1u);
  EXPECT_EQ(st.missingCount, 0u);
  EXPECT_FALSE(st.byOrder);    // the launches' ids were known (the driver's and the runtime's)
  EXPECT_FALSE(st.byPosition); // and the clones' node ids
  ASSERT_EQ(out.size(), 6u);
  // Records on steady_clock: a span is the records' ns as timelineClock() seconds.
  const StepSpan *s = spanOf(out, 1, 1, 5);
  ASSERT_NE(s, nullptr);
  EXPECT_NEAR(s->start, double(t0 + 100) * 1e-9, 2e-6);
  EXPECT_NEAR(s->end - s->start, 220e-9, 1e-9); // the kernel and the memset after it
  s = spanOf(out, 1, 2, 6);
  ASSERT_NE(s, nullptr);
  EXPECT_NEAR(s->end - s->start, 100e-9, 1e-9);
  EXPECT_NEAR(s->start - spanOf(out, 1, 0, 5)->start, 1500e-9, 1e-9);
  // Device kernels per step, names demangled.
  const auto &dk = t->deviceKernels();
  ASSERT_EQ(dk.size(), 2u);
  ASSERT_EQ(dk[1].size(), 3u);
  EXPECT_EQ(dk[1][0], (std::vector<std::string>{"first"}));
  EXPECT_EQ(dk[1][1], (std::vector<std::string>{"void gemm<float>(float const*)", "(memset)"}));
  EXPECT_EQ(dk[1][2], (std::vector<std::string>{"last(float*)"}));

  // A run whose last step has no record is reported.
  twoRuns(f, *t, true);
  out.clear();
  t->drain(out);
  EXPECT_EQ(out.size(), 5u);
  EXPECT_EQ(t->lastStats().missingCount, 1u);
  EXPECT_EQ(t->lastStats().missing, (std::vector<std::string>{"1:2"}));

  // Closed and opened again: callbacks registered once, activity off in between.
  t.reset();
  EXPECT_EQ(f.kinds(), 0);
  t = CuptiTimeline::open(2, reason);
  ASSERT_NE(t, nullptr) << reason;
  EXPECT_EQ(f.registrations(), 1);
}

TEST(CuptiTimeline, FakeCuptiOnItsOwnClock) {
  // CUPTI refuses the timestamp callback: records stay on its clock (here the
  // system clock, ~1.7e9 s from steady_clock), which the drain's anchors map.
  Fake f{};
  std::string skip, reason;
  if (!loadFake(f, skip))
    GTEST_SKIP() << skip;
  f.refuseTimestamp(1);
  std::unique_ptr<CuptiTimeline> t = CuptiTimeline::open(2, reason);
  f.refuseTimestamp(0);
  ASSERT_NE(t, nullptr) << reason;
  if (t->description().find("steady_clock") != std::string::npos)
    GTEST_SKIP() << "the timestamp callback was registered by an earlier test in this process";
  const double before = timelineClock();
  const uint64_t t0 = twoRuns(f, *t);
  std::vector<StepSpan> out;
  t->drain(out);
  const double after = timelineClock();
  ASSERT_EQ(out.size(), 6u);
  const StepSpan *s = spanOf(out, 1, 0, 5);
  ASSERT_NE(s, nullptr);
  // Written 1 ms before the drain's anchor, so ~1 ms before `after`, and after `before` - 1 ms.
  EXPECT_GT(s->start, before - 1.5e-3);
  EXPECT_LT(s->start, after);
  EXPECT_NEAR(spanOf(out, 1, 1, 6)->start - s->start, 1100e-9, 1e-8);
  (void)t0;
}

TEST(CuptiTimeline, FakeCuptiSubscriptionRefused) {
  // Another profiler holds CUPTI: one reason, with the call and CUPTI's error.
  Fake f{};
  std::string skip, reason;
  if (!loadFake(f, skip))
    GTEST_SKIP() << skip;
  f.failSubscribe(1);
  EXPECT_EQ(CuptiTimeline::open(2, reason), nullptr);
  f.failSubscribe(0);
  EXPECT_EQ(reason, "cuptiSubscribe failed: CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED");
  // Nothing was left behind: the next open works.
  EXPECT_NE(CuptiTimeline::open(2, reason), nullptr) << reason;
}

// Last: it leaves the toolkit's libcupti loaded in this process (the fake tests
// above then skip when the whole binary runs in one process).
TEST(CuptiTimeline, WithoutADriverOpenSaysWhichCallFailed) {
  // CUPTI loads but cannot start without the driver: the reason is CUPTI's, with the
  // call (the executor prints it once and times with events instead).
  std::string path = toolkitCupti();
  if (path.empty())
    GTEST_SKIP() << "no libcupti.so.13 in the CUDA toolkit here";
  if (void *driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL)) {
    dlclose(driver);
    GTEST_SKIP() << "a CUDA driver is present (the GPU test covers open())";
  }
  setenv("MANTISSA_CUPTI", path.c_str(), 1);
  std::string description, reason;
  if (loadCupti(description, reason) && description.find(path) == std::string::npos) {
    unsetenv("MANTISSA_CUPTI");
    GTEST_SKIP() << "this process holds another libcupti (" << description << ")";
  }
  std::unique_ptr<CuptiTimeline> t = CuptiTimeline::open(1, reason);
  unsetenv("MANTISSA_CUPTI");
  EXPECT_EQ(t, nullptr);
  EXPECT_NE(reason.find("cuptiSubscribe failed: CUPTI_ERROR_"), std::string::npos) << reason;
}
