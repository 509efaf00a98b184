//===- CudaExecutor.cpp - the CUDA backend (plugin libmantissa_cuda.so) ----===//
//
// Runs a verified plan on one GPU: every tensor in device memory in its own dtype,
// elementwise steps as generated kernels, GEMMs and convolutions (im2col/col2im)
// through cuBLAS with fp32 accumulation, the other kernels from FixedKernels.cpp.
// Kernels come compiled in the plan (KernelLoader.h; NVRTC at creation only for a plan
// without them, see CudaKernelSource.h), loaded with the runtime API's cudaLibraryLoadData: the
// plugin links the CUDA runtime statically and never the driver library, which the
// runtime finds itself (so a machine without a driver gets a clear error, not a
// loader failure).
//
// A function's steps are launched in order on one stream with no host
// synchronisation; read() synchronises. From the second call of a function on, its
// steps are captured once into a CUDA graph and replayed (MANTISSA_CUDA_GRAPH=0
// turns this off; the first call runs step by step so that every lazy
// initialisation, in cuBLAS or module loading, happens outside the capture).
//
// Environment: MANTISSA_CUDA_GRAPH=0 (no graphs), MANTISSA_CUDA_SYNC=1 (synchronise
// after each step, to attribute an asynchronous fault to its step), MANTISSA_CUDA_DUMP=dir
// (write the generated CUDA sources and the step-to-kernel map there),
// MANTISSA_CUDA_DEVICE=n (which GPU), MANTISSA_CUDA_CONV=nhwc (the default: fp16/bf16
// convolutions through the NHWC cp.async kernel where it applies, ConvGemmConfig::nhwc,
// else the NCHW implicit GEMM) or =gemm (the NCHW implicit GEMM of ConvKernels.h
// everywhere: no NHWC scratch) or =nhwc-w4 (the NHWC kernels' 4-warp ldmatrix form,
// ConvGemmConfig::warps) or =im2col (im2col + cuBLAS) or =auto (each convolution
// step timed every way it may run before the first step, the fastest kept:
// tuneConvolutions),
// MANTISSA_CUDA_CONV_WORKSPACE_MB (im2col budget), MANTISSA_CUDA_NHWC_MB (the most a
// convolution's NHWC copies of its activations take: it runs in chunks of samples),
// MANTISSA_CUDA_VECTOR=0 (batch norm and reduce without their 16-byte kernels, FixedLaunch.h),
// MANTISSA_CUDA_SCRATCH=arena (the default: a step's scratch in the temp arena's bytes that
// no temp live at that step holds, LoadedPlan::freeArenaOffset, where they have room; the
// others share one buffer) or =buffer (one buffer for all, as before),
// MANTISSA_CUDA_POISON=1 (a check: before each step, those free bytes are set to 0xff, NaN
// in every float type; no multi-tensor launches),
// MANTISSA_CUDA_PROFILE=1 (time every step with events, no graphs; a table on stderr
// when the executor is destroyed), MANTISSA_VERBOSE=1 (say once how kernels were loaded),
// MANTISSA_TIMELINE=cupti|events|auto (the energy timeline: CUPTI records inside the
// graph replays, or CUDA events in eager runs; auto: CUPTI where it starts, see
// enableTimeline), MANTISSA_CUPTI=path (the libcupti to load).
//===----------------------------------------------------------------------===//
#include "plan/DType.h"
#include "runtime/backend/Executor.h"
#include "runtime/cuda/ConvKernels.h"
#include "runtime/cuda/CudaKernelSource.h"
#include "runtime/cuda/CudaStepTimer.h"
#include "runtime/cuda/CuptiTimeline.h"
#include "runtime/cuda/ElementwiseCodegen.h"
#include "runtime/cuda/FixedLaunch.h"
#include "runtime/cuda/KernelLoader.h"
#include "runtime/cuda/ModuleLoad.h"
#include "runtime/cuda/Nvrtc.h"
#include "runtime/cuda/ScratchMap.h"
#include "runtime/kernels/IterationSpace.h"

#include "common/Error.h"
#include "common/Float16.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <memory>
#include <sstream>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace mantissa {
namespace cuda {
namespace {

using plan::DType;
using plan::Kernel;

//===--- errors --------------------------------------------------------------===//

void checkCuda(cudaError_t e, const std::string &call) {
  if (e != cudaSuccess) {
    cudaGetLastError(); // clear a non-sticky error so that later calls are not blamed
    throw Error(call + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
  }
}

void checkBlas(cublasStatus_t s, const std::string &call) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw Error(call + ": " + cublasGetStatusString(s) + " (status " + std::to_string(int(s)) + ")");
}

const char *envOr(const char *name, const char *fallback) {
  const char *v = std::getenv(name);
  return v && *v ? v : fallback;
}


int code(DType t) { return int(t); }

std::string bytesText(size_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f GiB", double(bytes) / double(1ull << 30));
  return buf;
}

/// A loaded kernel with the host-side types of its parameters.
template <class... P> using KernelRef = TypedKernel<cudaKernel_t, P...>;

/// A GEMM's conversions, decided once from the operand dtypes (cuBLAS takes A and B
/// of one type; C may be that type or fp32).
struct GemmPlan {
  DType ab = DType::F32;
  bool convA = false, convB = false, viaF32C = false;
  size_t offA = 0, offB = 0, offC = 0;
};

/// One (strided-batched) row-major GEMM: C = alpha op(A) op(B) + beta C.
struct GemmCall {
  bool ta = false, tb = false;
  int64_t m = 0, n = 0, k = 0, batch = 1;
  int64_t sA = 0, sB = 0, sC = 0; // 0 = the same matrix for every batch entry
  float alpha = 1, beta = 0;
  const void *a = nullptr, *b = nullptr;
  void *c = nullptr;
  DType at = DType::F32, bt = DType::F32, ct = DType::F32;
};

/// A GEMM with its epilogue (Gemm.bias, Gemm.relu) through cuBLASLt: the descriptors
/// and the algorithm, chosen once when the step is prepared.
struct LtMatmul {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  LtMatmul() = default;
  LtMatmul(const LtMatmul &) = delete;
  LtMatmul &operator=(const LtMatmul &) = delete;
  ~LtMatmul() {
    for (cublasLtMatrixLayout_t l : {a, b, d})
      if (l)
        cublasLtMatrixLayoutDestroy(l);
    if (desc)
      cublasLtMatmulDescDestroy(desc);
  }
};

bool cSupported(DType ab, DType c) {
  return (ab == DType::F32 && c == DType::F32) ||
         (ab == DType::F16 && (c == DType::F16 || c == DType::F32)) ||
         (ab == DType::BF16 && (c == DType::BF16 || c == DType::F32));
}

cudaDataType_t blasType(DType t) {
  switch (t) {
  case DType::F16:
    return CUDA_R_16F;
  case DType::BF16:
    return CUDA_R_16BF;
  default:
    return CUDA_R_32F;
  }
}

int64_t elementCount(const plan::Tensor *t) {
  int64_t n = 1;
  if (t->shape())
    for (int64_t d : *t->shape())
      n *= d;
  return n;
}

//===--- the executor ----------------------------------------------------------===//

class CudaExecutor final : public Executor {
public:
  explicit CudaExecutor(const LoadedPlan &plan) : plan_(plan) {}
  ~CudaExecutor() override;

  /// Everything that can fail; the destructor frees whatever was made.
  void init();

  const LoadedPlan &plan() const override { return plan_; }
  std::string backendName() const override { return "cuda"; }
  std::string deviceDescription() const override { return description_; }
  int64_t deviceBytes() const override { return allocatedBytes_; }
  void writeIndices(int id, const int32_t *values, size_t n) override;
  void read(int id, float *values, size_t n) override;
  void run(const std::string &function) override;

  // The energy timeline: CUPTI records inside the graph replays (CuptiTimeline.h),
  // else eager runs with events between steps (CudaStepTimer.h); see enableTimeline.
  bool enableTimeline(bool on) override;
  void setTimelineTag(int64_t tag) override {
    if (timer_)
      timer_->setTag(tag);
    if (cupti_)
      cupti_->setTag(tag);
  }
  void drainTimeline(std::vector<StepSpan> &out) override;
  std::string timelineMethod() const override;
  std::string timelineName() const override { return cupti_ ? "cupti" : "events"; }
  std::vector<std::string> timelineDeviceKernels(uint32_t function, uint32_t step) const override {
    if (!cupti_ || function >= cupti_->deviceKernels().size() ||
        step >= cupti_->deviceKernels()[function].size())
      return {};
    return cupti_->deviceKernels()[function][step];
  }
  bool replayStep(const std::string &function, uint32_t step, int64_t times) override;
  void synchronize() override { synchronize("synchronize"); }

private:
  struct DeviceTensor {
    void *ptr = nullptr;
    DType dtype = DType::F32;
    int64_t count = 0;
    size_t bytes = 0;
    std::string name;
    bool inArena = false; // ptr points into arena_ (not freed on its own)
  };
  struct Staging {
    void *host = nullptr;
    size_t bytes = 0;
    cudaEvent_t done = nullptr;
    bool pending = false;
  };
  using Launch = std::function<void()>;
  /// One way to run a convolution step (MANTISSA_CUDA_CONV=auto times them all).
  struct ConvVariant {
    std::string name; // im2col, gemm, nhwc, nhwc-w4
    Launch launch;
    int scratchRange = -1; // its range in scratchMap_ (-1: none)
    double ms = 0; // measured by tuneConvolutions
  };
  struct PreparedStep {
    std::string where;
    Launch launch;
    Launch own; // this step alone (launch may also run other steps': batchElementwise)
    std::vector<ConvVariant> variants; // MANTISSA_CUDA_CONV=auto: the ways it may run
    int convOut = -1;                  // with variants: the convolution's output tensor
  };
  struct PreparedFunction {
    std::vector<PreparedStep> steps;
    cudaGraphExec_t graph = nullptr;
    int64_t runs = 0;
    bool graphFailed = false;
    std::vector<cudaEvent_t> events; // MANTISSA_CUDA_PROFILE: one before each step, one after
    std::vector<double> stepMs;
    uint32_t index = 0; // in the plan's functions (StepSpan::function)
    /// MANTISSA_CUDA_POISON=1: per step, the arena's byte spans that no temp live at
    /// that step holds (set to NaN before it).
    std::vector<std::vector<std::pair<uint64_t, uint64_t>>> freeSpans;
  };
  struct Site {
    std::string where;
    int64_t classes = 0;
  };
  using FixedKernels = FixedKernelTable<cudaKernel_t>;

  // Setup.
  void initDevice();
  void allocateTensors();
  void compileKernels();
  void loadKernelsFromPlan(const std::map<std::string, std::string> &elementwise,
                           const std::map<std::string, ConvGemmConfig> &convs);
  void prepareFunctions();
  void batchElementwise(const plan::Function &fn, PreparedFunction &pf);
  /// Whether multi-tensor launches run (not while steps are timed one by one).
  bool batchingNow() const { return multiTensor_ && !timer_ && !profile_ && !poison_; }
  Launch prepareStep(const plan::Step &step, int site, ScratchLayout &sl);
  Launch prepareElementwise(const plan::Elementwise &k);
  /// A Gemm step's operands and shape as one cuBLAS call.
  GemmCall gemmCallOf(const plan::Gemm &k) const;
  Launch prepareGemm(const plan::Gemm &k, ScratchLayout &sl);
  Launch prepareGemmEpilogue(const plan::Gemm &k, ScratchLayout &sl);
  /// The cuBLASLt matmul of a Gemm with an epilogue, or null where cuBLASLt has no
  /// algorithm for it (then the fallback runs).
  std::unique_ptr<LtMatmul> planLtMatmul(const plan::Gemm &k);
  Launch prepareConv(const plan::Conv2d &k, ScratchLayout &sl);
  Launch prepareConvIm2col(const plan::Conv2d &k, ScratchLayout &sl);
  /// Step `step` of function `function`: where the chosen way's scratch may go.
  std::vector<ConvVariant> convVariants(const plan::Conv2d &k, uint32_t function, int64_t step);
  void tuneConvolutions();
  void describeMemory() const;
  /// A copy of `items` on the device, owned (and counted in deviceBytes) by the
  /// executor; null for none.
  template <class Item> Item *uploadTable(const std::vector<Item> &items, const char *what) {
    if (items.empty())
      return nullptr;
    Item *table = nullptr;
    const size_t bytes = items.size() * sizeof(Item);
    checkCuda(cudaMalloc(reinterpret_cast<void **>(&table), bytes), std::string("cudaMalloc (") + what + ")");
    ownedDevice_.push_back(table);
    allocatedBytes_ += int64_t(bytes);
    checkCuda(cudaMemcpy(table, items.data(), bytes, cudaMemcpyHostToDevice),
              std::string("cudaMemcpy (") + what + ")");
    return table;
  }
  Launch prepareConvGemm(const plan::Conv2d &k, const ConvGemmConfig &cfg, ScratchLayout &sl);
  Launch prepareBatchNorm(const plan::BatchNorm &k, ScratchLayout &sl);
  Launch prepareBatchNormBackward(const plan::BatchNormBackward &k, ScratchLayout &sl);
  Launch prepareReduce(const plan::Reduce &k, ScratchLayout &sl);
  Launch prepareTranspose(const plan::Transpose &k);
  Launch prepareAllFinite(const plan::AllFinite &k, ScratchLayout &sl);

  // Running.
  void runEager(PreparedFunction &f, const std::string &function);
  void capture(PreparedFunction &f, const std::string &function);
  /// Whether this run of `f` replays its graph (with the timeline on, only under CUPTI).
  bool replays(const PreparedFunction &f) const {
    return useGraphs_ && !f.graphFailed && f.runs >= 1 && !f.steps.empty() && (!timer_ || cupti_);
  }
  /// CUPTI could not be used: say so once, and time with events from now on.
  void cuptiFallback(const std::string &reason);
  void synchronize(const std::string &what);
  void checkStatus();
  Staging &staging(std::unordered_map<int, Staging> &map, int id, size_t bytes);
  /// A write's staging buffer, once its previous upload is done; then the upload.
  Staging &beginWrite(int id, const DeviceTensor &t);
  void finishWrite(const DeviceTensor &t, Staging &s);
  const DeviceTensor &checkedTensor(int id, size_t n, bool wantIndices) const;
  void store(int id, const float *values, size_t n) override;

  // Launch helpers.
  template <class... P, class... A>
  void launch(const KernelRef<P...> &k, dim3 grid, dim3 block, A &&...args);
  template <class Tuple, size_t... I>
  void launchTuple(cudaKernel_t fn, const char *name, dim3 grid, dim3 block, Tuple &values,
                   std::index_sequence<I...>);
  void verifyParams(cudaKernel_t fn, const char *name, const size_t *sizes, size_t count);
  unsigned blocksFor(int64_t n) const;
  /// FixedLaunch.h's view of the tensors: device pointer and dtype code by id.
  auto tensorRefs() const {
    return [this](int id) { return TensorRef{ptr(id), dcode(id)}; };
  }
  /// FixedLaunch.h's launcher: launch(kernel, Grid, threads, arguments...).
  auto fixedLauncher() {
    return [this](const auto &kernel, Grid g, unsigned threads, auto &&...args) {
      launch(kernel, dim3(g.x, g.y, g.z), dim3(threads), std::forward<decltype(args)>(args)...);
    };
  }
  void convert(const void *in, DType it, void *out, DType ot, int64_t n);
  GemmPlan planGemm(DType at, DType bt, DType ct, int64_t maxA, int64_t maxB, int64_t maxC,
                    ScratchLayout &sl) const;
  void runGemm(const GemmPlan &plan, const GemmCall &call);
  /// Where virtual scratch offset `offset` (ScratchLayout::take) lies now.
  char *scratch(size_t offset) const {
    return scratchMap_.resolve(offset, static_cast<char *>(arena_), static_cast<char *>(scratch_));
  }
  /// Records layout `sl` (of step `step` of function `function`; -1: keep it out of the
  /// arena) and places it: in the arena's free bytes at that step where they have room
  /// (and MANTISSA_CUDA_SCRATCH is not "buffer"), else in the scratch buffer. Returns its
  /// range's index, -1 for an empty layout.
  int closeScratch(const ScratchLayout &sl, int function, int64_t step);
  /// Moves range `r` into the arena's free bytes at its step, if they have room.
  bool placeInArena(size_t r);
  /// MANTISSA_VERBOSE=1: where the steps' scratch went.
  void reportScratch() const;
  void *ptr(int id) const { return id < 0 ? nullptr : tensors_[size_t(id)].ptr; }
  DType dtype(int id) const { return id < 0 ? DType::F32 : tensors_[size_t(id)].dtype; }
  int dcode(int id) const { return code(dtype(id)); }

  const LoadedPlan &plan_;
  int device_ = 0;
  cudaDeviceProp props_{};
  int arch_ = 0;
  std::string description_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  std::vector<std::unique_ptr<LtMatmul>> ltMatmuls_; // the epilogue GEMMs' descriptors
  bool epilogues_ = true;     // Gemm.bias/relu through cuBLASLt (else GEMM + mt_bias_act)
  int epilogueFallbacks_ = 0; // epilogue GEMMs that cuBLASLt had no algorithm for
  std::string epilogueFallbackWhy_; // the first one's reason
  void *blasWorkspace_ = nullptr;
  static constexpr size_t blasWorkspaceBytes_ = size_t(32) << 20;
  bool tf32_ = false;
  bool useGraphs_ = true;
  bool syncEachStep_ = false;
  bool poison_ = false; // MANTISSA_CUDA_POISON=1: free arena bytes NaN before each step
  bool profile_ = false;
  size_t convBudget_ = size_t(256) << 20;
  size_t nhwcBudget_ = size_t(128) << 20; // a convolution's NHWC copies (MANTISSA_CUDA_NHWC_MB)
  int64_t allocatedBytes_ = 0; // every cudaMalloc of ours (deviceBytes())
  bool convGemm_ = true; // fp16/bf16 convolutions as implicit GEMMs (else im2col + cuBLAS)
  bool convNhwc_ = true; // ... the NHWC kernel where it applies (MANTISSA_CUDA_CONV=nhwc)
  int convNhwcWarps_ = 8;     // ... in its 8- or 4-warp form (MANTISSA_CUDA_CONV=nhwc-w4)
  bool convAuto_ = false;     // each convolution's fastest, timed at start (MANTISSA_CUDA_CONV=auto)
  bool vectorKernels_ = true; // batch norm and reduce with 16-byte loads where they apply
  bool multiTensor_ = true;   // runs of identical elementwise steps as one launch
  std::map<std::string, cudaKernel_t> convKernels_;

  std::vector<DeviceTensor> tensors_;
  std::vector<cudaLibrary_t> libraries_;
  FixedKernels fixed_;
  std::unordered_map<std::string, cudaKernel_t> elementwise_;
  std::unordered_map<const plan::Step *, ElementwiseKernel> stepGeometry_;
  std::unordered_set<const void *> verified_;
  std::vector<void *> ownedDevice_; // AllFinite tables
  void *scratch_ = nullptr;
  void *arena_ = nullptr; // the plan's temp arena (Plan.arena_bytes; temps at their offsets)
  size_t scratchBytes_ = 0;
  ScratchMap scratchMap_;      // where each step's scratch lies (in the arena or in scratch_)
  bool scratchInArena_ = true; // MANTISSA_CUDA_SCRATCH=arena (the default) or =buffer
  int *status_ = nullptr; // device: [code, site, a, b], written by kernels on errors
  std::vector<Site> sites_;
  std::map<std::string, PreparedFunction> functions_;
  std::unordered_map<int, Staging> writeStaging_, readStaging_;
  std::string dumpDir_;
  std::unique_ptr<CudaStepTimer> timer_; // the energy timeline, when on (eager runs)
  std::unique_ptr<CuptiTimeline> cupti_; // and the graph replays' records, when CUPTI runs
  std::string cuptiMissing_;             // why the timeline is not CUPTI's (the report says)
  bool cuptiNoticeGiven_ = false;
  size_t cuptiMissingSteps_ = 0;         // plan steps of graph runs with no record
  bool cuptiOverlapSaid_ = false;        // the notice of overlapping spans was printed
};

//===--- setup ------------------------------------------------------------------===//

CudaExecutor::~CudaExecutor() {
  if (stream_)
    cudaStreamSynchronize(stream_);
  for (auto &f : functions_) {
    PreparedFunction &pf = f.second;
    const int64_t timed = pf.runs - 1; // the first run is not counted
    if (!pf.stepMs.empty() && timed > 0) {
      double total = 0;
      for (double ms : pf.stepMs)
        total += ms;
      std::vector<size_t> order(pf.stepMs.size());
      for (size_t i = 0; i < order.size(); ++i)
        order[i] = i;
      std::sort(order.begin(), order.end(),
                [&](size_t a, size_t b) { return pf.stepMs[a] > pf.stepMs[b]; });
      std::fprintf(stderr, "mantissa cuda profile: %s, %lld runs after the first, %.3f ms/run in steps\n",
                   f.first.c_str(), (long long)timed, total / double(timed));
      for (size_t i : order)
        std::fprintf(stderr, "  %9.3f ms/run %5.1f%%  %s\n", pf.stepMs[i] / double(timed),
                     total > 0 ? 100.0 * pf.stepMs[i] / total : 0.0, pf.steps[i].where.c_str());
    }
    for (cudaEvent_t e : pf.events)
      cudaEventDestroy(e);
    if (pf.graph)
      cudaGraphExecDestroy(pf.graph);
  }
  for (auto *map : {&writeStaging_, &readStaging_})
    for (auto &s : *map) {
      if (s.second.host)
        cudaFreeHost(s.second.host);
      if (s.second.done)
        cudaEventDestroy(s.second.done);
    }
  for (DeviceTensor &t : tensors_)
    if (t.ptr && !t.inArena)
      cudaFree(t.ptr);
  if (arena_)
    cudaFree(arena_);
  for (void *p : ownedDevice_)
    cudaFree(p);
  if (scratch_)
    cudaFree(scratch_);
  if (status_)
    cudaFree(status_);
  ltMatmuls_.clear();
  if (lt_)
    cublasLtDestroy(lt_);
  if (blas_)
    cublasDestroy(blas_);
  if (blasWorkspace_)
    cudaFree(blasWorkspace_);
  for (cudaLibrary_t lib : libraries_)
    cudaLibraryUnload(lib);
  if (stream_)
    cudaStreamDestroy(stream_);
}

void CudaExecutor::init() {
  useGraphs_ = std::string(envOr("MANTISSA_CUDA_GRAPH", "1")) != "0";
  syncEachStep_ = std::string(envOr("MANTISSA_CUDA_SYNC", "0")) != "0";
  poison_ = std::string(envOr("MANTISSA_CUDA_POISON", "0")) != "0";
  profile_ = std::string(envOr("MANTISSA_CUDA_PROFILE", "0")) != "0";
  if (syncEachStep_ || profile_)
    useGraphs_ = false;
  dumpDir_ = envOr("MANTISSA_CUDA_DUMP", "");
  // nhwc by default: on an H100, unet w32 L4 b16 384^2 fp16 ran 52.8 ms/step against
  // 73.6 with gemm, for 0.41 GiB more device memory (the operands' NHWC copies).
  const std::string conv = envOr("MANTISSA_CUDA_CONV", "nhwc");
  if (conv != "gemm" && conv != "im2col" && conv != "nhwc" && conv != "nhwc-w4" && conv != "auto")
    throw Error("MANTISSA_CUDA_CONV=" + conv +
                ": expected nhwc (the default), nhwc-w4, gemm, im2col or auto");
  convGemm_ = conv != "im2col";
  convNhwc_ = conv == "nhwc" || conv == "nhwc-w4";
  convNhwcWarps_ = conv == "nhwc-w4" ? 4 : 8;
  convAuto_ = conv == "auto";
  vectorKernels_ = std::string(envOr("MANTISSA_CUDA_VECTOR", "1")) != "0";
  epilogues_ = std::string(envOr("MANTISSA_CUDA_EPILOGUE", "1")) != "0";
  multiTensor_ = std::string(envOr("MANTISSA_CUDA_MULTI_TENSOR", "1")) != "0";
  const std::string scratchWhere = envOr("MANTISSA_CUDA_SCRATCH", "arena");
  if (scratchWhere != "arena" && scratchWhere != "buffer")
    throw Error("MANTISSA_CUDA_SCRATCH=" + scratchWhere +
                ": expected arena (the default: a step's scratch in the temp arena's bytes free "
                "at that step, where they have room) or buffer (one scratch buffer for all)");
  scratchInArena_ = scratchWhere == "arena";
  if (const char *mb = std::getenv("MANTISSA_CUDA_CONV_WORKSPACE_MB"))
    convBudget_ = size_t(std::max(1.0, std::atof(mb) * double(1 << 20)));
  if (const char *mb = std::getenv("MANTISSA_CUDA_NHWC_MB"))
    nhwcBudget_ = size_t(std::max(1.0, std::atof(mb) * double(1 << 20)));
  tf32_ = plan_->precision() && plan_->precision()->tf32();
  initDevice();
  allocateTensors();
  compileKernels();
  prepareFunctions();
  if (convAuto_)
    tuneConvolutions();
  if (std::string(envOr("MANTISSA_VERBOSE", "0")) != "0")
    describeMemory();
}

/// MANTISSA_VERBOSE=1: what deviceBytes() is made of, to compare with the plan's peak
/// (arena + persistent + inputs) and with PyTorch's allocator peak.
void CudaExecutor::describeMemory() const {
  int64_t outside = 0;
  for (const DeviceTensor &t : tensors_)
    if (t.ptr && !t.inArena)
      outside += int64_t(t.bytes);
  const int64_t arena = arena_ ? int64_t(plan_->arena_bytes()) : 0;
  const int64_t workspace = blasWorkspace_ ? int64_t(blasWorkspaceBytes_) : 0;
  const int64_t other = allocatedBytes_ - outside - arena - workspace - int64_t(scratchBytes_);
  std::fprintf(stderr,
               "mantissa cuda: device memory %lld bytes = temp arena %lld + tensors outside it "
               "%lld + scratch %lld + cuBLAS workspace %lld + tables %lld (plan peak %llu)\n",
               (long long)allocatedBytes_, (long long)arena, (long long)outside,
               (long long)scratchBytes_, (long long)workspace, (long long)other,
               (unsigned long long)plan_->peak_bytes());
}

void CudaExecutor::initDevice() {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess)
    throw Error(std::string("no CUDA device: ") + cudaGetErrorString(e));
  if (count == 0)
    throw Error("no CUDA device: the CUDA runtime reports 0 devices");
  device_ = std::atoi(envOr("MANTISSA_CUDA_DEVICE", "0"));
  if (device_ < 0 || device_ >= count)
    throw Error("MANTISSA_CUDA_DEVICE=" + std::to_string(device_) + ", but there are " +
                std::to_string(count) + " CUDA devices");
  checkCuda(cudaSetDevice(device_), "cudaSetDevice");
  checkCuda(cudaGetDeviceProperties(&props_, device_), "cudaGetDeviceProperties");
  arch_ = props_.major * 10 + props_.minor;
  if (arch_ < 80)
    throw Error(std::string("CUDA device ") + props_.name + " has compute capability " +
                std::to_string(props_.major) + "." + std::to_string(props_.minor) +
                "; the CUDA backend needs 8.0 or newer (bf16 conversions)");
  checkCuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  checkBlas(cublasCreate(&blas_), "cublasCreate");
  checkBlas(cublasSetStream(blas_, stream_), "cublasSetStream");
  // An explicit workspace: cuBLAS then allocates nothing itself, which graph capture needs.
  checkCuda(cudaMalloc(&blasWorkspace_, blasWorkspaceBytes_), "cudaMalloc (cuBLAS workspace)");
  allocatedBytes_ += int64_t(blasWorkspaceBytes_);
  checkBlas(cublasSetWorkspace(blas_, blasWorkspace_, blasWorkspaceBytes_), "cublasSetWorkspace");
  // cuBLASLt for the GEMMs with an epilogue; it shares the workspace: both run on stream_.
  checkBlas(cublasLtCreate(&lt_), "cublasLtCreate");
  // fp32 GEMMs use no TF32 unless the plan asks (then per call, with COMPUTE_32F_FAST_TF32);
  // fp16/bf16 GEMMs reduce in fp32 (no reduced-precision split-K reductions).
  checkBlas(cublasSetMathMode(blas_, cublasMath_t(CUBLAS_DEFAULT_MATH |
                                                  CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)),
            "cublasSetMathMode");
  checkCuda(cudaMalloc(reinterpret_cast<void **>(&status_), 4 * sizeof(int)), "cudaMalloc (status)");
  checkCuda(cudaMemset(status_, 0, 4 * sizeof(int)), "cudaMemset (status)");

  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "%s, %d SMs, %s, compute capability %d.%d (CUDA runtime %d.%d, driver %d.%d, %s)",
                props_.name, props_.multiProcessorCount, bytesText(props_.totalGlobalMem).c_str(),
                props_.major, props_.minor, runtime / 1000, runtime % 1000 / 10, driver / 1000,
                driver % 1000 / 10, nvrtcVersionString().c_str());
  description_ = buf;
}

void CudaExecutor::allocateTensors() {
  const auto &tensors = *plan_->tensors();
  tensors_.resize(tensors.size());
  // The memory plan (verified by the loader: temps live at a common step never
  // overlap): one arena for the temps that have an offset; MANTISSA_CUDA_NO_ARENA=1
  // gives every tensor its own allocation instead.
  const bool useArena =
      std::string(envOr("MANTISSA_CUDA_NO_ARENA", "0")) == "0" && plan_->arena_bytes() > 0;
  if (useArena) {
    const size_t arenaBytes = size_t(plan_->arena_bytes());
    cudaError_t e = cudaMalloc(&arena_, arenaBytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      arena_ = nullptr;
      throw Error("out of GPU memory allocating the temp arena of " + bytesText(arenaBytes) + ": " +
                  cudaGetErrorString(e));
    }
    allocatedBytes_ += int64_t(arenaBytes);
    checkCuda(cudaMemset(arena_, 0, arenaBytes), "cudaMemset (arena)");
  }
  for (flatbuffers::uoffset_t id = 0; id < tensors.size(); ++id) {
    const plan::Tensor *t = tensors.Get(id);
    DeviceTensor &d = tensors_[id];
    d.dtype = t->dtype();
    d.count = elementCount(t);
    d.bytes = size_t(d.count) * dtypeBytes(d.dtype);
    d.name = t->name() ? t->name()->str() : "";
    if (d.bytes == 0)
      continue;
    if (useArena && t->role() == plan::Role::Temp && t->offset() >= 0) {
      // No initial value (the loader rejects one for an arena temp); zeroed above.
      d.ptr = static_cast<char *>(arena_) + t->offset();
      d.inArena = true;
      continue;
    }
    cudaError_t e = cudaMalloc(&d.ptr, d.bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t freeBytes = 0, totalBytes = 0;
      cudaMemGetInfo(&freeBytes, &totalBytes);
      throw Error("out of GPU memory allocating " + std::to_string(d.bytes) + " bytes for tensor '" +
                  d.name + "' (tensor " + std::to_string(id) + "; " + bytesText(freeBytes) +
                  " free of " + bytesText(totalBytes) + "): " + cudaGetErrorString(e));
    }
    allocatedBytes_ += int64_t(d.bytes);
    // Initial values exactly as the CPU executor takes them (stored, seeded uniform or
    // fill; LoadedPlan::initialValues is linked into the plugin), rounded to the dtype
    // with the same conversions.
    const bool persistent = t->role() != plan::Role::Temp && t->role() != plan::Role::Input;
    std::vector<float> init;
    if (persistent || (t->init() && int64_t(t->init()->size()) == d.count))
      init = plan_.initialValues(int(id));
    if (int64_t(init.size()) != d.count) {
      checkCuda(cudaMemset(d.ptr, 0, d.bytes), "cudaMemset");
      continue;
    }
    std::vector<uint8_t> host(d.bytes);
    for (int64_t i = 0; i < d.count; ++i) {
      float v = init[size_t(i)];
      switch (d.dtype) {
      case DType::F16: {
        uint16_t h = floatToHalfBits(v);
        std::memcpy(&host[size_t(i) * 2], &h, 2);
        break;
      }
      case DType::BF16: {
        uint16_t h = floatToBF16Bits(v);
        std::memcpy(&host[size_t(i) * 2], &h, 2);
        break;
      }
      case DType::I32: {
        int32_t x = int32_t(v);
        std::memcpy(&host[size_t(i) * 4], &x, 4);
        break;
      }
      default:
        std::memcpy(&host[size_t(i) * 4], &v, 4);
      }
    }
    checkCuda(cudaMemcpy(d.ptr, host.data(), d.bytes, cudaMemcpyHostToDevice),
              "cudaMemcpy (initial value of '" + d.name + "')");
  }
}

void CudaExecutor::compileKernels() {
  // Generate every elementwise step's kernel; identical texts share one kernel.
  std::map<std::string, std::string> bodies; // name -> source (sorted: stable units)
  std::map<std::string, std::string> multiEntries; // name -> its multi-tensor entry
  std::ostringstream manifest;
  for (const plan::Function *fn : *plan_->functions()) {
    if (!fn->steps())
      continue;
    for (flatbuffers::uoffset_t s = 0; s < fn->steps()->size(); ++s) {
      const plan::Step *step = fn->steps()->Get(s);
      if (step->kernel_type() != Kernel::Elementwise)
        continue;
      ElementwiseKernel ek = generateElementwise(plan_.plan(), *step->kernel_as_Elementwise());
      if (!ek.multiName.empty())
        multiEntries[ek.name] = ek.multiName;
      auto [it, inserted] = bodies.emplace(ek.name, ek.source);
      if (!inserted && it->second != ek.source)
        throw Error("internal error: two elementwise kernels hash to " + ek.name);
      manifest << fn->name()->str() << " step " << s << " '"
               << (step->name() ? step->name()->str() : "") << "': " << ek.name << "\n";
      stepGeometry_[step] = std::move(ek);
    }
  }
  std::vector<CompileUnit> units;
  units.push_back({"mantissa_fixed.cu", std::string(cudaPrelude()) + fixedKernelSource()});
  std::vector<std::vector<std::string>> unitKernels(1);
  // The implicit-GEMM convolutions the plan's fp16/bf16 convolutions use, in one unit.
  std::map<std::string, ConvGemmConfig> convConfigs;
  if (convGemm_)
    for (const plan::Function *fn : *plan_->functions())
      if (fn->steps())
        for (const plan::Step *step : *fn->steps())
          if (step->kernel_type() == Kernel::Conv2d)
            for (const ConvGemmConfig &c :
                 convGemmConfigsFor(plan_.plan(), *step->kernel_as_Conv2d()))
              convConfigs.emplace(c.kernelName(), c);
  if (!convConfigs.empty()) {
    std::vector<ConvGemmConfig> list;
    std::vector<std::string> names;
    for (auto &[name, c] : convConfigs) {
      list.push_back(c);
      names.push_back(name);
    }
    units.push_back({"mantissa_conv.cu", std::string(cudaPrelude()) + convGemmSource(list)});
    unitKernels.push_back(std::move(names));
  }
  const size_t convUnit = convConfigs.empty() ? 0 : 1;
  const size_t perUnit = 24;
  for (auto it = bodies.begin(); it != bodies.end();) {
    CompileUnit u{"mantissa_elementwise_" + std::to_string(units.size()) + ".cu", cudaPrelude()};
    std::vector<std::string> names;
    for (size_t i = 0; i < perUnit && it != bodies.end(); ++i, ++it) {
      u.source += "\n" + it->second;
      names.push_back(it->first);
      if (auto m = multiEntries.find(it->first); m != multiEntries.end())
        names.push_back(m->second);
    }
    units.push_back(std::move(u));
    unitKernels.push_back(std::move(names));
  }
  if (!dumpDir_.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dumpDir_, ec);
    for (const CompileUnit &u : units)
      std::ofstream(dumpDir_ + "/" + u.name) << u.source;
    std::ofstream(dumpDir_ + "/steps.txt") << manifest.str();
  }
  if (plan_->cuda()) { // compiled ahead of time (KernelLoader.h)
    std::map<std::string, std::string> entries = bodies; // and the multi-tensor entries
    for (const auto &kv : multiEntries)
      entries.emplace(kv.second, "");
    loadKernelsFromPlan(entries, convConfigs);
    return;
  }
  // A plan compiled with --arch none: NVRTC now, for this GPU.
  std::vector<CompiledModule> modules = compileCudaParallel(units, arch_);
  for (size_t i = 0; i < modules.size(); ++i) {
    cudaLibrary_t lib = nullptr;
    checkCuda(loadModule(&lib, modules[i].image.data(), units[i].source),
              "cudaLibraryLoadData(" + units[i].name + ", " + modules[i].target + ")");
    libraries_.push_back(lib);
    for (const std::string &name : unitKernels[i]) {
      cudaKernel_t k = nullptr;
      checkCuda(cudaLibraryGetKernel(&k, lib, name.c_str()), "cudaLibraryGetKernel(" + name + ")");
      if (convUnit && i == convUnit)
        convKernels_[name] = k;
      else
        elementwise_[name] = k;
    }
  }
  auto get = [&](auto &ref, const char *name) {
    checkCuda(cudaLibraryGetKernel(&ref.fn, libraries_[0], name),
              std::string("cudaLibraryGetKernel(") + name + ")");
    ref.name = name;
  };
#define MANTISSA_FIXED_KERNEL(name, ...) get(fixed_.name, #name);
#include "runtime/cuda/FixedKernels.def"
  description_ += ", kernels: " + modules[0].target + (modules[0].ptx ? " PTX" : " CUBIN");
  if (std::string(envOr("MANTISSA_VERBOSE", "0")) != "0")
    std::fprintf(stderr, "mantissa cuda: kernels compiled by %s at startup for %s (the plan has none)\n",
                 nvrtcVersionString().c_str(), modules[0].target.c_str());
}

void CudaExecutor::loadKernelsFromPlan(const std::map<std::string, std::string> &elementwise,
                                       const std::map<std::string, ConvGemmConfig> &convs) {
  LoadedKernels loaded = loadPlanKernels(plan_.plan(), arch_, plan_.name(), libraries_);
  const std::string how = describeLoadedKernels(loaded, arch_);
  description_ += ", " + how;
  if (loaded.ptxModules) // the JIT costs time at every start: say so once
    std::fprintf(stderr, "mantissa cuda: note: the plan has no CUBIN for sm_%d; the driver "
                 "JIT-compiles its PTX (%s)\n", arch_, loaded.ptxArch.c_str());
  else if (std::string(envOr("MANTISSA_VERBOSE", "0")) != "0")
    std::fprintf(stderr, "mantissa cuda: %s\n", how.c_str());
  auto find = [&](const std::string &name) {
    auto it = loaded.byEntry.find(name);
    if (it == loaded.byEntry.end())
      throw Error(plan_.name() + ": the plan has no compiled kernel " + name +
                  " (it was compiled by a different code generator); recompile it with this "
                  "version of mantissa");
    return it->second;
  };
  for (const auto &kv : elementwise)
    elementwise_[kv.first] = find(kv.first);
  for (const auto &kv : convs)
    convKernels_[kv.first] = find(kv.first);
  auto set = [&](auto &ref, const char *entry) {
    ref.fn = find(entry);
    ref.name = entry;
  };
#define MANTISSA_FIXED_KERNEL(name, ...) set(fixed_.name, #name);
#include "runtime/cuda/FixedKernels.def"
}

// Multi-tensor launches. Elementwise steps that run one kernel (the same program,
// dtypes and indexing: the optimizer's update of each parameter) in a window of
// steps that may run in any order (multiTensorGroups) become one launch of the
// kernel's multi-tensor entry, at the first step's place, one item per step; each
// step computes exactly what its own launch would. While a timeline or MANTISSA_CUDA_PROFILE times the steps
// one by one, each keeps its own launch (MANTISSA_CUDA_MULTI_TENSOR=0: always).
void CudaExecutor::batchElementwise(const plan::Function &fn, PreparedFunction &pf) {
  const auto &steps = *fn.steps();
  auto kernelOf = [&](flatbuffers::uoffset_t s) -> const ElementwiseKernel * {
    auto it = stepGeometry_.find(steps.Get(s));
    return it == stepGeometry_.end() || it->second.multiName.empty() ? nullptr : &it->second;
  };
  std::vector<const ElementwiseKernel *> kernels;
  for (flatbuffers::uoffset_t s = 0; s < steps.size(); ++s)
    kernels.push_back(kernelOf(s));
  const auto groups = multiTensorGroups(kernels, [this](int id) {
    const DeviceTensor &t = tensors_.at(size_t(id));
    const auto begin = uint64_t(reinterpret_cast<uintptr_t>(t.ptr));
    return MemoryExtent{begin, begin + t.bytes};
  });
  if (!groups.empty() && std::string(envOr("MANTISSA_VERBOSE", "0")) != "0") {
    size_t batched = 0;
    for (const auto &g : groups)
      batched += g.size();
    std::fprintf(stderr, "mantissa cuda: %s: %zu multi-tensor launches for %zu elementwise steps\n",
                 fn.name()->c_str(), groups.size(), batched);
  }
  for (const std::vector<size_t> &group : groups) {
    const size_t s = group.front();
    const ElementwiseKernel *first = kernels[s];
    std::vector<ElementwiseItem> items;
    long long maxN = 0;
    for (size_t i : group) {
      const ElementwiseKernel &k = *kernels[i];
      ElementwiseItem item{};
      size_t p = 0;
      for (int id : k.inputs)
        item.p[p++] = ptr(id);
      for (int id : k.outputs)
        item.p[p++] = ptr(id);
      item.n = k.total;
      maxN = std::max<long long>(maxN, k.total);
      items.push_back(item);
    }
    ElementwiseItem *table = uploadTable(items, "multi-tensor table");
    cudaKernel_t multi = elementwise_.at(first->multiName);
    const std::string name = first->multiName;
    const int count = int(items.size());
    const unsigned blocksX = blocksFor((maxN + first->vector - 1) / first->vector);
    const Launch single = pf.steps[s].own;
    pf.steps[s].launch = [this, single, multi, name, table, count, blocksX] {
      if (!batchingNow())
        return single();
      const ElementwiseItem *t = table;
      int c = count;
      void *params[] = {&t, &c};
      const size_t sizes[] = {sizeof(t), sizeof(c)};
      verifyParams(multi, name.c_str(), sizes, 2);
      checkCuda(cudaLaunchKernel(reinterpret_cast<const void *>(multi), dim3(blocksX, unsigned(count)),
                                 dim3(256), params, 0, stream_),
                "cudaLaunchKernel(" + name + ")");
    };
    for (size_t i : group) {
      if (i == s)
        continue;
      const Launch own = pf.steps[i].own;
      pf.steps[i].launch = [this, own] {
        if (!batchingNow())
          own();
      };
    }
  }
}

int CudaExecutor::closeScratch(const ScratchLayout &sl, int function, int64_t step) {
  int r = scratchMap_.close(sl, function, step);
  if (r >= 0)
    placeInArena(size_t(r));
  return r;
}

bool CudaExecutor::placeInArena(size_t r) {
  ScratchMap::Range &range = scratchMap_[r];
  if (range.arenaOffset < 0 && scratchInArena_ && arena_ && range.function >= 0)
    range.arenaOffset =
        plan_.freeArenaOffset(uint32_t(range.function), range.step, range.size, /*align=*/256);
  return range.arenaOffset >= 0;
}

void CudaExecutor::prepareFunctions() {
  uint32_t index = 0;
  for (const plan::Function *fn : *plan_->functions()) {
    PreparedFunction &pf = functions_[fn->name()->str()];
    const uint32_t fnIndex = index;
    pf.index = index++;
    if (!fn->steps())
      continue;
    for (flatbuffers::uoffset_t s = 0; s < fn->steps()->size(); ++s) {
      const plan::Step *step = fn->steps()->Get(s);
      std::string where = "step " + std::to_string(s) + " '" +
                          (step->name() ? step->name()->str() : "") + "' (" +
                          plan::EnumNameKernel(step->kernel_type()) + ")";
      int site = int(sites_.size());
      sites_.push_back({fn->name()->str() + " " + where, 0});
      try {
        if (convAuto_ && step->kernel_type() == Kernel::Conv2d) {
          // Every way the convolution may run; the first (the default's choice) until
          // tuneConvolutions has timed them. Their scratch is in the buffer, which fits
          // the largest for now; the chosen way's moves into the arena where it fits.
          std::vector<ConvVariant> variants = convVariants(*step->kernel_as_Conv2d(), fnIndex, s);
          pf.steps.push_back({where, variants.front().launch, variants.front().launch,
                              std::move(variants), step->kernel_as_Conv2d()->out()});
        } else {
          ScratchLayout sl = scratchMap_.open();
          Launch l = prepareStep(*step, site, sl);
          pf.steps.push_back({where, l, l, {}});
          closeScratch(sl, int(fnIndex), int64_t(s));
        }
      } catch (const Error &e) {
        throw Error(plan_.name() + ": " + fn->name()->str() + " " + where + ": " + e.what());
      }
    }
    batchElementwise(*fn, pf);
    if (poison_ && arena_ && fn->steps())
      for (uint32_t s = 0; s < fn->steps()->size(); ++s)
        pf.freeSpans.push_back(plan_.freeArenaSpans(fnIndex, int64_t(s)));
  }
  // The buffer holds the largest scratch that found no room in the arena (auto: of every
  // way to run a convolution, until tuneConvolutions has chosen).
  const size_t maxScratch = scratchMap_.bufferBytes(/*alsoUnused=*/true);
  if (maxScratch > 0) {
    cudaError_t e = cudaMalloc(&scratch_, maxScratch);
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw Error("out of GPU memory allocating " + std::to_string(maxScratch) +
                  " bytes of scratch space (convolution workspace: set "
                  "MANTISSA_CUDA_CONV_WORKSPACE_MB lower): " + cudaGetErrorString(e));
    }
    allocatedBytes_ += int64_t(maxScratch);
    scratchBytes_ = maxScratch;
  }
  if (epilogueFallbacks_ > 0)
    std::fprintf(stderr,
                 "mantissa cuda: note: %d GEMM epilogue(s) run as a GEMM into fp32 and a bias "
                 "kernel (same numbers, one more kernel), not through cuBLASLt: %s\n",
                 epilogueFallbacks_, epilogueFallbackWhy_.c_str());
  if (!convAuto_ && std::string(envOr("MANTISSA_VERBOSE", "0")) != "0")
    reportScratch(); // (auto: after tuneConvolutions has placed the chosen ways')
}

//===--- launching ----------------------------------------------------------------===//

unsigned CudaExecutor::blocksFor(int64_t n) const {
  // Grid-stride kernels: enough blocks to fill the GPU several times over, no more.
  int64_t cap = int64_t(props_.multiProcessorCount) * 32;
  return unsigned(std::max<int64_t>(1, std::min<int64_t>((n + 255) / 256, cap)));
}

void CudaExecutor::verifyParams(cudaKernel_t fn, const char *name, const size_t *sizes,
                                size_t count) {
  if (!verified_.insert(fn).second)
    return;
  for (size_t i = 0; i <= count; ++i) {
    size_t offset = 0, size = 0;
    cudaError_t e = cudaFuncGetParamInfo(reinterpret_cast<const void *>(fn), i, &offset, &size);
    if (i == count) {
      if (e == cudaSuccess)
        throw Error(std::string("internal error: kernel ") + name + " takes more than the " +
                    std::to_string(count) + " arguments the host passes");
      cudaGetLastError();
      break;
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      if (e == cudaErrorNotSupported || e == cudaErrorInvalidDeviceFunction)
        return; // no parameter information from this driver: nothing to check
      throw Error(std::string("internal error: kernel ") + name + " takes " + std::to_string(i) +
                  " arguments, the host passes " + std::to_string(count));
    }
    if (size != sizes[i])
      throw Error(std::string("internal error: parameter ") + std::to_string(i) + " of kernel " +
                  name + " is " + std::to_string(size) + " bytes, the host passes " +
                  std::to_string(sizes[i]));
  }
}

template <class Tuple, size_t... I>
void CudaExecutor::launchTuple(cudaKernel_t fn, const char *name, dim3 grid, dim3 block,
                               Tuple &values, std::index_sequence<I...>) {
  void *params[] = {static_cast<void *>(&std::get<I>(values))...};
  const size_t sizes[] = {sizeof(std::get<I>(values))...};
  verifyParams(fn, name, sizes, sizeof...(I));
  checkCuda(cudaLaunchKernel(reinterpret_cast<const void *>(fn), grid, block, params, 0, stream_),
            std::string("cudaLaunchKernel(") + name + ")");
}

template <class... P, class... A>
void CudaExecutor::launch(const KernelRef<P...> &k, dim3 grid, dim3 block, A &&...args) {
  static_assert(sizeof...(P) == sizeof...(A), "wrong number of kernel arguments");
  // Each argument converted to exactly the parameter's type (and so its width).
  std::tuple<P...> values{static_cast<P>(std::forward<A>(args))...};
  launchTuple(k.fn, k.name, grid, block, values, std::index_sequence_for<P...>{});
}

void CudaExecutor::convert(const void *in, DType it, void *out, DType ot, int64_t n) {
  if (n <= 0)
    return;
  if (it == ot) {
    if (in != out)
      checkCuda(cudaMemcpyAsync(out, in, size_t(n) * dtypeBytes(it), cudaMemcpyDeviceToDevice, stream_),
                "cudaMemcpyAsync");
    return;
  }
  launch(fixed_.mt_convert, blocksFor(n), 256, in, code(it), out, code(ot), n);
}

//===--- GEMM ------------------------------------------------------------------------===//

GemmPlan CudaExecutor::planGemm(DType at, DType bt, DType ct, int64_t maxA, int64_t maxB,
                                int64_t maxC, ScratchLayout &sl) const {
  GemmPlan g;
  g.ab = at == bt ? at : DType::F32;
  g.convA = at != g.ab;
  g.convB = bt != g.ab;
  g.viaF32C = !cSupported(g.ab, ct);
  if (g.convA)
    g.offA = sl.take(size_t(maxA) * 4);
  if (g.convB)
    g.offB = sl.take(size_t(maxB) * 4);
  if (g.viaF32C)
    g.offC = sl.take(size_t(maxC) * 4);
  return g;
}

void CudaExecutor::runGemm(const GemmPlan &g, const GemmCall &c) {
  if (c.m == 0 || c.n == 0 || c.batch == 0)
    return;
  const int64_t countC = c.batch * c.m * c.n; // C is contiguous across the batch
  if (c.k == 0) {
    // An empty sum: C = beta C (beta = 0 overwrites, NaNs in C do not leak through).
    if (c.beta == 0.0f)
      checkCuda(cudaMemsetAsync(c.c, 0, size_t(countC) * dtypeBytes(c.ct), stream_), "cudaMemsetAsync");
    else if (c.beta != 1.0f)
      launch(fixed_.mt_scale, blocksFor(countC), 256, c.c, code(c.ct), countC, c.beta);
    return;
  }
  const void *a = c.a, *b = c.b;
  void *cc = c.c;
  if (g.convA) {
    int64_t n = (c.sA == 0 ? 1 : c.batch) * c.m * c.k;
    convert(c.a, c.at, scratch(g.offA), DType::F32, n);
    a = scratch(g.offA);
  }
  if (g.convB) {
    int64_t n = (c.sB == 0 ? 1 : c.batch) * c.k * c.n;
    convert(c.b, c.bt, scratch(g.offB), DType::F32, n);
    b = scratch(g.offB);
  }
  DType ctype = c.ct;
  if (g.viaF32C) {
    cc = scratch(g.offC);
    ctype = DType::F32;
    if (c.beta != 0.0f)
      convert(c.c, c.ct, cc, DType::F32, countC);
  }
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: B comes first.
  const cublasOperation_t opA = c.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t opB = c.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int m = int(c.m), n = int(c.n), k = int(c.k);
  const int lda = c.ta ? m : k, ldb = c.tb ? k : n, ldc = n;
  const cublasComputeType_t compute =
      (g.ab == DType::F32 && tf32_) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const float alpha = c.alpha, beta = c.beta;
  if (c.batch == 1)
    checkBlas(cublasGemmEx(blas_, opB, opA, n, m, k, &alpha, b, blasType(g.ab), ldb, a,
                           blasType(g.ab), lda, &beta, cc, blasType(ctype), ldc, compute,
                           CUBLAS_GEMM_DEFAULT),
              "cublasGemmEx(m=" + std::to_string(m) + ", n=" + std::to_string(n) +
                  ", k=" + std::to_string(k) + ")");
  else
    checkBlas(cublasGemmStridedBatchedEx(blas_, opB, opA, n, m, k, &alpha, b, blasType(g.ab), ldb,
                                         c.sB, a, blasType(g.ab), lda, c.sA, &beta, cc,
                                         blasType(ctype), ldc, c.sC, int(c.batch), compute,
                                         CUBLAS_GEMM_DEFAULT),
              "cublasGemmStridedBatchedEx(m=" + std::to_string(m) + ", n=" + std::to_string(n) +
                  ", k=" + std::to_string(k) + ", batch=" + std::to_string(c.batch) + ")");
  if (g.viaF32C)
    convert(cc, DType::F32, c.c, c.ct, countC);
}

std::unique_ptr<LtMatmul> CudaExecutor::planLtMatmul(const plan::Gemm &k) {
  // Row-major C[m,n] = op(a) op(b) is column-major D[n,m] = op(b)^T op(a)^T: cuBLASLt's
  // A is our b and its B our a; the bias indexes D's rows (our n), as a linear's does.
  const DType t = dtype(k.c());
  const cudaDataType_t type = blasType(t);
  const uint64_t m = uint64_t(k.m()), n = uint64_t(k.n()), kk = uint64_t(k.k());
  auto lt = std::make_unique<LtMatmul>();
  const cublasComputeType_t compute =
      (t == DType::F32 && tf32_) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  checkBlas(cublasLtMatmulDescCreate(&lt->desc, compute, CUDA_R_32F), "cublasLtMatmulDescCreate");
  auto set = [&](cublasLtMatmulDescAttributes_t attr, const void *v, size_t bytes) {
    checkBlas(cublasLtMatmulDescSetAttribute(lt->desc, attr, v, bytes),
              "cublasLtMatmulDescSetAttribute(" + std::to_string(int(attr)) + ")");
  };
  const cublasOperation_t opA = k.trans_b() ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t opB = k.trans_a() ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasLtEpilogue_t epilogue =
      k.relu() ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
  const void *bias = ptr(k.bias());
  const int32_t biasType = int32_t(type);
  set(CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof opA);
  set(CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof opB);
  set(CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue);
  set(CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
  set(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &biasType, sizeof biasType);
  // Column-major layouts as stored: b is [kk, n] row-major ([n, kk] with trans_b).
  auto layout = [&](cublasLtMatrixLayout_t &l, uint64_t rows, uint64_t cols) {
    checkBlas(cublasLtMatrixLayoutCreate(&l, type, rows, cols, int64_t(rows)),
              "cublasLtMatrixLayoutCreate");
  };
  layout(lt->a, k.trans_b() ? kk : n, k.trans_b() ? n : kk);
  layout(lt->b, k.trans_a() ? m : kk, k.trans_a() ? kk : m);
  layout(lt->d, n, m);

  cublasLtMatmulPreference_t pref = nullptr;
  checkBlas(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  std::unique_ptr<std::remove_pointer_t<cublasLtMatmulPreference_t>,
                  cublasStatus_t (*)(cublasLtMatmulPreference_t)>
      prefOwner(pref, cublasLtMatmulPreferenceDestroy);
  auto setPref = [&](cublasLtMatmulPreferenceAttributes_t attr, const void *v, size_t bytes) {
    checkBlas(cublasLtMatmulPreferenceSetAttribute(pref, attr, v, bytes),
              "cublasLtMatmulPreferenceSetAttribute(" + std::to_string(int(attr)) + ")");
  };
  const uint64_t workspace = blasWorkspaceBytes_;
  setPref(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace);
  // Split-K partial sums in fp32 only, as the cuBLAS handle's
  // DISALLOW_REDUCED_PRECISION_REDUCTION: never added up in fp16/bf16.
  const uint32_t schemes = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
  setPref(CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &schemes, sizeof schemes);
  // The operands' actual alignment (tensors sit at arena offsets), so that no
  // algorithm that needs more is chosen.
  auto alignment = [](const void *p) {
    uint32_t a = 256;
    while (a > 1 && reinterpret_cast<uintptr_t>(p) % a)
      a /= 2;
    return a;
  };
  const uint32_t alignA = alignment(ptr(k.b())), alignB = alignment(ptr(k.a())),
                 alignD = alignment(ptr(k.c()));
  setPref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &alignA, sizeof alignA);
  setPref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &alignB, sizeof alignB);
  setPref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &alignD, sizeof alignD);
  setPref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &alignD, sizeof alignD);
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_, lt->desc, lt->a, lt->b, lt->d, lt->d,
                                                     pref, 1, &result, &found);
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || (st == CUBLAS_STATUS_SUCCESS && found == 0))
    return nullptr;
  checkBlas(st, "cublasLtMatmulAlgoGetHeuristic(m=" + std::to_string(m) +
                    ", n=" + std::to_string(n) + ", k=" + std::to_string(kk) + ")");
  lt->algo = result.algo;
  return lt;
}

CudaExecutor::Launch CudaExecutor::prepareGemmEpilogue(const plan::Gemm &k, ScratchLayout &sl) {
  // PlanLoader checked: batch 1, beta 0, a, b, bias and c of c's type.
  const int64_t m = k.m(), n = k.n();
  if (m == 0 || n == 0)
    return [] {};
  void *a = ptr(k.a()), *b = ptr(k.b()), *c = ptr(k.c());
  const void *bias = ptr(k.bias());
  const float alpha = k.alpha(), beta = 0.0f;
  if (epilogues_ && k.k() > 0) {
    std::unique_ptr<LtMatmul> lt;
    try {
      lt = planLtMatmul(k);
      if (!lt && epilogueFallbackWhy_.empty())
        epilogueFallbackWhy_ = "no algorithm for m=" + std::to_string(m) +
                               ", n=" + std::to_string(n) + ", k=" + std::to_string(k.k());
    } catch (const Error &e) { // a setup cuBLASLt rejects: the fallback computes the same
      if (epilogueFallbackWhy_.empty())
        epilogueFallbackWhy_ = e.what();
    }
    if (lt) {
      const LtMatmul *p = lt.get();
      ltMatmuls_.push_back(std::move(lt));
      const std::string what = "cublasLtMatmul(m=" + std::to_string(m) +
                               ", n=" + std::to_string(n) + ", k=" + std::to_string(k.k()) + ", " +
                               (k.relu() ? "RELU_BIAS" : "BIAS") + ")";
      return [=, this] {
        checkBlas(cublasLtMatmul(lt_, p->desc, &alpha, b, p->a, a, p->b, &beta, c, p->d, c, p->d,
                                 &p->algo, blasWorkspace_, blasWorkspaceBytes_, stream_),
                  what);
      };
    }
    ++epilogueFallbacks_;
  }
  // The fallback, exact as well: the product in fp32 scratch, then mt_bias_act's one
  // rounding (also MANTISSA_CUDA_EPILOGUE=0, and k = 0, where the product is 0).
  GemmCall g = gemmCallOf(k); // batch 1, beta 0: c is set to the scratch when it runs
  g.ct = DType::F32;
  const GemmPlan gp = planGemm(g.at, g.bt, DType::F32, m * k.k(), k.k() * n, m * n, sl);
  const size_t acc = sl.take(size_t(m * n) * 4);
  const int ct = dcode(k.c()), bt = dcode(k.bias()), relu = k.relu() ? 1 : 0;
  return [=, this]() mutable {
    g.c = scratch(acc);
    runGemm(gp, g);
    launch(fixed_.mt_bias_act, blocksFor(m * n), 256, static_cast<const float *>(g.c), c, ct, bias,
           bt, (long long)m, (long long)n, relu);
  };
}

//===--- steps --------------------------------------------------------------------===//

CudaExecutor::Launch CudaExecutor::prepareStep(const plan::Step &step, int site, ScratchLayout &sl) {
  switch (step.kernel_type()) {
  case Kernel::Elementwise: {
    auto it = stepGeometry_.find(&step);
    if (it == stepGeometry_.end())
      throw Error("internal error: no kernel generated for this step");
    const ElementwiseKernel &ek = it->second;
    struct Args {
      cudaKernel_t fn;
      std::string name;
      std::vector<void *> pointers;
      long long n;
      int vector;
      std::vector<long long> geometry;
      std::vector<size_t> sizes;
    };
    auto args = std::make_shared<Args>();
    args->fn = elementwise_.at(ek.name);
    args->name = ek.name;
    for (int id : ek.inputs)
      args->pointers.push_back(ptr(id));
    for (int id : ek.outputs)
      args->pointers.push_back(ptr(id));
    args->n = ek.total;
    args->vector = ek.vector;
    args->geometry.assign(ek.geometry.begin(), ek.geometry.end());
    args->sizes.assign(args->pointers.size(), sizeof(void *));
    args->sizes.push_back(sizeof(long long));
    if (!args->geometry.empty())
      args->sizes.push_back(args->geometry.size() * sizeof(long long));
    return [this, args] {
      if (args->n <= 0)
        return;
      std::vector<void *> params;
      for (void *&p : args->pointers)
        params.push_back(&p);
      params.push_back(&args->n);
      if (!args->geometry.empty())
        params.push_back(args->geometry.data());
      verifyParams(args->fn, args->name.c_str(), args->sizes.data(), args->sizes.size());
      checkCuda(cudaLaunchKernel(reinterpret_cast<const void *>(args->fn),
                                 dim3(blocksFor((args->n + args->vector - 1) / args->vector)),
                                 dim3(256), params.data(), 0, stream_),
                "cudaLaunchKernel(" + args->name + ")");
    };
  }
  case Kernel::Gemm:
    return prepareGemm(*step.kernel_as_Gemm(), sl);
  case Kernel::Conv2d:
    return prepareConv(*step.kernel_as_Conv2d(), sl);
  case Kernel::MaxPool2d: {
    const plan::MaxPool2d &k = *step.kernel_as_MaxPool2d();
    const long long planes = k.n() * k.c(), H = k.h(), W = k.w(), KK = k.kernel(), S = k.stride();
    const long long OH = (H - KK) / S + 1, OW = (W - KK) / S + 1;
    void *x = ptr(k.x()), *y = ptr(k.y());
    int *ind = static_cast<int *>(ptr(k.indices())); // null: not stored
    int xt = dcode(k.x()), yt = dcode(k.y());
    return [=] {
      const long long total = planes * OH * OW;
      if (total > 0)
        launch(fixed_.mt_maxpool_fwd, blocksFor(total), 256, x, xt, y, yt, ind, planes, H, W, OH,
               OW, KK, S);
    };
  }
  case Kernel::MaxPool2dBackward: {
    const MaxPoolBackwardArgs a =
        maxPoolBackwardArgs(*step.kernel_as_MaxPool2dBackward(), tensorRefs());
    return [=] {
      launchMaxPoolBackward(
          fixed_, fixedLauncher(), [this](long long n) { return blocksFor(n); }, a);
    };
  }
  case Kernel::BatchNorm:
    return prepareBatchNorm(*step.kernel_as_BatchNorm(), sl);
  case Kernel::BatchNormBackward:
    return prepareBatchNormBackward(*step.kernel_as_BatchNormBackward(), sl);
  case Kernel::SoftmaxCrossEntropy: {
    const plan::SoftmaxCrossEntropy &k = *step.kernel_as_SoftmaxCrossEntropy();
    sites_[size_t(site)].classes = k.c();
    const long long n = k.n(), c = k.c();
    const size_t rowOff = sl.take(size_t(n) * sizeof(double));
    void *logits = ptr(k.logits()), *labels = ptr(k.labels()), *loss = ptr(k.loss());
    int lt = dcode(k.logits()), labt = dcode(k.labels()), ot = dcode(k.loss());
    return [=] {
      double *rows = reinterpret_cast<double *>(scratch(rowOff));
      launch(fixed_.mt_ce_fwd, unsigned((n + 7) / 8), 256, logits, lt, labels, labt, n, c,
             status_, site, rows);
      launch(fixed_.mt_sum_partials, 1, 256, rows, n, double(n), loss, ot);
    };
  }
  case Kernel::SoftmaxCrossEntropyBackward: {
    const plan::SoftmaxCrossEntropyBackward &k = *step.kernel_as_SoftmaxCrossEntropyBackward();
    sites_[size_t(site)].classes = k.c();
    const long long n = k.n(), c = k.c();
    void *logits = ptr(k.logits()), *labels = ptr(k.labels()), *dloss = ptr(k.dloss()),
         *dlogits = ptr(k.dlogits());
    int lt = dcode(k.logits()), labt = dcode(k.labels()), dlt = dcode(k.dloss()),
        dt = dcode(k.dlogits());
    return [=] {
      launch(fixed_.mt_ce_bwd, unsigned((n + 7) / 8), 256, logits, lt, labels, labt, dloss, dlt, n,
             c, dlogits, dt, status_, site);
    };
  }
  case Kernel::MseLoss: {
    const plan::MseLoss &k = *step.kernel_as_MseLoss();
    const long long count = k.count(), chunk = 4096, chunks = (count + chunk - 1) / chunk;
    const size_t partOff = sl.take(size_t(chunks) * sizeof(double));
    void *a = ptr(k.a()), *b = ptr(k.b()), *loss = ptr(k.loss());
    int at = dcode(k.a()), bt = dcode(k.b()), ot = dcode(k.loss());
    return [=] {
      double *part = reinterpret_cast<double *>(scratch(partOff));
      launch(fixed_.mt_mse_partial, unsigned(chunks), 256, a, at, b, bt, count, chunk, part);
      launch(fixed_.mt_sum_partials, 1, 256, part, chunks, double(count), loss, ot);
    };
  }
  case Kernel::MseLossBackward: {
    const plan::MseLossBackward &k = *step.kernel_as_MseLossBackward();
    const long long count = k.count();
    void *a = ptr(k.a()), *b = ptr(k.b()), *dloss = ptr(k.dloss()), *da = ptr(k.da());
    int at = dcode(k.a()), bt = dcode(k.b()), dlt = dcode(k.dloss()), dat = dcode(k.da());
    return [=] {
      launch(fixed_.mt_mse_bwd, blocksFor(count), 256, a, at, b, bt, dloss, dlt, count, da, dat);
    };
  }
  case Kernel::Reduce:
    return prepareReduce(*step.kernel_as_Reduce(), sl);
  case Kernel::Concat: {
    const std::vector<CopyRowsArgs> pieces = concatArgs(*step.kernel_as_Concat(), tensorRefs());
    return [=] {
      for (const CopyRowsArgs &p : pieces)
        launchCopyRows(
            fixed_, fixedLauncher(), [this](long long n) { return blocksFor(n); }, p);
    };
  }
  case Kernel::Slice: {
    const CopyRowsArgs a = sliceArgs(*step.kernel_as_Slice(), tensorRefs());
    return [=] {
      launchCopyRows(
          fixed_, fixedLauncher(), [this](long long n) { return blocksFor(n); }, a);
    };
  }
  case Kernel::Transpose:
    return prepareTranspose(*step.kernel_as_Transpose());
  case Kernel::Copy: {
    const plan::Copy &k = *step.kernel_as_Copy();
    void *in = ptr(k.input()), *out = ptr(k.output());
    DType it = dtype(k.input()), ot = dtype(k.output());
    const int64_t count = k.count();
    return [=] { convert(in, it, out, ot, count); };
  }
  case Kernel::AllFinite:
    return prepareAllFinite(*step.kernel_as_AllFinite(), sl);
  default:
    throw Error("kernel type not supported by the CUDA backend");
  }
}

GemmCall CudaExecutor::gemmCallOf(const plan::Gemm &k) const {
  GemmCall c;
  c.ta = k.trans_a();
  c.tb = k.trans_b();
  c.m = k.m();
  c.n = k.n();
  c.k = k.k();
  c.batch = k.batch();
  c.sA = c.m * c.k;
  c.sB = c.k * c.n;
  c.sC = c.m * c.n;
  c.alpha = k.alpha();
  c.beta = k.beta();
  c.a = ptr(k.a());
  c.b = ptr(k.b());
  c.c = ptr(k.c());
  c.at = dtype(k.a());
  c.bt = dtype(k.b());
  c.ct = dtype(k.c());
  return c;
}

CudaExecutor::Launch CudaExecutor::prepareGemm(const plan::Gemm &k, ScratchLayout &sl) {
  if (k.bias() >= 0)
    return prepareGemmEpilogue(k, sl);
  const GemmCall c = gemmCallOf(k);
  if (c.batch > INT_MAX)
    throw Error("batch " + std::to_string(c.batch) + " exceeds what cuBLAS can index");
  GemmPlan g = planGemm(c.at, c.bt, c.ct, c.batch * c.m * c.k, c.batch * c.k * c.n,
                        c.batch * c.m * c.n, sl);
  return [this, g, c] { runGemm(g, c); };
}

CudaExecutor::Launch CudaExecutor::prepareConv(const plan::Conv2d &k, ScratchLayout &sl) {
  if (convNhwc_)
    if (auto cfg = convNhwcWarps_ == 4 ? convNhwcWideConfigFor(plan_.plan(), k)
                                       : convNhwcConfigFor(plan_.plan(), k))
      return prepareConvGemm(k, *cfg, sl);
  if (convGemm_)
    if (auto cfg = convGemmConfigFor(plan_.plan(), k))
      return prepareConvGemm(k, *cfg, sl);
  return prepareConvIm2col(k, sl);
}

/// The ways convolution `k` may run, the default's choice first: the NHWC implicit GEMM
/// where it applies (8 warps, then 4), the NCHW implicit GEMM (fp16/bf16), im2col + cuBLAS. A way
/// that cannot take this convolution (im2col past 32-bit indexing) is left out; with none left, its
/// error.
std::vector<CudaExecutor::ConvVariant> CudaExecutor::convVariants(const plan::Conv2d &k,
                                                                  uint32_t function, int64_t step) {
  std::vector<ConvVariant> out;
  std::string lastError;
  auto add = [&](const char *name, auto &&prepare) {
    try {
      ScratchLayout sl = scratchMap_.open();
      Launch l = prepare(sl);
      // In the buffer while every way is timed (-1: not placed yet); remembered for the
      // chosen one's placement.
      int r = closeScratch(sl, -1, step);
      if (r >= 0) {
        scratchMap_[size_t(r)].function = int(function);
        scratchMap_[size_t(r)].used = false; // until tuneConvolutions chooses it
      }
      out.push_back({name, std::move(l), r, 0.0});
    } catch (const Error &e) {
      lastError = e.what();
    }
  };
  if (auto cfg = convNhwcConfigFor(plan_.plan(), k))
    add("nhwc", [&](ScratchLayout &sl) { return prepareConvGemm(k, *cfg, sl); });
  if (auto cfg = convNhwcWideConfigFor(plan_.plan(), k))
    add("nhwc-w4", [&](ScratchLayout &sl) { return prepareConvGemm(k, *cfg, sl); });
  if (auto cfg = convGemmConfigFor(plan_.plan(), k))
    add("gemm", [&](ScratchLayout &sl) { return prepareConvGemm(k, *cfg, sl); });
  add("im2col", [&](ScratchLayout &sl) { return prepareConvIm2col(k, sl); });
  if (out.empty())
    throw Error(lastError);
  return out;
}

/// MANTISSA_CUDA_CONV=auto, as cuDNN's benchmark mode: each convolution step with more
/// than one way to run is timed each way (one warm-up, then the best of three, CUDA
/// events on the stream) before the first training step, and keeps the fastest. The
/// timing runs change no state: they write temps (live only inside a step) and scratch,
/// and an output outside the temp arena is saved before and restored after. The scratch
/// is then cut to what the chosen ways need.
void CudaExecutor::tuneConvolutions() {
  cudaEvent_t start = nullptr, stop = nullptr;
  checkCuda(cudaEventCreate(&start), "cudaEventCreate");
  checkCuda(cudaEventCreate(&stop), "cudaEventCreate");
  const bool verbose = std::string(envOr("MANTISSA_VERBOSE", "0")) != "0";
  size_t tuned = 0, changed = 0;
  for (auto &[name, pf] : functions_) {
    for (PreparedStep &ps : pf.steps) {
      if (ps.variants.empty())
        continue;
      size_t best = 0;
      if (ps.variants.size() > 1) {
        // An output outside the temp arena holds state (an accumulated gradient, say):
        // the timing runs overwrite or add to it, so it is put back afterwards.
        const DeviceTensor &out = tensors_[size_t(ps.convOut)];
        void *saved = nullptr;
        if (!out.inArena) {
          checkCuda(cudaMalloc(&saved, out.bytes), "cudaMalloc (convolution tuning)");
          checkCuda(cudaMemcpyAsync(saved, out.ptr, out.bytes, cudaMemcpyDeviceToDevice, stream_),
                    "cudaMemcpyAsync (convolution tuning)");
        }
        for (ConvVariant &v : ps.variants) {
          v.launch(); // warm-up
          v.ms = std::numeric_limits<double>::infinity();
          for (int r = 0; r < 3; ++r) {
            checkCuda(cudaEventRecord(start, stream_), "cudaEventRecord");
            v.launch();
            checkCuda(cudaEventRecord(stop, stream_), "cudaEventRecord");
            checkCuda(cudaEventSynchronize(stop), "cudaEventSynchronize (convolution tuning)");
            float ms = 0;
            checkCuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
            v.ms = std::min(v.ms, double(ms));
          }
        }
        if (saved) {
          checkCuda(cudaMemcpyAsync(out.ptr, saved, out.bytes, cudaMemcpyDeviceToDevice, stream_),
                    "cudaMemcpyAsync (convolution tuning)");
          checkCuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (convolution tuning)");
          checkCuda(cudaFree(saved), "cudaFree (convolution tuning)");
        }
        for (size_t i = 1; i < ps.variants.size(); ++i)
          if (ps.variants[i].ms < ps.variants[best].ms)
            best = i;
        ++tuned;
        changed += best != 0;
        if (verbose) {
          std::string line = "mantissa cuda: " + name + " " + ps.where + ":";
          for (size_t i = 0; i < ps.variants.size(); ++i) {
            char buf[64];
            std::snprintf(buf, sizeof buf, " %s%s %.3f ms", i == best ? "*" : "",
                          ps.variants[i].name.c_str(), ps.variants[i].ms);
            line += buf;
          }
          std::fprintf(stderr, "%s\n", line.c_str());
        }
      }
      ps.launch = ps.own = ps.variants[best].launch;
      const int range = ps.variants[best].scratchRange;
      if (range >= 0) {
        scratchMap_[size_t(range)].used = true;
        placeInArena(size_t(range));
      }
      std::vector<ConvVariant> chosen = {ps.variants[best]};
      ps.variants = std::move(chosen);
    }
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  // Scratch: the other steps' maximum and the chosen convolutions' that did not fit in
  // the arena. Launches look the scratch up when they run (scratch()), so it may move.
  const size_t needed = scratchMap_.bufferBytes();
  if (needed < scratchBytes_) {
    checkCuda(cudaFree(scratch_), "cudaFree (scratch)");
    scratch_ = nullptr;
    allocatedBytes_ -= int64_t(scratchBytes_);
    scratchBytes_ = 0;
    if (needed > 0) {
      checkCuda(cudaMalloc(&scratch_, needed), "cudaMalloc (scratch)");
      allocatedBytes_ += int64_t(needed);
      scratchBytes_ = needed;
    }
  }
  if (verbose)
    std::fprintf(stderr,
                 "mantissa cuda: timed %zu convolutions each way, %zu run other than the "
                 "default; scratch %zu bytes\n",
                 tuned, changed, scratchBytes_);
  if (verbose)
    reportScratch();
}

void CudaExecutor::reportScratch() const {
  size_t inArena = 0, inBuffer = 0, arenaMax = 0, bufferMax = 0;
  for (const ScratchMap::Range &r : scratchMap_.ranges()) {
    if (!r.used)
      continue;
    if (r.arenaOffset >= 0) {
      ++inArena;
      arenaMax = std::max(arenaMax, r.size);
    } else {
      ++inBuffer;
      bufferMax = std::max(bufferMax, r.size);
    }
  }
  std::fprintf(stderr,
               "mantissa cuda: scratch of %zu steps in the temp arena's bytes free at their step "
               "(largest %zu bytes), of %zu steps in a buffer of %zu bytes (largest need %zu)%s\n",
               inArena, arenaMax, inBuffer, scratchBytes_, bufferMax,
               scratchInArena_ ? (arena_ ? "" : "; no arena (MANTISSA_CUDA_NO_ARENA)")
                               : "; MANTISSA_CUDA_SCRATCH=buffer");
}

CudaExecutor::Launch CudaExecutor::prepareConvIm2col(const plan::Conv2d &k, ScratchLayout &sl) {
  const long long N = k.n(), C = k.c(), H = k.h(), W = k.w(), K = k.k(), R = k.r(), S = k.s();
  const long long sh = k.stride_h(), sw = k.stride_w(), ph = k.pad_h(), pw = k.pad_w();
  const long long P = (H + 2 * ph - R) / sh + 1, Q = (W + 2 * pw - S) / sw + 1;
  const long long PQ = P * Q, CRS = C * R * S;
  const bool accumulate = k.accumulate();
  const int in0 = k.in0(), in1 = k.in1(), out = k.out();

  // Samples per group: the group's im2col matrix stays within the budget.
  auto groupFor = [&](size_t perSample) {
    long long g = (long long)(convBudget_ / std::max<size_t>(1, perSample));
    g = std::max(1LL, std::min(g, std::max(1LL, N)));
    if (g * CRS * PQ > INT_MAX && g > 1)
      g = std::max(1LL, INT_MAX / std::max(1LL, CRS * PQ));
    if (g * PQ > INT_MAX || CRS * PQ > (long long)INT_MAX * 4)
      throw Error("convolution too large for the im2col path (C*R*S*P*Q = " +
                  std::to_string(CRS * PQ) + ")");
    return g;
  };
  // im2col of samples [n0, n0 + g) of x into col; `small`: every index fits 32 bits.
  // layout 0: [g][C R S][P Q] (forward), 1: [C R S][g P Q] (weight gradient).
  auto im2col = [=](bool small, const void *x, DType xt, void *col, DType ct, long long n0,
                    long long g, int layout) {
    if (small)
      launch(fixed_.mt_im2col_i32, blocksFor(g * C * PQ), 256, x, code(xt), col, code(ct), n0, g, C,
             H, W, R, S, P, Q, sh, sw, ph, pw, layout);
    else
      launch(fixed_.mt_im2col_i64, blocksFor(g * C * PQ), 256, x, code(xt), col, code(ct), n0, g, C,
             H, W, R, S, P, Q, sh, sw, ph, pw, layout);
  };

  switch (k.kind()) {
  case plan::ConvKind::Forward: {
    const DType ct = dtype(in0) == dtype(in1) ? dtype(in0) : DType::F32;
    const size_t perSample = size_t(CRS * PQ) * dtypeBytes(ct) + size_t(K * PQ) * 4;
    const long long G = groupFor(perSample);
    const size_t colOff = sl.take(size_t(G * CRS * PQ) * dtypeBytes(ct));
    const GemmPlan gp = planGemm(dtype(in1), ct, dtype(out), K * CRS, G * CRS * PQ, G * K * PQ, sl);
    const bool small = G * CRS * PQ < INT_MAX && N * C * H * W < INT_MAX;
    void *x = ptr(in0), *w = ptr(in1), *y = ptr(out);
    const DType xt = dtype(in0), wt = dtype(in1), yt = dtype(out);
    return [=] {
      for (long long n0 = 0; n0 < N; n0 += G) {
        const long long g = std::min(G, N - n0);
        void *col = scratch(colOff);
        im2col(small, x, xt, col, ct, n0, g, 0);
        GemmCall c;
        c.m = K;
        c.n = PQ;
        c.k = CRS;
        c.batch = g;
        c.sA = 0;
        c.sB = CRS * PQ;
        c.sC = K * PQ;
        c.beta = accumulate ? 1.0f : 0.0f;
        c.a = w;
        c.at = wt;
        c.b = col;
        c.bt = ct;
        c.c = static_cast<char *>(y) + size_t(n0 * K * PQ) * dtypeBytes(yt);
        c.ct = yt;
        runGemm(gp, c);
      }
    };
  }
  case plan::ConvKind::BackwardInput: {
    // col = W^T dy per sample in fp32 (as the CPU keeps it), then col2im adds it up.
    const size_t perSample = size_t(CRS * PQ) * 4 + size_t(K * PQ) * 4;
    const long long G = groupFor(perSample);
    const size_t colOff = sl.take(size_t(G * CRS * PQ) * 4);
    const GemmPlan gp =
        planGemm(dtype(in1), dtype(in0), DType::F32, K * CRS, G * K * PQ, G * CRS * PQ, sl);
    const bool small = G * CRS * PQ < INT_MAX && N * C * H * W < INT_MAX;
    void *dy = ptr(in0), *w = ptr(in1), *dx = ptr(out);
    const DType dyt = dtype(in0), wt = dtype(in1), dxt = dtype(out);
    return [=] {
      for (long long n0 = 0; n0 < N; n0 += G) {
        const long long g = std::min(G, N - n0);
        float *col = reinterpret_cast<float *>(scratch(colOff));
        GemmCall c;
        c.ta = true; // w is [K, CRS]
        c.m = CRS;
        c.n = PQ;
        c.k = K;
        c.batch = g;
        c.sA = 0;
        c.sB = K * PQ;
        c.sC = CRS * PQ;
        c.a = w;
        c.at = wt;
        c.b = static_cast<char *>(dy) + size_t(n0 * K * PQ) * dtypeBytes(dyt);
        c.bt = dyt;
        c.c = col;
        c.ct = DType::F32;
        runGemm(gp, c);
        const long long total = g * C * H * W;
        if (small)
          launch(fixed_.mt_col2im_i32, blocksFor(total), 256, col, dx, code(dxt), n0, g, C, H, W, R,
                 S, P, Q, sh, sw, ph, pw, accumulate ? 1 : 0);
        else
          launch(fixed_.mt_col2im_i64, blocksFor(total), 256, col, dx, code(dxt), n0, g, C, H, W, R,
                 S, P, Q, sh, sw, ph, pw, accumulate ? 1 : 0);
      }
    };
  }
  case plan::ConvKind::BackwardWeight: {
    // dw = sum over groups of dyG [K, g*PQ] x colG^T [g*PQ, CRS], accumulated in fp32.
    const DType ct = dtype(in0) == dtype(in1) ? dtype(in0) : DType::F32;
    const size_t perSample = size_t(CRS * PQ + K * PQ) * dtypeBytes(ct);
    const long long G = groupFor(perSample);
    const size_t colOff = sl.take(size_t(G * CRS * PQ) * dtypeBytes(ct));
    const size_t dyOff = sl.take(size_t(G * K * PQ) * dtypeBytes(ct));
    const DType dwt = dtype(out);
    const bool viaAcc = dwt != DType::F32;
    const size_t accOff = viaAcc ? sl.take(size_t(K * CRS) * 4) : 0;
    const GemmPlan gp = planGemm(ct, ct, DType::F32, G * K * PQ, G * CRS * PQ, K * CRS, sl);
    const bool small = G * CRS * PQ < INT_MAX && N * C * H * W < INT_MAX;
    void *x = ptr(in0), *dy = ptr(in1), *dw = ptr(out);
    const DType xt = dtype(in0), dyt = dtype(in1);
    return [=] {
      void *acc = viaAcc ? static_cast<void *>(scratch(accOff)) : dw;
      if (N == 0) {
        if (!accumulate)
          checkCuda(cudaMemsetAsync(dw, 0, size_t(K * CRS) * dtypeBytes(dwt), stream_),
                    "cudaMemsetAsync");
        return;
      }
      if (viaAcc && accumulate)
        convert(dw, dwt, acc, DType::F32, K * CRS);
      for (long long n0 = 0; n0 < N; n0 += G) {
        const long long g = std::min(G, N - n0);
        void *col = scratch(colOff), *dyG = scratch(dyOff);
        im2col(small, x, xt, col, ct, n0, g, 1);
        launch(fixed_.mt_gather_groups, blocksFor(K * g * PQ), 256, dy, code(dyt), dyG, code(ct),
               n0, g, K, PQ);
        GemmCall c;
        c.tb = true; // col is [CRS, g*PQ]
        c.m = K;
        c.n = CRS;
        c.k = g * PQ;
        c.batch = 1;
        c.beta = (n0 == 0 && !accumulate) ? 0.0f : 1.0f;
        c.a = dyG;
        c.at = ct;
        c.b = col;
        c.bt = ct;
        c.c = acc;
        c.ct = DType::F32;
        runGemm(gp, c);
      }
      if (viaAcc)
        convert(acc, DType::F32, dw, dwt, K * CRS);
    };
  }
  }
  throw Error("unknown convolution kind");
}

CudaExecutor::Launch CudaExecutor::prepareConvGemm(const plan::Conv2d &k, const ConvGemmConfig &cfg,
                                                   ScratchLayout &sl) {
  auto found = convKernels_.find(cfg.kernelName());
  if (found == convKernels_.end())
    throw Error("internal error: convolution kernel " + cfg.kernelName() + " was not compiled");
  const ConvGemmKernel<cudaKernel_t> kernel{found->second, found->first.c_str()};
  const ConvGemmArgs a = convGemmArgs(k, cfg, tensorRefs());
  if (cfg.nhwc) {
    const ConvNhwcScratch need =
        convNhwcScratch(a, cfg.bn, props_.multiProcessorCount, convBudget_, nhwcBudget_);
    const size_t in0Off = sl.take(need.in0Bytes), in1Off = sl.take(need.in1Bytes);
    const size_t wsOff = need.split.workspaceBytes ? sl.take(need.split.workspaceBytes) : 0;
    return [=] {
      launchConvNhwc(
          fixed_, kernel, fixedLauncher(), [this](long long n) { return blocksFor(n); }, a, cfg,
          need, scratch(in0Off), scratch(in1Off),
          need.split.workspaceBytes ? scratch(wsOff) : nullptr);
    };
  }
  const ConvGemmSplit split = convGemmSplit(a, cfg.bn, props_.multiProcessorCount, convBudget_);
  const size_t wsOff = split.workspaceBytes ? sl.take(split.workspaceBytes) : 0;
  return [=] {
    launchConvGemm(
        fixed_, kernel, fixedLauncher(), [this](long long n) { return blocksFor(n); }, a, split,
        split.workspaceBytes ? scratch(wsOff) : nullptr);
  };
}

CudaExecutor::Launch CudaExecutor::prepareBatchNorm(const plan::BatchNorm &k, ScratchLayout &sl) {
  const BatchNormArgs a = batchNormArgs(k, tensorRefs());
  const ChannelSplit split = channelSplit(a.n, a.hw, vectorKernels_ && batchNormVectorOk(a));
  const size_t partOff = sl.take(batchNormPartialBytes(split, a.c, false));
  const size_t batchMeanOff = sl.take(size_t(a.c) * 8), meanOff = sl.take(size_t(a.c) * 8),
               invOff = sl.take(size_t(a.c) * 8);
  return [=] {
    BatchNormScratch w;
    w.part = reinterpret_cast<double *>(scratch(partOff));
    w.batchMean = reinterpret_cast<double *>(scratch(batchMeanOff));
    w.mean = reinterpret_cast<double *>(scratch(meanOff));
    w.invstd = reinterpret_cast<double *>(scratch(invOff));
    launchBatchNorm(
        fixed_, fixedLauncher(), [this](long long n) { return blocksFor(n); }, a, split, w);
  };
}

CudaExecutor::Launch CudaExecutor::prepareBatchNormBackward(const plan::BatchNormBackward &k,
                                                            ScratchLayout &sl) {
  const BatchNormBackwardArgs a = batchNormBackwardArgs(k, tensorRefs());
  const ChannelSplit split = channelSplit(a.n, a.hw, vectorKernels_ && batchNormVectorOk(a));
  const size_t partOff = sl.take(batchNormPartialBytes(split, a.c, true));
  const size_t meanDyOff = sl.take(size_t(a.c) * 8), meanDyXhatOff = sl.take(size_t(a.c) * 8);
  return [=] {
    BatchNormBackwardScratch w;
    w.part = reinterpret_cast<double *>(scratch(partOff));
    w.meanDy = reinterpret_cast<double *>(scratch(meanDyOff));
    w.meanDyXhat = reinterpret_cast<double *>(scratch(meanDyXhatOff));
    launchBatchNormBackward(
        fixed_, fixedLauncher(), [this](long long n) { return blocksFor(n); }, a, split, w);
  };
}

CudaExecutor::Launch CudaExecutor::prepareReduce(const plan::Reduce &k, ScratchLayout &sl) {
  const ReduceArgs a = reduceArgs(k, tensorRefs());
  const ReduceSplit split = reduceSplit(a.g, a.rcount, a.it, a.in, vectorKernels_);
  const size_t partOff = split.small ? 0 : sl.take(size_t(a.outCount * split.chunks) * 8);
  return [=] {
    double *part = split.small ? nullptr : reinterpret_cast<double *>(scratch(partOff));
    launchReduce(
        fixed_, fixedLauncher(), [this](long long n) { return blocksFor(n); }, a, split, part);
  };
}

CudaExecutor::Launch CudaExecutor::prepareTranspose(const plan::Transpose &k) {
  std::vector<int64_t> inShape(k.in_shape()->begin(), k.in_shape()->end());
  std::vector<int64_t> perm(k.perm()->begin(), k.perm()->end());
  const size_t rank = inShape.size();
  if (rank > size_t(kMaxRank))
    throw Error("transpose: rank " + std::to_string(rank) + " exceeds " + std::to_string(kMaxRank));
  std::vector<int64_t> inStride(rank, 1);
  for (size_t d = rank; d-- > 1;)
    inStride[d - 1] = inStride[d] * inShape[d];
  PermuteGeometry g{};
  g.rank = int64_t(rank);
  long long total = 1;
  for (size_t d = 0; d < rank; ++d) {
    g.outShape[d] = inShape[size_t(perm[d])];
    g.srcStride[d] = inStride[size_t(perm[d])];
    total *= g.outShape[d];
  }
  void *in = ptr(k.input()), *out = ptr(k.output());
  const int it = dcode(k.input()), ot = dcode(k.output());
  return [=] {
    if (total > 0)
      launch(fixed_.mt_transpose, blocksFor(total), 256, in, it, out, ot, total, g);
  };
}

CudaExecutor::Launch CudaExecutor::prepareAllFinite(const plan::AllFinite &k, ScratchLayout &sl) {
  std::vector<FiniteItem> items;
  int64_t maxCount = 0;
  for (int id : *k.inputs()) {
    items.push_back({ptr(id), tensors_[size_t(id)].count, int64_t(dtype(id))});
    maxCount = std::max(maxCount, tensors_[size_t(id)].count);
  }
  FiniteItem *table = uploadTable(items, "all-finite table");
  const size_t flagOff = sl.take(sizeof(int));
  const long long numItems = (long long)items.size();
  void *out = ptr(k.output());
  const int ot = dcode(k.output());
  const void *mult = ptr(k.multiplier()); // null for none
  const int mt = dcode(k.multiplier());
  return [=] {
    int *flag = reinterpret_cast<int *>(scratch(flagOff));
    checkCuda(cudaMemsetAsync(flag, 0, sizeof(int), stream_), "cudaMemsetAsync");
    launchAllFinite(fixed_, fixedLauncher(), table, numItems, maxCount, flag, mult, mt, out, ot);
  };
}

//===--- running ---------------------------------------------------------------------===//

void CudaExecutor::runEager(PreparedFunction &f, const std::string &function) {
  if (profile_ && f.events.empty()) {
    f.events.resize(f.steps.size() + 1);
    for (cudaEvent_t &e : f.events)
      checkCuda(cudaEventCreate(&e), "cudaEventCreate");
    f.stepMs.assign(f.steps.size(), 0.0);
  }
  for (size_t i = 0; i < f.steps.size(); ++i) {
    PreparedStep &step = f.steps[i];
    try {
      if (timer_)
        timer_->mark(uint32_t(i));
      if (profile_ && i == 0)
        checkCuda(cudaEventRecord(f.events[0], stream_), "cudaEventRecord");
      if (i < f.freeSpans.size()) // MANTISSA_CUDA_POISON: 0xff bytes are NaN in every float type
        for (const auto &[begin, end] : f.freeSpans[i])
          checkCuda(cudaMemsetAsync(static_cast<char *>(arena_) + begin, 0xff, size_t(end - begin),
                                    stream_),
                    "cudaMemsetAsync (MANTISSA_CUDA_POISON)");
      step.launch();
      if (profile_)
        checkCuda(cudaEventRecord(f.events[i + 1], stream_), "cudaEventRecord");
      if (syncEachStep_) {
        checkCuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
        checkStatus();
      }
    } catch (const Error &e) {
      throw Error(plan_.name() + ": " + function + " " + step.where + ": " + e.what());
    }
  }
  if (timer_)
    timer_->mark(uint32_t(f.steps.size()));
  if (profile_ && !f.steps.empty()) {
    checkCuda(cudaEventSynchronize(f.events.back()), "cudaEventSynchronize");
    if (f.runs == 0)
      return; // the first run pays for lazy initialisation: not counted
    for (size_t i = 0; i < f.steps.size(); ++i) {
      float ms = 0;
      cudaEventElapsedTime(&ms, f.events[i], f.events[i + 1]);
      f.stepMs[i] += ms;
    }
  }
}

void CudaExecutor::capture(PreparedFunction &f, const std::string &function) {
  auto giveUp = [&](const std::string &why) {
    f.graphFailed = true;
    cudaGetLastError();
    std::fprintf(stderr,
                 "mantissa: CUDA graph capture of %s failed (%s); running it step by step\n",
                 function.c_str(), why.c_str());
  };
  cudaError_t e = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal);
  if (e != cudaSuccess)
    return giveUp(std::string("cudaStreamBeginCapture: ") + cudaGetErrorString(e));
  std::string failure;
  if (cupti_)
    cupti_->beginCapture(f.index);
  for (size_t i = 0; i < f.steps.size(); ++i) {
    PreparedStep &step = f.steps[i];
    try {
      if (cupti_)
        cupti_->captureStep(uint32_t(i));
      step.launch();
    } catch (const std::exception &ex) {
      failure = step.where + ": " + ex.what();
      break;
    }
  }
  // No node tagged: CUPTI did not report the capture's nodes, so no record could be
  // mapped to a step (the graph itself is fine).
  if (cupti_ && cupti_->endCapture() == 0 && failure.empty())
    cuptiFallback("CUPTI reported no graph node while " + function + " was captured");
  cudaGraph_t graph = nullptr;
  e = cudaStreamEndCapture(stream_, &graph);
  if (!failure.empty() || e != cudaSuccess || !graph) {
    if (graph)
      cudaGraphDestroy(graph);
    return giveUp(failure.empty() ? std::string("cudaStreamEndCapture: ") + cudaGetErrorString(e)
                                  : failure);
  }
  e = cudaGraphInstantiate(&f.graph, graph, 0);
  cudaGraphDestroy(graph);
  if (e != cudaSuccess) {
    f.graph = nullptr;
    return giveUp(std::string("cudaGraphInstantiate: ") + cudaGetErrorString(e));
  }
}

void CudaExecutor::run(const std::string &function) {
  auto it = functions_.find(function);
  if (it == functions_.end()) {
    std::string names;
    for (auto &f : functions_)
      names += (names.empty() ? "" : ", ") + f.first;
    throw Error(plan_.name() + ": no function '" + function + "' (the plan has: " + names + ")");
  }
  PreparedFunction &f = it->second;
  if (replays(f) && !f.graph)
    capture(f, function); // may give up on the graph, or on CUPTI
  if (replays(f) && f.graph) {
    if (cupti_)
      cupti_->beforeLaunch(f.index);
    cudaError_t e = cudaGraphLaunch(f.graph, stream_);
    if (cupti_)
      cupti_->afterLaunch();
    checkCuda(e, "cudaGraphLaunch(" + function + ")");
  } else {
    if (timer_)
      timer_->beginRun(f.index, uint32_t(f.steps.size()));
    runEager(f, function);
  }
  ++f.runs;
}

bool CudaExecutor::enableTimeline(bool on) {
  if (!on) {
    timer_.reset();
    cupti_.reset();
    return true;
  }
  const TimelineMode mode = parseTimelineMode(envOr("MANTISSA_TIMELINE", "auto"));
  const TimelinePlan plan = planTimeline(mode, useGraphs_);
  synchronize("enableTimeline");
  cupti_.reset();
  cuptiMissing_ = plan.eventsBecause;
  if (plan.tryCupti) {
    std::string reason;
    cupti_ = CuptiTimeline::open(functions_.size(), reason);
    if (!cupti_)
      cuptiFallback(cuptiFailed(mode, reason)); // throws when CUPTI was demanded
  }
  timer_ = std::make_unique<CudaStepTimer>(stream_);
  if (cupti_)
    // Graphs instantiated before CUPTI listened have no step tags: captured again
    // on their next run.
    for (auto &fn : functions_)
      if (fn.second.graph) {
        cudaGraphExecDestroy(fn.second.graph);
        fn.second.graph = nullptr;
      }
  return true;
}

void CudaExecutor::cuptiFallback(const std::string &reason) {
  cupti_.reset();
  cuptiMissing_ = reason;
  if (!cuptiNoticeGiven_)
    std::fprintf(stderr,
                 "mantissa: energy timeline: CUPTI not used (%s); timing steps with CUDA events "
                 "in eager runs instead (no CUDA graph while measured; MANTISSA_TIMELINE=events "
                 "silences this)\n",
                 reason.c_str());
  cuptiNoticeGiven_ = true;
}

void CudaExecutor::drainTimeline(std::vector<StepSpan> &out) {
  if (timer_)
    timer_->drain(out); // synchronises the stream
  if (!cupti_)
    return;
  synchronize("drainTimeline");
  cupti_->drain(out);
  const FoldStats &st = cupti_->lastStats();
  if (st.missingCount > 0 || st.unknownRun > 0) {
    std::string steps;
    for (const std::string &m : st.missing)
      steps += (steps.empty() ? "" : ", ") + m;
    if (cuptiMissingSteps_ == 0) // once: what a GPU session needs to see why
      std::fprintf(stderr,
                   "mantissa: energy timeline: %zu plan steps of graph runs got no CUPTI record "
                   "(function:step %s); of %zu records, %zu were assigned, %zu matched no run, "
                   "%zu came from nodes of no capture of ours, %zu from eager launches%s; "
                   "CUPTI dropped %zu\n",
                   st.missingCount, steps.c_str(), st.records, st.used, st.unknownRun,
                   st.unknownNode, st.notGraph, st.byOrder ? " (runs matched by order)" : "",
                   cupti_->droppedRecords());
    cuptiMissingSteps_ += st.missingCount + st.unknownRun;
  }
  if (st.overlapped > 0 && !cuptiOverlapSaid_) { // once: the spans were clipped
    std::fprintf(stderr,
                 "mantissa: energy timeline: %zu plan-step spans started on the device "
                 "before the step before them ended (programmatically dependent launches); "
                 "each now starts at that end (%.3f ms cut in this drain)\n",
                 st.overlapped, st.overlapSeconds * 1e3);
    cuptiOverlapSaid_ = true;
  }
}

std::string CudaExecutor::timelineMethod() const {
  if (cupti_)
    return "CUPTI activity records of the device kernels inside the CUDA graph replays (" +
           cupti_->description() + "); each function's first, eager run: CUDA events";
  return "CUDA events between steps, eager launches (no CUDA graph while measured)" +
         (cuptiMissing_.empty() ? std::string() : "; CUPTI not used: " + cuptiMissing_);
}

bool CudaExecutor::replayStep(const std::string &function, uint32_t step, int64_t times) {
  auto it = functions_.find(function);
  if (it == functions_.end() || step >= it->second.steps.size())
    throw Error(plan_.name() + ": no step " + std::to_string(step) + " in '" + function + "'");
  for (int64_t i = 0; i < times; ++i)
    it->second.steps[step].own(); // the step alone, also where it heads a multi-tensor launch
  return true;
}

void CudaExecutor::synchronize(const std::string &what) {
  cudaError_t e = cudaStreamSynchronize(stream_);
  if (e != cudaSuccess)
    throw Error(std::string("CUDA error while running the plan (found at ") + what + "): " +
                cudaGetErrorName(e) + ": " + cudaGetErrorString(e) +
                " (set MANTISSA_CUDA_SYNC=1 to find the step)");
}

void CudaExecutor::checkStatus() {
  // Called after the stream is synchronised: the status word is final.
  int s[4];
  checkCuda(cudaMemcpy(s, status_, sizeof s, cudaMemcpyDeviceToHost), "cudaMemcpy (status)");
  if (s[0] == kStatusOk)
    return;
  checkCuda(cudaMemset(status_, 0, sizeof s), "cudaMemset (status)");
  std::string where = s[1] >= 0 && size_t(s[1]) < sites_.size() ? sites_[size_t(s[1])].where : "?";
  if (s[0] == kStatusBadLabel) {
    float label;
    std::memcpy(&label, &s[3], sizeof label);
    int64_t classes = s[1] >= 0 && size_t(s[1]) < sites_.size() ? sites_[size_t(s[1])].classes : 0;
    throw Error(plan_.name() + ": " + where + ": softmax_cross_entropy: label " +
                std::to_string(double(label)) + " in row " + std::to_string(s[2]) +
                " is not a class index in [0, " + std::to_string(classes) + ")");
  }
  throw Error(plan_.name() + ": " + where + ": kernel reported error code " + std::to_string(s[0]));
}

//===--- host I/O -------------------------------------------------------------------===//

const CudaExecutor::DeviceTensor &CudaExecutor::checkedTensor(int id, size_t n,
                                                               bool wantIndices) const {
  if (id < 0 || size_t(id) >= tensors_.size())
    throw Error("no tensor " + std::to_string(id) + " in " + plan_.name());
  const DeviceTensor &t = tensors_[size_t(id)];
  if (wantIndices && t.dtype != DType::I32)
    throw Error("tensor " + std::to_string(id) + " is not I32: use write");
  if (!wantIndices && t.dtype == DType::I32)
    throw Error("tensor " + std::to_string(id) + " is I32: use writeIndices");
  if (int64_t(n) != t.count)
    throw Error("tensor " + std::to_string(id) + " holds " + std::to_string(t.count) +
                " elements, not " + std::to_string(n));
  return t;
}

CudaExecutor::Staging &CudaExecutor::staging(std::unordered_map<int, Staging> &map, int id,
                                             size_t bytes) {
  Staging &s = map[id];
  if (s.bytes < bytes) {
    if (s.pending)
      checkCuda(cudaEventSynchronize(s.done), "cudaEventSynchronize");
    s.pending = false;
    if (s.host)
      cudaFreeHost(s.host);
    s.host = nullptr;
    s.bytes = 0;
    checkCuda(cudaMallocHost(&s.host, bytes), "cudaMallocHost (" + std::to_string(bytes) + " bytes)");
    s.bytes = bytes;
  }
  if (!s.done)
    checkCuda(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming), "cudaEventCreate");
  return s;
}

CudaExecutor::Staging &CudaExecutor::beginWrite(int id, const DeviceTensor &t) {
  Staging &s = staging(writeStaging_, id, t.bytes);
  // The previous copy out of this buffer must be done before it is overwritten; the
  // host may otherwise run ahead of the GPU by up to a step.
  if (s.pending)
    checkCuda(cudaEventSynchronize(s.done), "cudaEventSynchronize");
  return s;
}

void CudaExecutor::finishWrite(const DeviceTensor &t, Staging &s) {
  checkCuda(cudaMemcpyAsync(t.ptr, s.host, t.bytes, cudaMemcpyHostToDevice, stream_),
            "cudaMemcpyAsync (write '" + t.name + "')");
  checkCuda(cudaEventRecord(s.done, stream_), "cudaEventRecord");
  s.pending = true;
}

void CudaExecutor::store(int id, const float *values, size_t n) {
  const DeviceTensor &t = checkedTensor(id, n, false);
  if (t.bytes == 0)
    return;
  Staging &s = beginWrite(id, t);
  switch (t.dtype) {
  case DType::F16: {
    uint16_t *h = static_cast<uint16_t *>(s.host);
    for (size_t i = 0; i < n; ++i)
      h[i] = floatToHalfBits(values[i]);
    break;
  }
  case DType::BF16: {
    uint16_t *h = static_cast<uint16_t *>(s.host);
    for (size_t i = 0; i < n; ++i)
      h[i] = floatToBF16Bits(values[i]);
    break;
  }
  default:
    std::memcpy(s.host, values, n * sizeof(float));
  }
  finishWrite(t, s);
}

void CudaExecutor::writeIndices(int id, const int32_t *values, size_t n) {
  const DeviceTensor &t = checkedTensor(id, n, true);
  if (t.bytes == 0)
    return;
  Staging &s = beginWrite(id, t);
  std::memcpy(s.host, values, t.bytes);
  finishWrite(t, s);
}

void CudaExecutor::read(int id, float *values, size_t n) {
  const DeviceTensor &t = checkedTensor(id, n, false);
  if (t.bytes == 0) {
    synchronize("read");
    checkStatus();
    return;
  }
  Staging &s = staging(readStaging_, id, t.bytes);
  checkCuda(cudaMemcpyAsync(s.host, t.ptr, t.bytes, cudaMemcpyDeviceToHost, stream_),
            "cudaMemcpyAsync (read '" + t.name + "')");
  synchronize("read of '" + t.name + "'");
  checkStatus();
  switch (t.dtype) {
  case DType::F16: {
    const uint16_t *h = static_cast<const uint16_t *>(s.host);
    for (size_t i = 0; i < n; ++i)
      values[i] = halfBitsToFloat(h[i]);
    break;
  }
  case DType::BF16: {
    const uint16_t *h = static_cast<const uint16_t *>(s.host);
    for (size_t i = 0; i < n; ++i)
      values[i] = bf16BitsToFloat(h[i]);
    break;
  }
  default:
    std::memcpy(values, s.host, n * sizeof(float));
  }
}

} // namespace
} // namespace cuda
} // namespace mantissa

/// The plugin's entry point (see runtime/backend/Executor.h).
extern "C" __attribute__((visibility("default"))) mantissa::Executor *
mantissaCreateCudaExecutor(const mantissa::LoadedPlan *plan, char *error, size_t errorSize) {
  auto fail = [&](const char *message) -> mantissa::Executor * {
    if (error && errorSize > 0) {
      std::strncpy(error, message, errorSize - 1);
      error[errorSize - 1] = '\0';
    }
    return nullptr;
  };
  if (!plan)
    return fail("no plan given");
  try {
    auto exec = std::make_unique<mantissa::cuda::CudaExecutor>(*plan);
    exec->init();
    return exec.release();
  } catch (const std::exception &e) {
    return fail(e.what());
  } catch (...) {
    return fail("unknown error creating the CUDA executor");
  }
}
