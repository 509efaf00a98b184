// A fake libcupti for CuptiTimeline's dlopen path without a GPU: the entry points
// the timeline resolves, with CUPTI's types from the toolkit's headers, plus
// fakeCupti* functions through which a test plays the driver (graph nodes created
// and cloned, graph launches, device records written into the timeline's buffers).
#include <cupti_activity.h>
#include <cupti_callbacks.h>
#include <cupti_driver_cbid.h>
#include <cupti_result.h>
#include <cupti_runtime_cbid.h>
#include <cupti_version.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <utility>
#include <vector>

namespace {

CUpti_CallbackFunc callback = nullptr;
void *userdata = nullptr;
bool subscribed = false, failSubscribe = false, refuseTimestamp = false;
std::set<std::pair<int, int>> enabled; // (domain, cbid)
std::set<int> kinds;
CUpti_BuffersCallbackRequestFunc requestBuffer = nullptr;
CUpti_BuffersCallbackCompleteFunc completeBuffer = nullptr;
int registrations = 0;
CUpti_TimestampCallbackFunc timestamp = nullptr;

/// One record per slot: CUPTI packs records of varying size, the fake uses the largest.
constexpr size_t kSlot = std::max(
    {sizeof(CUpti_ActivityKernel10), sizeof(CUpti_ActivityMemset4), sizeof(CUpti_ActivityMemcpy6)});
struct Slot {
  alignas(8) unsigned char bytes[kSlot];
};
std::vector<Slot> pending;

bool on(CUpti_CallbackDomain d, CUpti_CallbackId id) {
  return subscribed && callback && enabled.count({int(d), int(id)});
}

void graphEvent(CUpti_CallbackId id, uint64_t node, uint64_t original, CUgraphNodeType type) {
  if (!on(CUPTI_CB_DOMAIN_RESOURCE, id))
    return;
  CUpti_GraphData g{};
  g.node = reinterpret_cast<CUgraphNode>(node);
  g.originalNode = reinterpret_cast<CUgraphNode>(original);
  g.nodeType = type;
  CUpti_ResourceData r{};
  r.resourceDescriptor = &g;
  callback(userdata, CUPTI_CB_DOMAIN_RESOURCE, id, &r);
}

void api(CUpti_CallbackDomain d, CUpti_CallbackId id, uint32_t correlation) {
  if (!on(d, id))
    return;
  for (CUpti_ApiCallbackSite site : {CUPTI_API_ENTER, CUPTI_API_EXIT}) {
    CUpti_CallbackData c{};
    c.callbackSite = site;
    c.functionName = "cuGraphLaunch";
    c.correlationId = correlation;
    callback(userdata, d, id, &c);
  }
}

} // namespace

extern "C" {

CUptiResult cuptiGetResultString(CUptiResult r, const char **s) {
  switch (r) {
  case CUPTI_SUCCESS:
    *s = "CUPTI_SUCCESS";
    break;
  case CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED:
    *s = "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED";
    break;
  default:
    *s = "CUPTI_ERROR_UNKNOWN";
  }
  return CUPTI_SUCCESS;
}
CUptiResult cuptiGetVersion(uint32_t *v) {
  *v = CUPTI_API_VERSION;
  return CUPTI_SUCCESS;
}
CUptiResult cuptiSubscribe(CUpti_SubscriberHandle *h, CUpti_CallbackFunc f, void *u) {
  if (failSubscribe || subscribed)
    return CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED;
  callback = f, userdata = u, subscribed = true;
  *h = reinterpret_cast<CUpti_SubscriberHandle>(&subscribed);
  return CUPTI_SUCCESS;
}
CUptiResult cuptiUnsubscribe(CUpti_SubscriberHandle) {
  subscribed = false, callback = nullptr, userdata = nullptr;
  enabled.clear();
  return CUPTI_SUCCESS;
}
CUptiResult cuptiEnableCallback(uint32_t enable, CUpti_SubscriberHandle, CUpti_CallbackDomain d,
                                CUpti_CallbackId id) {
  if (enable)
    enabled.insert({int(d), int(id)});
  else
    enabled.erase({int(d), int(id)});
  return CUPTI_SUCCESS;
}
CUptiResult cuptiActivityRegisterCallbacks(CUpti_BuffersCallbackRequestFunc req,
                                           CUpti_BuffersCallbackCompleteFunc done) {
  requestBuffer = req, completeBuffer = done;
  ++registrations;
  return CUPTI_SUCCESS;
}
CUptiResult cuptiActivityEnable(CUpti_ActivityKind k) {
  kinds.insert(int(k));
  return CUPTI_SUCCESS;
}
CUptiResult cuptiActivityDisable(CUpti_ActivityKind k) {
  kinds.erase(int(k));
  return CUPTI_SUCCESS;
}
CUptiResult cuptiActivityFlushAll(uint32_t) {
  while (!pending.empty()) {
    uint8_t *buffer = nullptr;
    size_t size = 0, maxRecords = 0;
    requestBuffer(&buffer, &size, &maxRecords);
    if (!buffer)
      return CUPTI_ERROR_UNKNOWN;
    size_t n = std::min(pending.size(), size / kSlot);
    std::memcpy(buffer, pending.data(), n * kSlot);
    pending.erase(pending.begin(), pending.begin() + long(n));
    completeBuffer(nullptr, 0, buffer, size, n * kSlot);
  }
  return CUPTI_SUCCESS;
}
CUptiResult cuptiActivityGetNextRecord(uint8_t *buffer, size_t valid, CUpti_Activity **record) {
  uint8_t *next = *record ? reinterpret_cast<uint8_t *>(*record) + kSlot : buffer;
  if (next + kSlot > buffer + valid)
    return CUPTI_ERROR_MAX_LIMIT_REACHED;
  *record = reinterpret_cast<CUpti_Activity *>(next);
  return CUPTI_SUCCESS;
}
CUptiResult cuptiActivityGetNumDroppedRecords(CUcontext, uint32_t, size_t *dropped) {
  *dropped = 0;
  return CUPTI_SUCCESS;
}
CUptiResult cuptiGetTimestamp(uint64_t *ns) {
  *ns = uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count());
  return CUPTI_SUCCESS;
}
CUptiResult cuptiGetGraphNodeId(CUgraphNode node, uint64_t *id) {
  *id = reinterpret_cast<uint64_t>(node);
  return CUPTI_SUCCESS;
}
CUptiResult cuptiActivityRegisterTimestampCallback(CUpti_TimestampCallbackFunc f) {
  if (refuseTimestamp)
    return CUPTI_ERROR_NOT_INITIALIZED;
  timestamp = f;
  return CUPTI_SUCCESS;
}

// The test's side.
void fakeCuptiFailSubscribe(int fail) { failSubscribe = fail != 0; }
/// CUPTI's clock stays its own (CLOCK_REALTIME here): the anchors must map it.
void fakeCuptiRefuseTimestampCallback(int refuse) { refuseTimestamp = refuse != 0; }
/// The clock records are on: the timestamp callback's, else cuptiGetTimestamp's.
uint64_t fakeCuptiNow();
int fakeCuptiRegistrations() { return registrations; }
int fakeCuptiKindsEnabled() { return int(kinds.size()); }
uint64_t fakeCuptiNow() {
  uint64_t ns = 0;
  if (timestamp)
    return timestamp();
  cuptiGetTimestamp(&ns);
  return ns;
}
void fakeCuptiNodeCreated(uint64_t node, int type) {
  graphEvent(CUPTI_CBID_RESOURCE_GRAPHNODE_CREATED, node, 0, CUgraphNodeType(type));
}
void fakeCuptiNodeCloned(uint64_t original, uint64_t clone, int type) {
  graphEvent(CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED, clone, original, CUgraphNodeType(type));
}
/// cudaGraphLaunch (runtime domain) calling cuGraphLaunch (driver domain).
void fakeCuptiGraphLaunch(uint32_t runtimeCorrelation, uint32_t driverCorrelation) {
  api(CUPTI_CB_DOMAIN_RUNTIME_API, CUPTI_RUNTIME_TRACE_CBID_cudaGraphLaunch_v10000,
      runtimeCorrelation);
  api(CUPTI_CB_DOMAIN_DRIVER_API, CUPTI_DRIVER_TRACE_CBID_cuGraphLaunch, driverCorrelation);
}
/// A device record, as CUPTI writes it (the kinds enabled only).
void fakeCuptiRecord(int kind, uint64_t start, uint64_t end, uint64_t node, uint32_t correlation,
                     const char *name) {
  if (!kinds.count(kind))
    return;
  Slot s{};
  if (kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) {
    auto *k = reinterpret_cast<CUpti_ActivityKernel10 *>(s.bytes);
    k->kind = CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL;
    k->start = start, k->end = end, k->graphNodeId = node, k->correlationId = correlation;
    k->graphId = node ? 1 : 0;
    k->name = name;
  } else if (kind == CUPTI_ACTIVITY_KIND_MEMSET) {
    auto *m = reinterpret_cast<CUpti_ActivityMemset4 *>(s.bytes);
    m->kind = CUPTI_ACTIVITY_KIND_MEMSET;
    m->start = start, m->end = end, m->graphNodeId = node, m->correlationId = correlation;
  } else {
    auto *m = reinterpret_cast<CUpti_ActivityMemcpy6 *>(s.bytes);
    m->kind = CUpti_ActivityKind(kind);
    m->start = start, m->end = end, m->graphNodeId = node, m->correlationId = correlation;
  }
  pending.push_back(s);
}

} // extern "C"
