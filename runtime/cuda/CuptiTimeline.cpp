//===- CuptiTimeline.cpp --------------------------------------------------===//
#include "runtime/cuda/CuptiTimeline.h"

#include "common/Error.h"

// Types and constants only: every function is resolved with dlsym (CuptiTimeline.h).
#include <cupti_activity.h>
#include <cupti_callbacks.h>
#include <cupti_driver_cbid.h>
#include <cupti_result.h>
#include <cupti_runtime_cbid.h>
#include <cupti_version.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cxxabi.h>
#include <dlfcn.h>
#include <mutex>
#include <unordered_map>

namespace mantissa {
namespace {

/// The CUPTI entry points used, resolved once per process (libcupti stays loaded:
/// CUPTI keeps pointers to the callbacks below).
struct Api {
  std::string description;
  CUptiResult (*getResultString)(CUptiResult, const char **) = nullptr;
  CUptiResult (*getVersion)(uint32_t *) = nullptr;
  CUptiResult (*subscribe)(CUpti_SubscriberHandle *, CUpti_CallbackFunc, void *) = nullptr;
  CUptiResult (*unsubscribe)(CUpti_SubscriberHandle) = nullptr;
  CUptiResult (*enableCallback)(uint32_t, CUpti_SubscriberHandle, CUpti_CallbackDomain,
                                CUpti_CallbackId) = nullptr;
  CUptiResult (*registerCallbacks)(CUpti_BuffersCallbackRequestFunc,
                                   CUpti_BuffersCallbackCompleteFunc) = nullptr;
  CUptiResult (*enable)(CUpti_ActivityKind) = nullptr;
  CUptiResult (*disable)(CUpti_ActivityKind) = nullptr;
  CUptiResult (*flushAll)(uint32_t) = nullptr;
  CUptiResult (*nextRecord)(uint8_t *, size_t, CUpti_Activity **) = nullptr;
  CUptiResult (*dropped)(CUcontext, uint32_t, size_t *) = nullptr;
  CUptiResult (*timestamp)(uint64_t *) = nullptr;
  CUptiResult (*graphNodeId)(CUgraphNode, uint64_t *) = nullptr;
  // Optional: CUPTI's clock set to timelineClock()'s (else CLOCK_REALTIME, which the
  // anchors map; a clock step between two drains would then shift the records).
  CUptiResult (*registerTimestamp)(CUpti_TimestampCallbackFunc) = nullptr;
  bool steadyClock = false;

  std::string error(const char *call, CUptiResult r) const {
    const char *s = nullptr;
    if (getResultString)
      getResultString(r, &s);
    return std::string(call) + " failed: " + (s ? s : "CUPTI error " + std::to_string(int(r)));
  }
};

std::mutex apiMutex;
Api *api = nullptr;     // set once loaded
std::string apiFailure; // why it could not be loaded
std::string apiChoice;  // MANTISSA_CUPTI when it was tried
bool apiTried = false;

/// The activity kinds the timeline records.
constexpr CUpti_ActivityKind kKinds[] = {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL,
                                         CUPTI_ACTIVITY_KIND_MEMSET, CUPTI_ACTIVITY_KIND_MEMCPY};
constexpr CUpti_CallbackId kGraphCallbacks[] = {CUPTI_CBID_RESOURCE_GRAPHNODE_CREATED,
                                                CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED};
constexpr CUpti_CallbackId kLaunchCallbacks[] = {CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch,
                                                 CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch_ptsz};
constexpr CUpti_CallbackId kRuntimeLaunchCallbacks[] = {
    CUPTI_RUNTIME_TRACE_CBID_cudaGraphLaunch_v10000,
    CUPTI_RUNTIME_TRACE_CBID_cudaGraphLaunch_ptsz_v10000};
constexpr size_t kBufferBytes = size_t(8) << 20;

/// Loads the first of `candidates` that dlopen finds and resolves the entry points;
/// nullptr with `reason`. `origin` says where the candidates came from.
Api *openApi(const std::vector<std::string> &candidates, const std::string &origin,
             std::string &reason) {
  void *lib = nullptr;
  std::string tried, used;
  for (const std::string &c : candidates) {
    lib = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib) {
      used = c;
      break;
    }
    const char *e = dlerror();
    tried += (tried.empty() ? "" : "; ") + std::string(e ? e : c + ": cannot be loaded");
  }
  if (!lib) {
    reason = "CUPTI is not available (" + tried + ")" + (origin.empty() ? "" : " [" + origin + "]");
    return nullptr;
  }
  auto a = std::make_unique<Api>();
  auto sym = [&](auto &fn, const char *name) {
    if (!reason.empty())
      return;
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
    if (!fn)
      reason = used + " has no " + name + " (not a CUPTI library?)";
  };
  reason.clear();
  sym(a->getResultString, "cuptiGetResultString");
  sym(a->getVersion, "cuptiGetVersion");
  sym(a->subscribe, "cuptiSubscribe");
  sym(a->unsubscribe, "cuptiUnsubscribe");
  sym(a->enableCallback, "cuptiEnableCallback");
  sym(a->registerCallbacks, "cuptiActivityRegisterCallbacks");
  sym(a->enable, "cuptiActivityEnable");
  sym(a->disable, "cuptiActivityDisable");
  sym(a->flushAll, "cuptiActivityFlushAll");
  sym(a->nextRecord, "cuptiActivityGetNextRecord");
  sym(a->dropped, "cuptiActivityGetNumDroppedRecords");
  sym(a->timestamp, "cuptiGetTimestamp");
  sym(a->graphNodeId, "cuptiGetGraphNodeId");
  if (reason.empty())
    a->registerTimestamp = reinterpret_cast<decltype(a->registerTimestamp)>(
        dlsym(lib, "cuptiActivityRegisterTimestampCallback"));
  uint32_t version = 0;
  if (reason.empty())
    if (CUptiResult r = a->getVersion(&version); r != CUPTI_SUCCESS)
      reason = used + ": " + a->error("cuptiGetVersion", r);
  // The record layouts (CUpti_ActivityKernel10, Memset4, Memcpy6) are those of the
  // headers built against: a library of another major version may write others.
  if (reason.empty() && version / 10000 != CUPTI_API_VERSION / 10000)
    reason = used + " is CUPTI API version " + std::to_string(version) +
             ", but the runtime was built for " + std::to_string(CUPTI_API_VERSION) +
             " (record layouts differ between major versions)";
  if (!reason.empty()) {
    dlclose(lib);
    return nullptr;
  }
  a->description = "CUPTI " + std::to_string(version / 10000) + "." +
                   std::to_string(version / 100 % 100) + ", " + used;
  return a.release(); // never freed: CUPTI keeps pointers into the library
}

bool loadApi(std::string &reason) {
  std::lock_guard<std::mutex> lock(apiMutex);
  const char *env = std::getenv("MANTISSA_CUPTI");
  const std::string choice = env ? env : "";
  // A library once loaded stays (CUPTI holds pointers to our callbacks); a failure
  // is retried only when MANTISSA_CUPTI names another library.
  if (!api && (!apiTried || choice != apiChoice)) {
    apiTried = true;
    apiChoice = choice;
    if (!choice.empty()) // an explicit choice is the only one tried
      api = openApi({choice}, "MANTISSA_CUPTI=" + choice, apiFailure);
    else
      api = openApi({"libcupti.so.13", "libcupti.so"}, "", apiFailure);
  }
  reason = api ? "" : apiFailure;
  return api != nullptr;
}

} // namespace

bool loadCupti(std::string &description, std::string &reason) {
  if (!loadApi(reason))
    return false;
  description = api->description;
  return true;
}

bool loadCuptiFrom(const std::string &path, std::string &description, std::string &reason) {
  Api *a = openApi({path}, "", reason);
  if (a)
    description = a->description;
  return a != nullptr;
}

TimelineMode parseTimelineMode(const std::string &value) {
  if (value.empty() || value == "auto")
    return TimelineMode::Auto;
  if (value == "cupti")
    return TimelineMode::Cupti;
  if (value == "events")
    return TimelineMode::Events;
  throw Error("MANTISSA_TIMELINE=" + value + ": expected cupti, events or auto");
}

TimelinePlan planTimeline(TimelineMode mode, bool graphs) {
  if (mode == TimelineMode::Events)
    return {false, "MANTISSA_TIMELINE=events"};
  if (!graphs) {
    if (mode == TimelineMode::Cupti)
      throw Error("MANTISSA_TIMELINE=cupti times CUDA graph replays, but CUDA graphs are off "
                  "(MANTISSA_CUDA_GRAPH=0, MANTISSA_CUDA_SYNC=1 or MANTISSA_CUDA_PROFILE=1)");
    return {false, "CUDA graphs are off"};
  }
  return {true, ""};
}

std::string cuptiFailed(TimelineMode mode, const std::string &reason) {
  if (mode == TimelineMode::Cupti)
    throw Error("MANTISSA_TIMELINE=cupti: " + reason);
  return reason;
}

struct CuptiTimeline::State {
  std::mutex mutex;
  CUpti_SubscriberHandle subscriber = nullptr;
  // Nodes and their steps (the capture's and cudaGraphInstantiate's copies).
  CapturedGraphs graphs;
  int64_t capturing = -1; // the function being captured, or -1
  uint32_t step = 0;
  size_t tagged = 0; // nodes tagged in the current capture
  // Launches.
  bool launching = false;
  bool launchReported = false; // the current launch has its run
  uint32_t launchFunction = 0;
  int64_t launchTag = -1;
  std::vector<GraphRun> runs;
  // Records (written by CUPTI's buffer-completed callback).
  std::vector<KernelRecord> records;
  std::vector<std::string> names;
  std::unordered_map<std::string, uint32_t> nameIds;
  size_t dropped = 0;

  uint32_t nameId(const char *name) {
    std::string n = name ? name : "?";
    auto it = nameIds.find(n);
    if (it != nameIds.end())
      return it->second;
    // cuBLAS's kernels are C++ templates: their names demangled, once per name.
    std::string shown = n;
    int status = 0;
    if (char *d = n.rfind("_Z", 0) == 0 ? abi::__cxa_demangle(n.c_str(), nullptr, nullptr, &status)
                                        : nullptr) {
      shown = d;
      std::free(d);
    }
    names.push_back(shown);
    return nameIds[n] = uint32_t(names.size() - 1);
  }
};

namespace {

std::atomic<CuptiTimeline::State *> active{nullptr}; // the open timeline's state

void CUPTIAPI bufferRequested(uint8_t **buffer, size_t *size, size_t *maxRecords) {
  *buffer = static_cast<uint8_t *>(std::aligned_alloc(8, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *maxRecords = 0;
}

void CUPTIAPI bufferCompleted(CUcontext ctx, uint32_t streamId, uint8_t *buffer, size_t,
                              size_t valid) {
  CuptiTimeline::State *s = active.load();
  if (s && api) {
    std::lock_guard<std::mutex> lock(s->mutex);
    CUpti_Activity *r = nullptr;
    while (api->nextRecord(buffer, valid, &r) == CUPTI_SUCCESS) {
      KernelRecord k;
      switch (r->kind) {
      case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
      case CUPTI_ACTIVITY_KIND_KERNEL: {
        auto *a = reinterpret_cast<const CUpti_ActivityKernel10 *>(r);
        k = {a->start, a->end, a->graphNodeId, a->correlationId, s->nameId(a->name)};
        break;
      }
      case CUPTI_ACTIVITY_KIND_MEMSET: {
        auto *a = reinterpret_cast<const CUpti_ActivityMemset4 *>(r);
        k = {a->start, a->end, a->graphNodeId, a->correlationId, s->nameId("(memset)")};
        break;
      }
      case CUPTI_ACTIVITY_KIND_MEMCPY: {
        auto *a = reinterpret_cast<const CUpti_ActivityMemcpy6 *>(r);
        k = {a->start, a->end, a->graphNodeId, a->correlationId, s->nameId("(memcpy)")};
        break;
      }
      default:
        continue;
      }
      s->records.push_back(k);
    }
    size_t dropped = 0;
    if (api->dropped(ctx, streamId, &dropped) == CUPTI_SUCCESS)
      s->dropped += dropped;
  }
  std::free(buffer);
}

/// timelineClock() in ns: CUPTI's timestamps on the energy timeline's clock.
uint64_t CUPTIAPI steadyNanoseconds() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
}

void CUPTIAPI callback(void *user, CUpti_CallbackDomain domain, CUpti_CallbackId id,
                       const void *data) {
  auto *s = static_cast<CuptiTimeline::State *>(user);
  if (domain == CUPTI_CB_DOMAIN_RESOURCE) {
    const auto *g = static_cast<const CUpti_GraphData *>(
        static_cast<const CUpti_ResourceData *>(data)->resourceDescriptor);
    uint64_t node = 0, original = 0;
    if (!g || !g->node || api->graphNodeId(g->node, &node) != CUPTI_SUCCESS)
      return;
    if (id == CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED &&
        (!g->originalNode || api->graphNodeId(g->originalNode, &original) != CUPTI_SUCCESS))
      return;
    std::lock_guard<std::mutex> lock(s->mutex);
    if (id == CUPTI_CBID_RESOURCE_GRAPHNODE_CREATED && s->capturing >= 0) {
      s->graphs.nodes[node] = {uint32_t(s->capturing), s->step};
      // Only the node kinds that give records make a step expect one.
      if (g->nodeType == CU_GRAPH_NODE_TYPE_KERNEL || g->nodeType == CU_GRAPH_NODE_TYPE_MEMSET ||
          g->nodeType == CU_GRAPH_NODE_TYPE_MEMCPY)
        s->graphs.recordSteps[size_t(s->capturing)].push_back(s->step);
      ++s->tagged;
    } else if (id == CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED) {
      auto it = s->graphs.nodes.find(original);
      if (it != s->graphs.nodes.end())
        s->graphs.nodes[node] = it->second;
    }
  } else if (domain == CUPTI_CB_DOMAIN_DRIVER_API || domain == CUPTI_CB_DOMAIN_RUNTIME_API) {
    // One launch may be reported twice (cudaGraphLaunch, then the cuGraphLaunch it
    // makes): the first names the run, a second id is kept beside it.
    const auto *c = static_cast<const CUpti_CallbackData *>(data);
    std::lock_guard<std::mutex> lock(s->mutex);
    if (c->callbackSite != CUPTI_API_ENTER || !s->launching)
      return;
    if (!s->launchReported) {
      s->runs.push_back({c->correlationId, s->launchFunction, s->launchTag});
      s->launchReported = true;
    } else if (c->correlationId != s->runs.back().correlation) {
      s->runs.back().otherCorrelation = c->correlationId;
    }
  }
}

ClockAnchor readAnchor() {
  // With CUPTI on steady_clock, the records' clock is timelineClock()'s: the anchor
  // is exact (two reads around it would be off by however long the thread was
  // preempted between them).
  if (api->steadyClock) {
    const uint64_t ns = steadyNanoseconds();
    return {ns, std::chrono::duration<double>(std::chrono::nanoseconds(ns)).count()};
  }
  // Else the host clock read on both sides of CUPTI's: the pair is good to half the gap.
  double before = timelineClock();
  uint64_t ns = 0;
  api->timestamp(&ns);
  double after = timelineClock();
  return {ns, 0.5 * (before + after)};
}

} // namespace

std::unique_ptr<CuptiTimeline> CuptiTimeline::open(size_t functions, std::string &reason) {
  if (!loadApi(reason))
    return nullptr;
  auto t = std::unique_ptr<CuptiTimeline>(new CuptiTimeline());
  t->state_ = std::make_unique<State>();
  State *s = t->state_.get();
  s->graphs.recordSteps.resize(functions);
  t->deviceKernels_.resize(functions);
  State *expected = nullptr;
  if (!active.compare_exchange_strong(expected, s)) {
    reason = "CUPTI is already in use by another CUDA executor's timeline";
    return nullptr;
  }
  // From here a failure undoes what was done (the destructor, through t).
  auto fail = [&](const char *call, CUptiResult r) {
    reason = api->error(call, r);
    return nullptr;
  };
  if (CUptiResult r = api->subscribe(&s->subscriber, callback, s); r != CUPTI_SUCCESS) {
    s->subscriber = nullptr;
    return fail("cuptiSubscribe", r);
  }
  for (CUpti_CallbackId id : kGraphCallbacks)
    if (CUptiResult r = api->enableCallback(1, s->subscriber, CUPTI_CB_DOMAIN_RESOURCE, id);
        r != CUPTI_SUCCESS)
      return fail("cuptiEnableCallback (graph nodes)", r);
  for (CUpti_CallbackId id : kLaunchCallbacks)
    if (CUptiResult r = api->enableCallback(1, s->subscriber, CUPTI_CB_DOMAIN_DRIVER_API, id);
        r != CUPTI_SUCCESS)
      return fail("cuptiEnableCallback (cuGraphLaunch)", r);
  // The runtime's report of the same launch: where CUPTI gives it (it may not
  // for a statically linked runtime), a second correlation id for the run.
  for (CUpti_CallbackId id : kRuntimeLaunchCallbacks)
    api->enableCallback(1, s->subscriber, CUPTI_CB_DOMAIN_RUNTIME_API, id);
  {
    // Once per process: the buffer callbacks are global and stay registered.
    static bool registered = false;
    std::lock_guard<std::mutex> lock(apiMutex);
    if (!registered) {
      // Before any activity kind is enabled (CUPTI's rule for the timestamp callback).
      api->steadyClock =
          api->registerTimestamp && api->registerTimestamp(steadyNanoseconds) == CUPTI_SUCCESS;
      if (CUptiResult r = api->registerCallbacks(bufferRequested, bufferCompleted);
          r != CUPTI_SUCCESS)
        return fail("cuptiActivityRegisterCallbacks", r);
      registered = true;
    }
  }
  for (CUpti_ActivityKind k : kKinds)
    if (CUptiResult r = api->enable(k); r != CUPTI_SUCCESS)
      return fail("cuptiActivityEnable", r);
  t->anchor_ = readAnchor();
  t->previous_ = t->anchor_;
  return t;
}

CuptiTimeline::~CuptiTimeline() {
  State *s = state_.get();
  if (!s || active.load() != s)
    return;
  if (s->subscriber) {
    for (CUpti_ActivityKind k : kKinds)
      api->disable(k);
    api->flushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    api->unsubscribe(s->subscriber);
  }
  active.store(nullptr);
}

std::string CuptiTimeline::description() const {
  return api->description + (api->steadyClock ? ", timestamps on steady_clock"
                                              : ", CLOCK_REALTIME timestamps mapped at each drain");
}

size_t CuptiTimeline::droppedRecords() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->dropped;
}

void CuptiTimeline::beginCapture(uint32_t function) {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (function >= state_->graphs.recordSteps.size())
    throw Error("CUPTI timeline: function " + std::to_string(function) +
                " out of range (internal)");
  state_->graphs.recordSteps[function].clear();
  state_->capturing = int64_t(function);
  state_->step = 0;
  state_->tagged = 0;
}

void CuptiTimeline::captureStep(uint32_t step) {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->step = step;
}

size_t CuptiTimeline::endCapture() {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->capturing = -1;
  return state_->tagged;
}

void CuptiTimeline::beforeLaunch(uint32_t function) {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->launching = true;
  state_->launchReported = false;
  state_->launchFunction = function;
  state_->launchTag = tag_;
}

void CuptiTimeline::afterLaunch() {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->launching = false;
}

void CuptiTimeline::drain(std::vector<StepSpan> &out) {
  if (CUptiResult r = api->flushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED); r != CUPTI_SUCCESS)
    throw Error("energy timeline: " + api->error("cuptiActivityFlushAll", r));
  previous_ = anchor_;
  anchor_ = readAnchor();
  std::vector<KernelRecord> records;
  std::vector<GraphRun> runs;
  std::vector<std::string> names;
  CapturedGraphs graphs;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    records.swap(state_->records);
    runs.swap(state_->runs);
    names = state_->names;
    graphs = state_->graphs;
  }
  FoldStats stats;
  std::vector<StepRecords> steps =
      foldKernelRecords(records, graphs, runs, previous_, anchor_, stats);
  for (const StepRecords &s : steps) {
    out.push_back(s.span);
    auto &known = deviceKernels_[s.span.function];
    if (known.size() <= s.span.step)
      known.resize(s.span.step + 1);
    for (uint32_t n : s.names)
      if (std::find(known[s.span.step].begin(), known[s.span.step].end(), names[n]) ==
          known[s.span.step].end())
        known[s.span.step].push_back(names[n]);
  }
  stats_ = stats;
}

} // namespace mantissa
