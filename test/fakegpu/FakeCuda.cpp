//===- FakeCuda.cpp - the CUDA runtime and cuBLAS, emulated on the CPU -----===//
//
// The CUDA plugin built against this file instead of libcudart and cuBLAS runs the
// whole executor on a machine with no GPU: allocation, copies, streams, events, graph
// capture and replay, kernel launches and the GEMMs. So CI exercises what no kernel
// test reaches: the order of launches, scratch placement, graph capture (arguments
// frozen at capture, as on a GPU), the loss-scale and skip flags on the device, and the
// error paths (out of memory, a launch the device refuses).
//
//  - Device memory is host memory (256-byte aligned). MANTISSA_FAKE_CUDA_MEMORY bytes
//    in all (default 80 GiB): beyond it cudaMalloc fails as on a full GPU.
//  - Kernels: the module's CUDA C++ (ModuleLoad.h gives it) is compiled for the CPU by
//    HostKernels (test/unit/cuda/HostKernels.h): each block's threads are fibers, so
//    __syncthreads, shuffles, mma.sync and ldmatrix behave as specified. Launches are
//    checked as a GPU checks them (grid and block limits).
//  - Streams execute in issue order, at once: everything is synchronous. A stream under
//    capture records instead (kernel arguments copied then, as cudaStreamBeginCapture
//    does); cudaGraphLaunch replays. A call that capture forbids (a synchronous copy,
//    an allocation) fails the capture, as CUDA's ThreadLocal/Global modes do.
//  - cuBLAS GemmEx/StridedBatchedEx and cuBLASLt matmul with the BIAS / RELU_BIAS
//    epilogues: products summed in double and rounded to fp32 (CUBLAS_COMPUTE_32F; with
//    FAST_TF32 the inputs are first rounded to tf32), then alpha, beta, bias, relu and
//    one rounding to the output type. What cuBLASLt's RELU does with a NaN is not
//    documented: the emulation keeps it (PyTorch's relu, and the CPU backend's), and
//    only a GPU run of CudaExecutor.GemmEpilogueMatchesCpu (its f32_nan case) checks it.
//  - The device: compute capability MANTISSA_FAKE_CUDA_ARCH (default 90), 132 SMs.
//  - A planted fault for tests: MANTISSA_FAKE_CUDA_DROP_LAUNCH=N skips the N-th kernel
//    launch of the process (a captured launch counts once, when captured).
//  - Compiled kernels are kept in MANTISSA_FAKE_CUDA_CACHE (default
//    /tmp/mantissa-fakegpu-cache), by a hash of what they were compiled from.
//
// Not emulated: concurrency between streams, timing (events read the host clock),
// CUPTI, and device-side memory errors (a kernel that writes out of bounds writes host
// memory: run under ASan to find it).
//===----------------------------------------------------------------------===//
#include "runtime/cuda/ModuleLoad.h"

#include "HostKernels.h"
#include "common/Error.h"
#include "common/Float16.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using mantissa::test::HostKernels;

namespace {

using Op = std::function<void()>;

std::recursive_mutex gMutex;
cudaError_t gLastError = cudaSuccess;

cudaError_t fail(cudaError_t e) {
  if (e != cudaSuccess)
    gLastError = e;
  return e;
}

std::string envOr(const char *name, const char *otherwise) {
  const char *v = std::getenv(name);
  return v && *v ? v : otherwise;
}

// --- memory -------------------------------------------------------------------------

std::map<uintptr_t, size_t> gAllocations; // device and pinned host allocations
size_t gAllocated = 0;

// The limits a GPU checks a launch against, which the device properties also report.
constexpr unsigned kMaxGridX = 0x7fffffff, kMaxGridYZ = 65535, kMaxThreads = 1024, kMaxBlockZ = 64;
constexpr size_t kMaxSharedOptin = 227 << 10;

size_t totalMemory() {
  static const size_t total = std::stoull(envOr("MANTISSA_FAKE_CUDA_MEMORY", "85899345920"));
  return total;
}

// --- streams and capture ------------------------------------------------------------

} // namespace

struct CUgraph_st {
  std::vector<Op> ops;
};
struct CUgraphExec_st {
  std::vector<Op> ops;
};
struct CUstream_st {
  CUgraph_st *capture = nullptr; // recording into this graph
  bool invalidated = false;      // a call capture forbids happened
  std::thread::id thread;
};
struct CUevent_st {
  bool timing = true, recorded = false;
  double seconds = 0;
};

namespace {

std::vector<CUstream_st *> gCapturing;

CUstream_st *capturingStream() {
  for (CUstream_st *s : gCapturing)
    if (s->thread == std::this_thread::get_id())
      return s;
  return nullptr;
}

/// A call that capture forbids on this thread (ThreadLocal and Global modes): it
/// fails and the capture is invalidated, as CUDA does.
cudaError_t forbiddenInCapture() {
  if (CUstream_st *s = capturingStream()) {
    s->invalidated = true;
    return fail(cudaErrorStreamCaptureUnsupported);
  }
  return cudaSuccess;
}

/// Runs `op` now, or records it into the stream's capture. A kernel that throws (the
/// emulation's own checks) is a launch failure, said on stderr.
cudaError_t enqueue(cudaStream_t stream, Op op) {
  if (stream && stream->capture) {
    stream->capture->ops.push_back(std::move(op));
    return cudaSuccess;
  }
  if (capturingStream() && !stream) // the legacy stream during a capture
    return forbiddenInCapture();
  try {
    op();
  } catch (const std::exception &e) {
    std::fprintf(stderr, "fake CUDA: %s\n", e.what());
    return fail(cudaErrorLaunchFailure);
  }
  return cudaSuccess;
}

double hostSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

} // namespace

// --- modules and kernels ----------------------------------------------------------------

struct CUlib_st {
  std::string source;
  std::vector<std::string> names;                     // every name asked for, in order
  std::vector<std::unique_ptr<HostKernels>> compiled; // the last one has every name
  size_t compiledNames = 0;
};
struct CUkern_st {
  CUlib_st *lib = nullptr;
  std::string name;
  HostKernels *host = nullptr; // the library `entry` is from (its mt_host_run); null
                               // until the kernel is first needed
  HostKernels::Entry entry;
  std::vector<std::pair<size_t, size_t>> params; // (offset, size)
};

namespace {

std::map<const void *, std::string> gPendingSource; // image -> its source (loadModule)
std::vector<std::unique_ptr<CUkern_st>> gKernels;

std::string cacheDir() { return envOr("MANTISSA_FAKE_CUDA_CACHE", "/tmp/mantissa-fakegpu-cache"); }

/// Compiles the library for the CPU with every name asked for so far (once per set).
void resolve(CUkern_st &k) {
  if (k.host)
    return;
  CUlib_st &lib = *k.lib;
  if (lib.compiledNames != lib.names.size()) {
    lib.compiled.push_back(std::make_unique<HostKernels>(lib.source, lib.names, cacheDir()));
    lib.compiledNames = lib.names.size();
  }
  HostKernels *host = lib.compiled.back().get();
  k.entry = host->entry(k.name);
  size_t offset = 0, size = 0;
  for (size_t i = 0; k.entry.paramInfo(i, &offset, &size) == 0; ++i)
    k.params.push_back({offset, size});
  k.host = host;
}

/// resolve() as a CUDA error: a kernel the host compiler or the library rejects is an
/// invalid device function, said on stderr.
cudaError_t resolved(CUkern_st &k) {
  try {
    resolve(k);
  } catch (const std::exception &e) {
    std::fprintf(stderr, "fake CUDA: %s\n", e.what());
    return fail(cudaErrorInvalidDeviceFunction);
  }
  return cudaSuccess;
}

} // namespace

namespace mantissa {
namespace cuda {

cudaError_t loadModule(cudaLibrary_t *lib, const void *image, const std::string &source) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  gPendingSource[image] = source;
  cudaError_t e = cudaLibraryLoadData(lib, image, nullptr, nullptr, 0, nullptr, nullptr, 0);
  gPendingSource.erase(image);
  return e;
}

} // namespace cuda
} // namespace mantissa

// --- the CUDA runtime -----------------------------------------------------------------

const char *cudaGetErrorString(cudaError_t e) {
  switch (e) {
  case cudaSuccess:
    return "no error";
  case cudaErrorInvalidValue:
    return "invalid argument";
  case cudaErrorMemoryAllocation:
    return "out of memory";
  case cudaErrorInvalidConfiguration:
    return "invalid configuration argument";
  case cudaErrorInvalidDevice:
    return "invalid device ordinal";
  case cudaErrorInvalidResourceHandle:
    return "invalid resource handle";
  case cudaErrorSymbolNotFound:
    return "named symbol not found";
  case cudaErrorLaunchFailure:
    return "unspecified launch failure (host emulation: the kernel threw)";
  case cudaErrorNotSupported:
    return "operation not supported (by the host emulation)";
  case cudaErrorStreamCaptureUnsupported:
    return "operation not permitted when stream is capturing";
  case cudaErrorStreamCaptureInvalidated:
    return "operation failed due to a previous error during capture";
  default:
    return "error (host emulation)";
  }
}

const char *cudaGetErrorName(cudaError_t e) {
  static thread_local char buf[32];
  std::snprintf(buf, sizeof buf, "cudaError %d", int(e));
  return e == cudaSuccess ? "cudaSuccess" : buf;
}

cudaError_t cudaGetLastError() {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  cudaError_t e = gLastError;
  gLastError = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return gLastError; }

cudaError_t cudaGetDeviceCount(int *count) {
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice);
}

cudaError_t cudaGetDevice(int *device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device) {
  if (device != 0)
    return fail(cudaErrorInvalidDevice);
  std::memset(p, 0, sizeof *p);
  const int arch = std::atoi(envOr("MANTISSA_FAKE_CUDA_ARCH", "90").c_str());
  std::snprintf(p->name, sizeof p->name, "Mantissa host emulation of sm_%d", arch);
  p->major = arch / 10;
  p->minor = arch % 10;
  p->totalGlobalMem = totalMemory();
  p->multiProcessorCount = 132;
  p->warpSize = 32;
  p->maxThreadsPerBlock = kMaxThreads;
  p->maxThreadsDim[0] = p->maxThreadsDim[1] = kMaxThreads;
  p->maxThreadsDim[2] = kMaxBlockZ;
  p->maxGridSize[0] = int(kMaxGridX);
  p->maxGridSize[1] = p->maxGridSize[2] = kMaxGridYZ;
  p->sharedMemPerBlock = 48 << 10;
  p->sharedMemPerBlockOptin = kMaxSharedOptin;
  p->sharedMemPerMultiprocessor = 228 << 10;
  p->regsPerBlock = 65536;
  p->maxThreadsPerMultiProcessor = 2048;
  p->l2CacheSize = 50 << 20;
  p->memoryBusWidth = 5120;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device) {
  cudaDeviceProp p;
  if (cudaError_t e = cudaGetDeviceProperties(&p, device))
    return e;
  switch (attr) {
  case cudaDevAttrComputeCapabilityMajor:
    *value = p.major;
    return cudaSuccess;
  case cudaDevAttrComputeCapabilityMinor:
    *value = p.minor;
    return cudaSuccess;
  case cudaDevAttrMultiProcessorCount:
    *value = p.multiProcessorCount;
    return cudaSuccess;
  default:
    return fail(cudaErrorNotSupported);
  }
}

cudaError_t cudaRuntimeGetVersion(int *v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  return forbiddenInCapture();
}

cudaError_t cudaMemGetInfo(size_t *freeBytes, size_t *totalBytes) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  *totalBytes = totalMemory();
  *freeBytes = totalMemory() - gAllocated;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  if (cudaError_t e = forbiddenInCapture())
    return e;
  *p = nullptr;
  if (bytes > totalMemory() - gAllocated)
    return fail(cudaErrorMemoryAllocation);
  const size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
  void *m = std::aligned_alloc(256, rounded);
  if (!m)
    return fail(cudaErrorMemoryAllocation);
  gAllocations[reinterpret_cast<uintptr_t>(m)] = bytes;
  gAllocated += bytes;
  *p = m;
  return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  if (!p)
    return cudaSuccess;
  if (cudaError_t e = forbiddenInCapture())
    return e;
  auto it = gAllocations.find(reinterpret_cast<uintptr_t>(p));
  if (it == gAllocations.end())
    return fail(cudaErrorInvalidValue);
  gAllocated -= it->second;
  gAllocations.erase(it);
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void **p, size_t bytes) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  if (cudaError_t e = forbiddenInCapture())
    return e;
  *p = std::aligned_alloc(256, (std::max<size_t>(bytes, 1) + 255) / 256 * 256);
  return *p ? cudaSuccess : fail(cudaErrorMemoryAllocation);
}

cudaError_t cudaFreeHost(void *p) {
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  if (cudaError_t e = forbiddenInCapture())
    return e;
  if (bytes)
    std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind,
                            cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  return enqueue(stream, [=] {
    if (bytes)
      std::memmove(dst, src, bytes);
  });
}

cudaError_t cudaMemset(void *p, int value, size_t bytes) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  if (cudaError_t e = forbiddenInCapture())
    return e;
  std::memset(p, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  return enqueue(stream, [=] { std::memset(p, value, bytes); });
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int) {
  *s = new CUstream_st;
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }

cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  if (s && s->capture) {
    s->invalidated = true;
    return fail(cudaErrorStreamCaptureUnsupported);
  }
  return forbiddenInCapture();
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  if (!s || s->capture)
    return fail(cudaErrorStreamCaptureUnsupported);
  s->capture = new CUgraph_st;
  s->invalidated = false;
  s->thread = std::this_thread::get_id();
  gCapturing.push_back(s);
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  *graph = nullptr;
  if (!s || !s->capture)
    return fail(cudaErrorIllegalState);
  gCapturing.erase(std::remove(gCapturing.begin(), gCapturing.end(), s), gCapturing.end());
  CUgraph_st *captured = s->capture;
  s->capture = nullptr;
  if (s->invalidated) {
    delete captured;
    return fail(cudaErrorStreamCaptureInvalidated);
  }
  *graph = captured;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long) {
  *exec = new CUgraphExec_st{graph->ops};
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  if (!exec)
    return fail(cudaErrorInvalidResourceHandle);
  for (const Op &op : exec->ops)
    if (cudaError_t e = enqueue(stream, op))
      return e;
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags) {
  *e = new CUevent_st;
  (*e)->timing = !(flags & cudaEventDisableTiming);
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, 0); }

cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  if (!e)
    return fail(cudaErrorInvalidResourceHandle);
  return enqueue(stream, [e] {
    e->recorded = true;
    e->seconds = hostSeconds();
  });
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  if (!e)
    return fail(cudaErrorInvalidResourceHandle);
  return forbiddenInCapture();
}

cudaError_t cudaEventQuery(cudaEvent_t e) {
  return e ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
  if (!start || !end || !start->timing || !end->timing)
    return fail(cudaErrorInvalidResourceHandle);
  if (!start->recorded || !end->recorded)
    return fail(cudaErrorInvalidResourceHandle);
  *ms = float((end->seconds - start->seconds) * 1e3);
  return cudaSuccess;
}

cudaError_t cudaLibraryLoadData(cudaLibrary_t *lib, const void *code, cudaJitOption *, void **,
                                unsigned int, cudaLibraryOption *, void **, unsigned int) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  auto it = gPendingSource.find(code);
  if (it == gPendingSource.end()) {
    std::fprintf(stderr, "fake CUDA: cudaLibraryLoadData of an image without its source "
                         "(load modules through mantissa::cuda::loadModule)\n");
    return fail(cudaErrorNotSupported);
  }
  *lib = new CUlib_st;
  (*lib)->source = it->second;
  return cudaSuccess;
}

cudaError_t cudaLibraryUnload(cudaLibrary_t lib) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  gKernels.erase(
      std::remove_if(gKernels.begin(), gKernels.end(),
                     [lib](const std::unique_ptr<CUkern_st> &k) { return k->lib == lib; }),
      gKernels.end());
  delete lib;
  return cudaSuccess;
}

cudaError_t cudaLibraryGetKernel(cudaKernel_t *kernel, cudaLibrary_t lib, const char *name) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  if (!lib)
    return fail(cudaErrorInvalidResourceHandle);
  // The name must be in the source (its definition, or a macro that makes it).
  if (lib->source.find(name) == std::string::npos)
    return fail(cudaErrorSymbolNotFound);
  for (const auto &k : gKernels)
    if (k->lib == lib && k->name == name) {
      *kernel = k.get();
      return cudaSuccess;
    }
  if (std::find(lib->names.begin(), lib->names.end(), name) == lib->names.end())
    lib->names.push_back(name);
  auto k = std::make_unique<CUkern_st>();
  k->lib = lib;
  k->name = name;
  *kernel = k.get();
  gKernels.push_back(std::move(k));
  return cudaSuccess;
}

cudaError_t cudaFuncGetParamInfo(const void *func, size_t i, size_t *offset, size_t *size) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  auto *k = const_cast<CUkern_st *>(static_cast<const CUkern_st *>(func));
  if (cudaError_t e = resolved(*k))
    return e;
  if (i >= k->params.size())
    return fail(cudaErrorInvalidValue);
  *offset = k->params[i].first;
  *size = k->params[i].second;
  return cudaSuccess;
}

cudaError_t cudaLaunchKernel(const void *func, dim3 grid, dim3 block, void **args, size_t sharedMem,
                             cudaStream_t stream) {
  std::lock_guard<std::recursive_mutex> g(gMutex);
  auto *k = const_cast<CUkern_st *>(static_cast<const CUkern_st *>(func));
  if (!k)
    return fail(cudaErrorInvalidDeviceFunction);
  // What a GPU refuses.
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || block.x == 0 || block.y == 0 || block.z == 0 ||
      grid.y > kMaxGridYZ || grid.z > kMaxGridYZ || grid.x > kMaxGridX ||
      uint64_t(block.x) * block.y * block.z > kMaxThreads || block.z > kMaxBlockZ ||
      sharedMem > kMaxSharedOptin)
    return fail(cudaErrorInvalidConfiguration);
  // What the emulation does not do.
  if (block.y != 1 || block.z != 1 || block.x % 32 != 0 || sharedMem != 0) {
    std::fprintf(stderr,
                 "fake CUDA: %s launched with a block of (%u, %u, %u) and %zu bytes of "
                 "dynamic shared memory: the emulation runs 1-D blocks of whole warps only\n",
                 k->name.c_str(), block.x, block.y, block.z, sharedMem);
    return fail(cudaErrorNotSupported);
  }
  if (cudaError_t e = resolved(*k))
    return e;
  // The arguments by value, now (a captured launch keeps these).
  size_t bytes = 0;
  for (auto [offset, size] : k->params)
    bytes = std::max(bytes, offset + size);
  auto buffer = std::make_shared<std::vector<uint64_t>>((bytes + 7) / 8 + 1);
  char *base = reinterpret_cast<char *>(buffer->data());
  for (size_t i = 0; i < k->params.size(); ++i)
    std::memcpy(base + k->params[i].first, args[i], k->params[i].second);
  // A planted fault for the tests that must see it fail: launch N (from 1) does nothing.
  static const long dropLaunch = std::atol(envOr("MANTISSA_FAKE_CUDA_DROP_LAUNCH", "0").c_str());
  static long launches = 0;
  if (++launches == dropLaunch) {
    std::fprintf(stderr,
                 "fake CUDA: dropped launch %ld (%s), as MANTISSA_FAKE_CUDA_DROP_LAUNCH "
                 "asks\n",
                 launches, k->name.c_str());
    return cudaSuccess;
  }
  // cudaLaunchKernel's argument array, into the copy: built once, also for every replay.
  std::vector<void *> pointers;
  for (auto [offset, size] : k->params)
    pointers.push_back(base + offset);
  const HostKernels::Entry entry = k->entry;
  HostKernels *host = k->host;
  // `buffer` is captured to keep the arguments alive as long as the launch may run.
  return enqueue(stream, [buffer, pointers, entry, host, grid, block]() mutable {
    host->launch(entry, grid.x, grid.y, grid.z, block.x, pointers.data());
  });
}

// --- cuBLAS ---------------------------------------------------------------------------

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};
struct cublasLtContext {};

namespace {

float loadAs(const void *p, cudaDataType_t t, size_t i) {
  switch (t) {
  case CUDA_R_32F:
    return static_cast<const float *>(p)[i];
  case CUDA_R_16F:
    return mantissa::halfBitsToFloat(static_cast<const uint16_t *>(p)[i]);
  case CUDA_R_16BF: {
    uint32_t bits = uint32_t(static_cast<const uint16_t *>(p)[i]) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  default:
    throw mantissa::Error("fake cuBLAS: data type " + std::to_string(int(t)));
  }
}

void storeAs(void *p, cudaDataType_t t, size_t i, float v) {
  switch (t) {
  case CUDA_R_32F:
    static_cast<float *>(p)[i] = v;
    return;
  case CUDA_R_16F:
    static_cast<uint16_t *>(p)[i] = mantissa::floatToHalfBits(v);
    return;
  case CUDA_R_16BF:
    static_cast<uint16_t *>(p)[i] = mantissa::floatToBF16Bits(v);
    return;
  default:
    throw mantissa::Error("fake cuBLAS: data type " + std::to_string(int(t)));
  }
}

/// fp32 rounded to tf32 (10 mantissa bits, to nearest even), as FAST_TF32 takes inputs.
float tf32(float x) {
  if (!std::isfinite(x))
    return x;
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u = (u + 0xfffu + ((u >> 13) & 1u)) & ~0x1fffu;
  std::memcpy(&x, &u, 4);
  return x;
}

bool supported(cudaDataType_t t) { return t == CUDA_R_32F || t == CUDA_R_16F || t == CUDA_R_16BF; }

struct GemmArgs {
  cublasOperation_t ta, tb;
  int m, n, k;
  float alpha, beta;
  const void *A;
  cudaDataType_t at;
  int64_t lda, strideA;
  const void *B;
  cudaDataType_t bt;
  int64_t ldb, strideB;
  void *C;
  cudaDataType_t ct;
  int64_t ldc, strideC;
  int batch;
  bool tf32;
  // cuBLASLt's epilogue: D = act(alpha op(A) op(B) + bias[row]).
  const void *bias = nullptr;
  cudaDataType_t biasType = CUDA_R_32F;
  bool relu = false;
};

/// Column-major C[m x n] = alpha op(A)[m x k] op(B)[k x n] + beta C (+ the epilogue).
void gemm(const GemmArgs &g) {
  for (int b = 0; b < g.batch; ++b) {
    const char *A = static_cast<const char *>(g.A), *B = static_cast<const char *>(g.B);
    char *C = static_cast<char *>(g.C);
    const int64_t ea = g.at == CUDA_R_32F ? 4 : 2, eb = g.bt == CUDA_R_32F ? 4 : 2,
                  ec = g.ct == CUDA_R_32F ? 4 : 2;
    A += b * g.strideA * ea;
    B += b * g.strideB * eb;
    C += b * g.strideC * ec;
    auto a = [&](int i, int l) {
      float v =
          loadAs(A, g.at, g.ta == CUBLAS_OP_N ? size_t(i + l * g.lda) : size_t(l + i * g.lda));
      return g.tf32 ? tf32(v) : v;
    };
    auto bv = [&](int l, int j) {
      float v =
          loadAs(B, g.bt, g.tb == CUBLAS_OP_N ? size_t(l + j * g.ldb) : size_t(j + l * g.ldb));
      return g.tf32 ? tf32(v) : v;
    };
    for (int j = 0; j < g.n; ++j)
      for (int i = 0; i < g.m; ++i) {
        double s = 0;
        for (int l = 0; l < g.k; ++l)
          s += double(a(i, l)) * double(bv(l, j));
        float v = g.alpha * float(s);
        const size_t at = size_t(i + j * g.ldc);
        if (g.beta != 0.0f)
          v += g.beta * loadAs(C, g.ct, at);
        if (g.bias)
          v += loadAs(g.bias, g.biasType, size_t(i));
        if (g.relu) // NaN stays NaN (see the header)
          v = v < 0.0f ? 0.0f : v;
        storeAs(C, g.ct, at, v);
      }
  }
}

cublasStatus_t enqueueGemm(cudaStream_t stream, const GemmArgs &g) {
  if (!supported(g.at) || !supported(g.bt) || !supported(g.ct))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  if (g.m < 0 || g.n < 0 || g.k < 0 || g.batch < 0)
    return CUBLAS_STATUS_INVALID_VALUE;
  std::lock_guard<std::recursive_mutex> lock(gMutex);
  return enqueue(stream, [g] { gemm(g); }) == cudaSuccess ? CUBLAS_STATUS_SUCCESS
                                                          : CUBLAS_STATUS_EXECUTION_FAILED;
}

} // namespace

cublasStatus_t cublasCreate_v2(cublasHandle_t *h) {
  *h = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) {
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
  h->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t, void *, size_t) {
  return CUBLAS_STATUS_SUCCESS;
}
const char *cublasGetStatusString(cublasStatus_t s) {
  switch (s) {
  case CUBLAS_STATUS_SUCCESS:
    return "CUBLAS_STATUS_SUCCESS";
  case CUBLAS_STATUS_NOT_SUPPORTED:
    return "CUBLAS_STATUS_NOT_SUPPORTED";
  case CUBLAS_STATUS_INVALID_VALUE:
    return "CUBLAS_STATUS_INVALID_VALUE";
  default:
    return "CUBLAS_STATUS_EXECUTION_FAILED";
  }
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType_t at,
                            int lda, const void *B, cudaDataType_t bt, int ldb, const void *beta,
                            void *C, cudaDataType_t ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t) {
  return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta,
                                    C, ct, ldc, 0, 1, compute, CUBLAS_GEMM_DEFAULT);
}

cublasStatus_t cublasGemmStridedBatchedEx(
    cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
    const void *alpha, const void *A, cudaDataType_t at, int lda, long long strideA, const void *B,
    cudaDataType_t bt, int ldb, long long strideB, const void *beta, void *C, cudaDataType_t ct,
    int ldc, long long strideC, int batch, cublasComputeType_t compute, cublasGemmAlgo_t) {
  if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_TF32)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  GemmArgs g{ta,
             tb,
             m,
             n,
             k,
             *static_cast<const float *>(alpha),
             *static_cast<const float *>(beta),
             A,
             at,
             lda,
             strideA,
             B,
             bt,
             ldb,
             strideB,
             C,
             ct,
             ldc,
             strideC,
             batch,
             compute == CUBLAS_COMPUTE_32F_FAST_TF32};
  return enqueueGemm(h->stream, g);
}

// --- cuBLASLt: matmul descriptors, layouts, preferences (kept beside the opaque
// structs the API hands out) ---------------------------------------------------------------

namespace {

struct LtDesc {
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void *bias = nullptr;
  int32_t biasType = -1;
};
struct LtLayout {
  cudaDataType_t type;
  uint64_t rows, cols;
  int64_t ld;
};
std::map<const void *, LtDesc> gDescs;
std::map<const void *, LtLayout> gLayouts;

template <class T> bool copyAttr(T &to, const void *v, size_t bytes) {
  if (bytes != sizeof(T))
    return false;
  std::memcpy(&to, v, sizeof(T));
  return true;
}

} // namespace

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
  *h = new cublasLtContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
  if (scale != CUDA_R_32F)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  std::lock_guard<std::recursive_mutex> lock(gMutex);
  *d = new cublasLtMatmulDescOpaque_t{};
  gDescs[*d].compute = compute;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  std::lock_guard<std::recursive_mutex> lock(gMutex);
  gDescs.erase(d);
  delete d;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d,
                                              cublasLtMatmulDescAttributes_t attr, const void *v,
                                              size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(gMutex);
  LtDesc &s = gDescs.at(d);
  bool ok = false;
  switch (attr) {
  case CUBLASLT_MATMUL_DESC_TRANSA: {
    int32_t t;
    ok = copyAttr(t, v, bytes);
    s.ta = cublasOperation_t(t);
    break;
  }
  case CUBLASLT_MATMUL_DESC_TRANSB: {
    int32_t t;
    ok = copyAttr(t, v, bytes);
    s.tb = cublasOperation_t(t);
    break;
  }
  case CUBLASLT_MATMUL_DESC_EPILOGUE: {
    uint32_t e;
    ok = copyAttr(e, v, bytes);
    s.epilogue = cublasLtEpilogue_t(e);
    ok = ok && (s.epilogue == CUBLASLT_EPILOGUE_DEFAULT || s.epilogue == CUBLASLT_EPILOGUE_BIAS ||
                s.epilogue == CUBLASLT_EPILOGUE_RELU_BIAS || s.epilogue == CUBLASLT_EPILOGUE_RELU);
    break;
  }
  case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
    ok = copyAttr(s.bias, v, bytes);
    break;
  case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
    ok = copyAttr(s.biasType, v, bytes);
    break;
  default:
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
  std::lock_guard<std::recursive_mutex> lock(gMutex);
  *l = new cublasLtMatrixLayoutOpaque_t{};
  gLayouts[*l] = {type, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  std::lock_guard<std::recursive_mutex> lock(gMutex);
  gLayouts.erase(l);
  delete l;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
  *p = new cublasLtMatmulPreferenceOpaque_t{};
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete p;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t,
                                                    cublasLtMatmulPreferenceAttributes_t,
                                                    const void *, size_t) {
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t d,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dd,
                                              cublasLtMatmulPreference_t, int requested,
                                              cublasLtMatmulHeuristicResult_t *results,
                                              int *found) {
  std::lock_guard<std::recursive_mutex> lock(gMutex);
  *found = 0;
  if (requested < 1 || !gDescs.count(d) || !gLayouts.count(a) || !gLayouts.count(b) ||
      !gLayouts.count(c) || !gLayouts.count(dd))
    return CUBLAS_STATUS_INVALID_VALUE;
  const LtDesc &s = gDescs.at(d);
  const LtLayout &la = gLayouts.at(a), &lb = gLayouts.at(b), &ld = gLayouts.at(dd);
  // The shapes must agree, as cuBLASLt checks them.
  const uint64_t m = s.ta == CUBLAS_OP_N ? la.rows : la.cols,
                 k = s.ta == CUBLAS_OP_N ? la.cols : la.rows,
                 kb = s.tb == CUBLAS_OP_N ? lb.rows : lb.cols,
                 n = s.tb == CUBLAS_OP_N ? lb.cols : lb.rows;
  if (k != kb || ld.rows != m || ld.cols != n)
    return CUBLAS_STATUS_INVALID_VALUE;
  if ((s.epilogue == CUBLASLT_EPILOGUE_BIAS || s.epilogue == CUBLASLT_EPILOGUE_RELU_BIAS) &&
      (!s.bias || (s.biasType >= 0 && !supported(cudaDataType_t(s.biasType)))))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  results[0] = {};
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].wavesCount = 1.0f;
  *found = 1;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void *alpha,
                              const void *A, cublasLtMatrixLayout_t a, const void *B,
                              cublasLtMatrixLayout_t b, const void *beta, const void *C,
                              cublasLtMatrixLayout_t c, void *D, cublasLtMatrixLayout_t dd,
                              const cublasLtMatmulAlgo_t *, void *, size_t, cudaStream_t stream) {
  LtDesc s;
  LtLayout la, lb, lc, ld;
  {
    std::lock_guard<std::recursive_mutex> lock(gMutex);
    if (!gDescs.count(d) || !gLayouts.count(a) || !gLayouts.count(b) || !gLayouts.count(c) ||
        !gLayouts.count(dd))
      return CUBLAS_STATUS_INVALID_VALUE;
    s = gDescs.at(d);
    la = gLayouts.at(a);
    lb = gLayouts.at(b);
    lc = gLayouts.at(c);
    ld = gLayouts.at(dd);
  }
  const float beta_ = *static_cast<const float *>(beta);
  if (C != D && beta_ != 0.0f)
    return CUBLAS_STATUS_NOT_SUPPORTED; // the emulation accumulates into D only
  if (lc.type != ld.type)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  GemmArgs g{s.ta,
             s.tb,
             int(ld.rows),
             int(ld.cols),
             int(s.ta == CUBLAS_OP_N ? la.cols : la.rows),
             *static_cast<const float *>(alpha),
             beta_,
             A,
             la.type,
             la.ld,
             0,
             B,
             lb.type,
             lb.ld,
             0,
             D,
             ld.type,
             ld.ld,
             0,
             1,
             s.compute == CUBLAS_COMPUTE_32F_FAST_TF32};
  if (s.epilogue == CUBLASLT_EPILOGUE_BIAS || s.epilogue == CUBLASLT_EPILOGUE_RELU_BIAS) {
    g.bias = s.bias;
    g.biasType = s.biasType >= 0 ? cudaDataType_t(s.biasType) : ld.type;
  }
  g.relu = s.epilogue == CUBLASLT_EPILOGUE_RELU || s.epilogue == CUBLASLT_EPILOGUE_RELU_BIAS;
  return enqueueGemm(stream, g);
}
