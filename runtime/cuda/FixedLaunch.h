//===- FixedLaunch.h - how the fixed kernels of a step are launched --------===//
//
// The launch sequences of the multi-kernel steps (batch norm, its gradient, reduce,
// the implicit-GEMM and NHWC convolutions): which kernels, in which order, on which
// grid, with which arguments, built from the plan's step. They are
// templates over the launcher so that one definition serves the CUDA executor
// (cudaLaunchKernel) and the tests that run the same sequence with the kernels
// compiled for the CPU (test/unit/cuda/HostKernels.h); a wrong argument order or
// grid is then caught without a GPU.
//
// A launcher is called as launch(kernel, Grid, threads, arguments...), where
// `kernel` is a TypedKernel of the table below: the launcher converts each argument
// to exactly the kernel's parameter type. `blocks(n)` gives the grid of a
// grid-stride kernel over n items.
//===----------------------------------------------------------------------===//
#pragma once

#include "common/Error.h"
#include "plan/DType.h"
#include "plan/mantissa_plan_generated.h"
#include "runtime/cuda/ConvKernels.h"
#include "runtime/cuda/CudaKernelSource.h"
#include "runtime/kernels/IterationSpace.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mantissa {
namespace cuda {

/// A fixed kernel with its parameter types (FixedKernels.def); `fn` is the launcher's
/// handle to it (cudaKernel_t in the executor).
template <class Handle, class... P> struct TypedKernel {
  Handle fn{};
  const char *name = "";
};

/// Every fixed kernel, by name.
template <class Handle> struct FixedKernelTable {
#define MANTISSA_FIXED_KERNEL(name, ...) TypedKernel<Handle, __VA_ARGS__> name;
#include "runtime/cuda/FixedKernels.def"
};

struct Grid {
  unsigned x = 1, y = 1, z = 1;
};

/// Whether p is 16-byte aligned (the kernels' vector accesses).
inline bool aligned16(const void *p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

/// The per-channel reductions of a batch norm over m = n * hw values, in blocks of
/// `chunk` values. The 16-byte kernels (`vector`) take 8 values of one plane per
/// access: they need hw % 8 == 0 and 16-byte-aligned activations.
struct ChannelSplit {
  long long chunk = 2048, chunks = 0;
  bool vector = false;
};

inline ChannelSplit channelSplit(long long n, long long hw, bool vectorAllowed) {
  ChannelSplit s;
  const long long m = n * hw;
  s.vector = vectorAllowed && n > 0 && hw > 0 && hw % 8 == 0;
  s.chunk = s.vector ? 16384 : 2048; // a multiple of 8 values x 256 threads
  s.chunks = (m + s.chunk - 1) / s.chunk;
  return s;
}

/// Scratch of a batch norm's statistics: per (channel, chunk) partial sums.
inline size_t batchNormPartialBytes(const ChannelSplit &s, long long c, bool backward) {
  return size_t(c * std::max(1LL, s.chunks)) * (s.vector || backward ? 16 : 8);
}

/// A tensor as the kernels see it: its data and dtype code (null and kF32 for id -1).
struct TensorRef {
  void *data = nullptr;
  int dtype = kF32;
};

struct BatchNormArgs {
  const void *x = nullptr;
  int xt = 0;
  void *y = nullptr;
  int yt = 0;
  const void *gamma = nullptr, *beta = nullptr;
  int gt = 0, bt = 0;
  void *savedMean = nullptr, *savedInvstd = nullptr, *runningMean = nullptr, *runningVar = nullptr;
  int smt = 0, sit = 0, rmt = 0, rvt = 0;
  long long n = 0, c = 0, hw = 0;
  double eps = 1e-5, momentum = 0.1;
  bool training = true;
  bool relu = false; // y = relu(normalised)
  const void *xb = nullptr; // input bias (BatchNorm.input_bias): x is read as x + xb[c]
  int xbt = 0;
};

/// A BatchNorm step's arguments; `ref(id)` gives a TensorRef.
template <class Ref> BatchNormArgs batchNormArgs(const plan::BatchNorm &k, Ref &&ref) {
  BatchNormArgs a;
  const TensorRef x = ref(k.x()), y = ref(k.y()), g = ref(k.gamma()), b = ref(k.beta());
  const TensorRef sm = ref(k.saved_mean()), si = ref(k.saved_invstd());
  const TensorRef rm = ref(k.running_mean()), rv = ref(k.running_var());
  a.x = x.data, a.xt = x.dtype, a.y = y.data, a.yt = y.dtype;
  a.gamma = g.data, a.gt = g.dtype, a.beta = b.data, a.bt = b.dtype;
  a.savedMean = sm.data, a.smt = sm.dtype, a.savedInvstd = si.data, a.sit = si.dtype;
  a.runningMean = rm.data, a.rmt = rm.dtype, a.runningVar = rv.data, a.rvt = rv.dtype;
  a.n = k.n(), a.c = k.c(), a.hw = k.hw();
  a.eps = double(k.eps()), a.momentum = double(k.momentum());
  a.training = k.training();
  a.relu = k.relu();
  const TensorRef xb = ref(k.input_bias()); // null for none
  a.xb = xb.data, a.xbt = xb.dtype;
  return a;
}

/// Whether the activations allow the 16-byte kernels (with channelSplit's hw % 8).
inline bool batchNormVectorOk(const BatchNormArgs &a) {
  return aligned16(a.x) && aligned16(a.y) && a.xt != kI32 && a.yt != kI32;
}

/// Scratch of a batch norm: `part` (batchNormPartialBytes), and c doubles each for the
/// batch mean (scalar path only) and the mean and invstd that normalisation applies.
struct BatchNormScratch {
  double *part = nullptr, *batchMean = nullptr, *mean = nullptr, *invstd = nullptr;
};

template <class Table, class Launch, class Blocks>
void launchBatchNorm(const Table &k, Launch &&launch, Blocks &&blocks, const BatchNormArgs &a,
                     const ChannelSplit &s, const BatchNormScratch &w) {
  const long long m = a.n * a.hw, total = a.n * a.c * a.hw;
  if (a.c == 0)
    return;
  const Grid perChannel{unsigned(std::max(1LL, s.chunks)),
                        unsigned(std::min<long long>(a.c, 65535))};
  if (!a.training) {
    launch(k.mt_bn_eval_params, Grid{blocks(a.c)}, 256, a.runningMean, a.rmt, a.runningVar, a.rvt,
           a.c, a.eps, w.mean, w.invstd);
  } else if (s.vector) {
    launch(k.mt_bn_stats8, perChannel, 256, a.x, a.xt, a.n, a.c, a.hw, s.chunk, s.chunks, w.part,
           a.xb, a.xbt);
    launch(k.mt_bn_finalize8, Grid{blocks(a.c)}, 256, w.part, s.chunks, a.c, m, a.hw, a.x, a.xt,
           a.eps, a.momentum, a.savedMean, a.smt, a.savedInvstd, a.sit, a.runningMean, a.rmt,
           a.runningVar, a.rvt, w.mean, w.invstd, a.xb, a.xbt);
  } else {
    const long long chunks = std::max(1LL, s.chunks);
    const double *noMean = nullptr;
    launch(k.mt_bn_partial, perChannel, 256, a.x, a.xt, a.n, a.c, a.hw, s.chunk, chunks, noMean,
           w.part, a.xb, a.xbt);
    launch(k.mt_bn_mean, Grid{blocks(a.c)}, 256, w.part, chunks, a.c, m, w.batchMean);
    launch(k.mt_bn_partial, perChannel, 256, a.x, a.xt, a.n, a.c, a.hw, s.chunk, chunks,
           w.batchMean, w.part, a.xb, a.xbt);
    launch(k.mt_bn_finalize, Grid{blocks(a.c)}, 256, w.part, chunks, a.c, m, a.eps, a.momentum,
           w.batchMean, a.savedMean, a.smt, a.savedInvstd, a.sit, a.runningMean, a.rmt,
           a.runningVar, a.rvt, w.mean, w.invstd);
  }
  if (total == 0)
    return;
  if (s.vector)
    launch(k.mt_bn_apply8, Grid{blocks(total / 8)}, 256, a.x, a.xt, a.y, a.yt, a.n, a.c, a.hw,
           w.mean, w.invstd, a.gamma, a.gt, a.beta, a.bt, a.relu ? 1 : 0, a.xb, a.xbt);
  else
    launch(k.mt_bn_apply, Grid{blocks(total)}, 256, a.x, a.xt, a.y, a.yt, a.n, a.c, a.hw, w.mean,
           w.invstd, a.gamma, a.gt, a.beta, a.bt, a.relu ? 1 : 0, a.xb, a.xbt);
}

struct BatchNormBackwardArgs {
  const void *dy = nullptr, *x = nullptr, *gamma = nullptr, *savedMean = nullptr,
             *savedInvstd = nullptr;
  int dyt = 0, xt = 0, gt = 0, smt = 0, sit = 0;
  void *dx = nullptr, *dgamma = nullptr, *dbeta = nullptr;
  int dxt = 0, dgt = 0, dbt = 0;
  long long n = 0, c = 0, hw = 0;
  const void *mask = nullptr; // a folded relu_grad: the relu's result
  int mt = 0;
  const void *xb = nullptr; // input bias (BatchNormBackward.input_bias)
  int xbt = 0;
};

template <class Ref>
BatchNormBackwardArgs batchNormBackwardArgs(const plan::BatchNormBackward &k, Ref &&ref) {
  BatchNormBackwardArgs a;
  const TensorRef dy = ref(k.dy()), x = ref(k.x()), g = ref(k.gamma());
  const TensorRef sm = ref(k.saved_mean()), si = ref(k.saved_invstd());
  const TensorRef dx = ref(k.dx()), dg = ref(k.dgamma()), db = ref(k.dbeta());
  a.dy = dy.data, a.dyt = dy.dtype, a.x = x.data, a.xt = x.dtype, a.gamma = g.data, a.gt = g.dtype;
  a.savedMean = sm.data, a.smt = sm.dtype, a.savedInvstd = si.data, a.sit = si.dtype;
  a.dx = dx.data, a.dxt = dx.dtype, a.dgamma = dg.data, a.dgt = dg.dtype, a.dbeta = db.data,
  a.dbt = db.dtype;
  a.n = k.n(), a.c = k.c(), a.hw = k.hw();
  const TensorRef m = ref(k.mask()), xb = ref(k.input_bias()); // null for none
  a.mask = m.data, a.mt = m.dtype, a.xb = xb.data, a.xbt = xb.dtype;
  return a;
}

inline bool batchNormVectorOk(const BatchNormBackwardArgs &a) {
  return aligned16(a.dy) && aligned16(a.x) && (!a.dx || aligned16(a.dx)) &&
         (!a.mask || aligned16(a.mask)) && a.dyt != kI32 && a.xt != kI32 && a.dxt != kI32 &&
         a.mt != kI32;
}

/// Scratch: `part` (batchNormPartialBytes(.., true)) and c doubles each for mean(dy) and
/// mean(dy * xhat).
struct BatchNormBackwardScratch {
  double *part = nullptr, *meanDy = nullptr, *meanDyXhat = nullptr;
};

template <class Table, class Launch, class Blocks>
void launchBatchNormBackward(const Table &k, Launch &&launch, Blocks &&blocks,
                             const BatchNormBackwardArgs &a, const ChannelSplit &s,
                             const BatchNormBackwardScratch &w) {
  const long long m = a.n * a.hw, total = a.n * a.c * a.hw;
  if (a.c == 0)
    return;
  const Grid perChannel{unsigned(std::max(1LL, s.chunks)),
                        unsigned(std::min<long long>(a.c, 65535))};
  if (s.chunks > 0) {
    if (s.vector)
      launch(k.mt_bnb_partial8, perChannel, 256, a.dy, a.dyt, a.x, a.xt, a.n, a.c, a.hw, s.chunk,
             s.chunks, a.savedMean, a.smt, a.savedInvstd, a.sit, w.part, a.mask, a.mt, a.xb, a.xbt);
    else
      launch(k.mt_bnb_partial, perChannel, 256, a.dy, a.dyt, a.x, a.xt, a.n, a.c, a.hw, s.chunk,
             s.chunks, a.savedMean, a.smt, a.savedInvstd, a.sit, w.part, a.mask, a.mt, a.xb, a.xbt);
  }
  launch(k.mt_bnb_finalize, Grid{blocks(a.c)}, 256, w.part, s.chunks, a.c, m, a.dgamma, a.dgt,
         a.dbeta, a.dbt, w.meanDy, w.meanDyXhat);
  if (!a.dx || total == 0)
    return;
  if (s.vector)
    launch(k.mt_bnb_dx8, Grid{blocks(total / 8)}, 256, a.dy, a.dyt, a.x, a.xt, a.gamma, a.gt,
           a.savedMean, a.smt, a.savedInvstd, a.sit, w.meanDy, w.meanDyXhat, a.dx, a.dxt, a.n, a.c,
           a.hw, a.mask, a.mt, a.xb, a.xbt);
  else
    launch(k.mt_bnb_dx, Grid{blocks(total)}, 256, a.dy, a.dyt, a.x, a.xt, a.gamma, a.gt,
           a.savedMean, a.smt, a.savedInvstd, a.sit, w.meanDy, w.meanDyXhat, a.dx, a.dxt, a.n, a.c,
           a.hw, a.mask, a.mt, a.xb, a.xbt);
}

/// A reduction of rcount values into each of outCount outputs. Up to 2048 values an
/// output is summed by eight threads, their sums added in a fixed order
/// (mt_reduce_small); beyond, in chunks by blocks
/// (partial sums), with 16-byte loads when the innermost reduced dimension is
/// contiguous, every stride and that dimension's size are multiples of 8, and the
/// input is aligned.
struct ReduceSplit {
  bool small = true, vector = false;
  long long chunk = 2048, chunks = 0;
};

inline ReduceSplit reduceSplit(const ReduceGeometry &g, long long rcount, int inType,
                               const void *in, bool vectorAllowed) {
  ReduceSplit s;
  s.small = rcount <= 2048;
  if (s.small)
    return s;
  bool v = vectorAllowed && inType != kI32 && aligned16(in) && g.numReduced > 0 &&
           g.reducedStride[0] == 1 && g.reducedSize[0] % 8 == 0;
  for (int d = 0; v && d < g.numKept; ++d)
    v = g.keptStride[d] % 8 == 0;
  for (int d = 1; v && d < g.numReduced; ++d)
    v = g.reducedStride[d] % 8 == 0;
  s.vector = v;
  s.chunk = v ? 16384 : 2048;
  s.chunks = (rcount + s.chunk - 1) / s.chunk;
  return s;
}

struct ReduceArgs {
  const void *in = nullptr;
  int it = 0;
  void *out = nullptr;
  int ot = 0;
  long long outCount = 0, rcount = 0;
  ReduceGeometry g{};
  double scale = 1.0;
};

/// A Reduce step's arguments: kept and reduced dimensions (innermost first) collapsed
/// as the CPU collapses them.
template <class Ref> ReduceArgs reduceArgs(const plan::Reduce &k, Ref &&ref) {
  std::vector<int64_t> inShape(k.in_shape()->begin(), k.in_shape()->end());
  std::vector<int64_t> outShape(k.out_shape()->begin(), k.out_shape()->end());
  const kernels::ReductionSpace space = kernels::collapseReduction(inShape, outShape);
  if (space.kept.size() > size_t(kMaxRank) || space.reduced.size() > size_t(kMaxRank))
    throw Error("reduce: more than " + std::to_string(kMaxRank) +
                " alternating kept/reduced dimensions");
  ReduceArgs a;
  a.g.numKept = int32_t(space.kept.size());
  a.g.numReduced = int32_t(space.reduced.size());
  for (size_t i = 0; i < space.kept.size(); ++i) {
    a.g.keptSize[i] = space.kept[i].size;
    a.g.keptStride[i] = space.kept[i].stride;
  }
  for (size_t i = 0; i < space.reduced.size(); ++i) {
    a.g.reducedSize[i] = space.reduced[i].size;
    a.g.reducedStride[i] = space.reduced[i].stride;
  }
  a.scale = k.mean() ? 1.0 / double(space.reducedCount) : 1.0;
  const TensorRef in = ref(k.input()), out = ref(k.output());
  a.in = in.data, a.it = in.dtype, a.out = out.data, a.ot = out.dtype;
  a.outCount = space.outCount;
  a.rcount = space.reducedCount;
  return a;
}

/// Scratch: outCount * chunks doubles (none on the small path).
template <class Table, class Launch, class Blocks>
void launchReduce(const Table &k, Launch &&launch, Blocks &&blocks, const ReduceArgs &a,
                  const ReduceSplit &s, double *part) {
  if (a.outCount == 0)
    return;
  if (s.small) {
    // 32 outputs per block (mt_reduce_small).
    launch(k.mt_reduce_small, Grid{blocks((a.outCount + 31) / 32 * 256)}, 256, a.in, a.it, a.out,
           a.ot, a.outCount, a.rcount, a.g, a.scale);
    return;
  }
  const Grid grid{unsigned(std::min<long long>(a.outCount * s.chunks, 1LL << 20))};
  if (s.vector)
    launch(k.mt_reduce_partial8, grid, 256, a.in, a.it, a.outCount, a.rcount, s.chunk, s.chunks,
           a.g, part);
  else
    launch(k.mt_reduce_partial, grid, 256, a.in, a.it, a.outCount, a.rcount, s.chunk, s.chunks, a.g,
           part);
  launch(k.mt_reduce_finalize, Grid{blocks(a.outCount)}, 256, part, a.outCount, s.chunks, a.scale,
         a.out, a.ot);
}

/// The all-finite check of `numItems` tensors (a FiniteItem table where the kernel can
/// read it), `maxCount` the most elements one has: one block row per tensor (at most
/// 65535 rows a launch), each element times *mult where mult is not null, into *flag
/// (zeroed by the caller); then 1 or 0 into `out`.
template <class Table, class Launch>
void launchAllFinite(const Table &k, Launch &&launch, const FiniteItem *items, long long numItems,
                     long long maxCount, int *flag, const void *mult, int mt, void *out, int ot) {
  const unsigned blocksX = unsigned(std::clamp<long long>((maxCount + 255) / 256, 1, 1024));
  for (long long first = 0; first < numItems; first += 65535) {
    const unsigned count = unsigned(std::min<long long>(65535, numItems - first));
    launch(k.mt_allfinite, Grid{blocksX, count}, 256, items + first, flag, mult, mt);
  }
  launch(k.mt_allfinite_out, Grid{1}, 32, flag, out, ot);
}

struct MaxPoolBackwardArgs {
  TensorRef dy, x, y, dx;
  long long planes = 0, h = 0, w = 0, oh = 0, ow = 0, kernel = 0, stride = 0;
};

template <class Ref>
MaxPoolBackwardArgs maxPoolBackwardArgs(const plan::MaxPool2dBackward &k, Ref &&ref) {
  MaxPoolBackwardArgs a{ref(k.dy()), ref(k.x()), ref(k.y()), ref(k.dx())};
  a.planes = k.n() * k.c();
  a.h = k.h();
  a.w = k.w();
  a.kernel = k.kernel();
  a.stride = k.stride();
  a.oh = (a.h - a.kernel) / a.stride + 1;
  a.ow = (a.w - a.kernel) / a.stride + 1;
  return a;
}

/// Max pooling's gradient: one thread per window where the windows tile the plane
/// (mt_maxpool_bwd_tiles), else one per dx element gathering over its windows.
template <class Table, class Launch, class Blocks>
void launchMaxPoolBackward(const Table &k, Launch &&launch, Blocks &&blocks,
                           const MaxPoolBackwardArgs &a) {
  if (a.planes * a.h * a.w == 0)
    return;
  if (a.stride == a.kernel) {
    const long long tiles =
        a.planes * ((a.h + a.kernel - 1) / a.kernel) * ((a.w + a.kernel - 1) / a.kernel);
    launch(k.mt_maxpool_bwd_tiles, Grid{blocks(tiles)}, 256, a.dy.data, a.dy.dtype, a.x.data,
           a.x.dtype, a.y.data, a.y.dtype, a.dx.data, a.dx.dtype, a.planes, a.h, a.w, a.oh, a.ow,
           a.kernel);
    return;
  }
  launch(k.mt_maxpool_bwd, Grid{blocks(a.planes * a.h * a.w)}, 256, a.dy.data, a.dy.dtype, a.x.data,
         a.x.dtype, a.y.data, a.y.dtype, a.dx.data, a.dx.dtype, a.planes, a.h, a.w, a.oh, a.ow,
         a.kernel, a.stride);
}

/// Rows copied from one tensor into another (Concat: each input's rows into its columns
/// of the output; Slice: columns of the input): out[r * outRow + outOffset + j] =
/// in[r * inRow + inOffset + j] for r < outer, j < rowLen, in elements.
struct CopyRowsArgs {
  TensorRef in, out;
  long long outer = 0, rowLen = 0, inRow = 0, inOffset = 0, outRow = 0, outOffset = 0;
};

/// One CopyRowsArgs per input of a concatenation.
template <class Ref> std::vector<CopyRowsArgs> concatArgs(const plan::Concat &k, Ref &&ref) {
  std::vector<CopyRowsArgs> pieces;
  const TensorRef out = ref(k.output());
  long long outRow = 0;
  for (flatbuffers::uoffset_t i = 0; i < k.row_sizes()->size(); ++i)
    outRow += k.row_sizes()->Get(i);
  long long offset = 0;
  for (flatbuffers::uoffset_t i = 0; i < k.inputs()->size(); ++i) {
    const long long rs = k.row_sizes()->Get(i);
    const TensorRef in = ref(k.inputs()->Get(i));
    pieces.push_back({in, out, k.outer(), rs, rs, 0, outRow, offset});
    offset += rs;
  }
  return pieces;
}

template <class Ref> CopyRowsArgs sliceArgs(const plan::Slice &k, Ref &&ref) {
  const TensorRef in = ref(k.input()), out = ref(k.output());
  return {in, out, k.outer(), k.out_row(), k.in_row(), k.offset(), k.out_row(), 0};
}

/// 16-byte vectors where the types agree and every pointer, row start and length is a
/// whole number of them (mt_copy_rows16), else one element at a time with conversion.
template <class Table, class Launch, class Blocks>
void launchCopyRows(const Table &k, Launch &&launch, Blocks &&blocks, const CopyRowsArgs &a) {
  if (a.outer * a.rowLen == 0)
    return;
  const long long eb = dtypeBytes(plan::DType(a.in.dtype));
  auto whole = [&](long long elements) { return elements * eb % 16 == 0; };
  if (a.in.dtype == a.out.dtype && aligned16(a.in.data) && aligned16(a.out.data) &&
      whole(a.rowLen) && whole(a.inRow) && whole(a.inOffset) && whole(a.outRow) &&
      whole(a.outOffset)) {
    const long long v = 16 / eb; // elements per vector
    launch(k.mt_copy_rows16, Grid{blocks(a.outer * a.rowLen / v)}, 256, a.in.data, a.out.data,
           a.outer, a.rowLen / v, a.inRow / v, a.inOffset / v, a.outRow / v, a.outOffset / v);
    return;
  }
  launch(k.mt_copy_rows, Grid{blocks(a.outer * a.rowLen)}, 256, a.in.data, a.in.dtype, a.out.data,
         a.out.dtype, a.outer, a.rowLen, a.inRow, a.inOffset, a.outRow, a.outOffset);
}

/// An implicit-GEMM convolution kernel (ConvKernels.h): all share one signature.
template <class Handle>
using ConvGemmKernel = TypedKernel<Handle, const void *, const void *, void *, int, int, int, int,
                                   int, int, int, int, int, int, int, int>;

struct ConvGemmArgs {
  ConvGemmMode mode = ConvGemmMode::Forward;
  const void *in0 = nullptr, *in1 = nullptr;
  void *out = nullptr;
  int outType = kF32, accumulate = 0;
  int n = 0, c = 0, h = 0, w = 0, k = 0, r = 0, s = 0, sh = 1, sw = 1, ph = 0, pw = 0, p = 0, q = 0;
};

template <class Ref>
ConvGemmArgs convGemmArgs(const plan::Conv2d &k, const ConvGemmConfig &cfg, Ref &&ref) {
  ConvGemmArgs a;
  a.mode = cfg.mode;
  const TensorRef x = ref(k.in0()), w = ref(k.in1()), y = ref(k.out());
  a.in0 = x.data, a.in1 = w.data, a.out = y.data, a.outType = y.dtype;
  a.accumulate = k.accumulate() ? 1 : 0;
  a.n = int(k.n()), a.c = int(k.c()), a.h = int(k.h()), a.w = int(k.w()), a.k = int(k.k());
  a.r = int(k.r()), a.s = int(k.s()), a.sh = int(k.stride_h()), a.sw = int(k.stride_w());
  a.ph = int(k.pad_h()), a.pw = int(k.pad_w());
  a.p = (a.h + 2 * a.ph - a.r) / a.sh + 1;
  a.q = (a.w + 2 * a.pw - a.s) / a.sw + 1;
  return a;
}

/// The grid, and for the weight gradient the split of the reduction over pixels into
/// fp32 partials (`workspaceBytes` of scratch) so that the grid fills `sms`
/// multiprocessors: a 3x3 convolution of 32 channels has only 3 x 1 output tiles but
/// millions of pixels.
struct ConvGemmSplit {
  Grid grid;
  int splits = 1, kTilesPerSplit = 0;
  size_t workspaceBytes = 0;
};

inline ConvGemmSplit convGemmSplit(const ConvGemmArgs &a, int bn, int sms, size_t budget) {
  auto tiles = [](long long n, long long t) { return unsigned((n + t - 1) / t); };
  ConvGemmSplit s;
  if (a.mode != ConvGemmMode::BackwardWeight) {
    const bool fwd = a.mode == ConvGemmMode::Forward;
    s.grid = Grid{tiles(fwd ? (long long)a.n * a.p * a.q : (long long)a.n * a.h * a.w, kConvTileM),
                  tiles(fwd ? a.k : a.c, bn)};
    return s;
  }
  const long long M = (long long)a.c * a.r * a.s,
                  numK = tiles((long long)a.n * a.p * a.q, kConvTileK);
  const long long outTiles = (long long)tiles(M, kConvTileM) * tiles(a.k, bn);
  const long long target = 4LL * sms;
  long long splits = std::max(1LL, std::min(numK, (target + outTiles - 1) / outTiles));
  const long long perSplitBytes = (long long)a.k * M * 4;
  splits = std::max(1LL, std::min(splits, (long long)budget / std::max(1LL, perSplitBytes)));
  splits = std::min(splits, 65535LL);
  const int kPer = int((numK + splits - 1) / splits);
  splits = (numK + kPer - 1) / kPer;
  s.splits = int(splits);
  s.kTilesPerSplit = kPer;
  s.workspaceBytes = size_t(splits * perSplitBytes);
  s.grid = Grid{tiles(M, kConvTileM), tiles(a.k, bn), unsigned(splits)};
  return s;
}

/// `workspace`: ConvGemmSplit::workspaceBytes of scratch (the weight gradient's partials).
template <class Table, class Handle, class Launch, class Blocks>
void launchConvGemm(const Table &fixed, const ConvGemmKernel<Handle> &kernel, Launch &&launch,
                    Blocks &&blocks, const ConvGemmArgs &a, const ConvGemmSplit &s,
                    void *workspace) {
  if (a.mode != ConvGemmMode::BackwardWeight) {
    launch(kernel, s.grid, kConvThreads, a.in0, a.in1, a.out, a.outType, a.accumulate, a.n, a.c,
           a.h, a.w, a.k, a.p, a.q, a.ph, a.pw, 0);
    return;
  }
  const long long count = (long long)a.k * a.c * a.r * a.s;
  launch(kernel, s.grid, kConvThreads, a.in0, a.in1, workspace, int(kF32), 0, a.n, a.c, a.h, a.w,
         a.k, a.p, a.q, a.ph, a.pw, s.kTilesPerSplit);
  launch(fixed.mt_conv_wsum, Grid{blocks(count)}, 256, workspace, s.splits, count, a.out, a.outType,
         a.accumulate);
}

/// The NHWC convolution's scratch: its two operands rearranged (forward and input
/// gradient: the activations in NHWC and the weights; weight gradient: x and dy in
/// NHWC) and the weight gradient's partials. The activations go through in chunks of
/// `chunk` samples, so that their NHWC copies take at most the budget (one sample at
/// least): on unet w32 L4 b16 384^2, whole batches took 0.46 GB of scratch for the
/// largest weight gradient.
struct ConvNhwcScratch {
  size_t in0Bytes = 0, in1Bytes = 0;
  int chunk = 0, chunks = 1; // samples per chunk, and how many chunks
  ConvGemmSplit split;       // the weight gradient's: per chunk (grid, kTilesPerSplit); the
                             // partials of all chunks (splits, workspaceBytes)
};

/// The weight gradient's split of the reduction for `n` samples, kTilesPerSplit `kPer`.
inline int convSplitsFor(const ConvGemmArgs &a, int n, int kPer) {
  const long long numK = ((long long)n * a.p * a.q + kConvTileK - 1) / kConvTileK;
  return int((numK + kPer - 1) / kPer);
}

inline ConvNhwcScratch convNhwcScratch(const ConvGemmArgs &a, int bn, int sms, size_t budget,
                                       size_t nhwcBudget = SIZE_MAX) {
  ConvNhwcScratch s;
  const size_t x = size_t(a.c) * a.h * a.w * 2, dy = size_t(a.k) * a.p * a.q * 2,
               w = size_t(a.k) * a.c * a.r * a.s * 2; // x and dy per sample
  const size_t perSample = a.mode == ConvGemmMode::Forward         ? x
                           : a.mode == ConvGemmMode::BackwardInput ? dy
                                                                   : x + dy;
  s.chunk = int(std::clamp<size_t>(nhwcBudget / perSample, 1, size_t(std::max(a.n, 1))));
  s.chunks = (a.n + s.chunk - 1) / s.chunk;
  switch (a.mode) {
  case ConvGemmMode::Forward:
    s.in0Bytes = s.chunk * x, s.in1Bytes = w;
    break;
  case ConvGemmMode::BackwardInput:
    s.in0Bytes = s.chunk * dy, s.in1Bytes = w;
    break;
  case ConvGemmMode::BackwardWeight: {
    s.in0Bytes = s.chunk * x, s.in1Bytes = s.chunk * dy;
    // Each chunk's launch fills the GPU as a whole batch would; the partials of all
    // chunks share the budget, and are summed in one fixed order.
    ConvGemmArgs c = a;
    c.n = s.chunk;
    s.split = convGemmSplit(c, bn, sms, std::max<size_t>(budget / size_t(s.chunks), 1));
    const int kPer = s.split.kTilesPerSplit, last = a.n - (s.chunks - 1) * s.chunk;
    s.split.splits = (s.chunks - 1) * s.split.splits + convSplitsFor(a, last, kPer);
    s.split.workspaceBytes = size_t(s.split.splits) * size_t(a.k) * a.c * a.r * a.s * 4;
    break;
  }
  }
  return s;
}

/// ConvGemmConfig::nhwc. Forward: x to NHWC, w to [k][r][s][c], one forward
/// convolution. Input gradient (stride 1): dy to NHWC, w flipped to [c][r'][s'][k], the
/// forward convolution of dy with it and padding R-1-pad. Weight gradient: x and dy to
/// NHWC, the split GEMM into fp32 partials, then their sum into dw. The activations
/// go through in chunks of samples (ConvNhwcScratch::chunk).
template <class Table, class Handle, class Launch, class Blocks>
void launchConvNhwc(const Table &fixed, const ConvGemmKernel<Handle> &kernel, Launch &&launch,
                    Blocks &&blocks, const ConvGemmArgs &a, const ConvGemmConfig &cfg,
                    const ConvNhwcScratch &s, void *in0, void *in1, void *workspace) {
  const int bn = cfg.bn, threads = cfg.threads();
  auto tiles = [](long long n, long long t) { return unsigned((n + t - 1) / t); };
  auto toNhwc = [&](const void *from, void *to, int n, int channels, long long hw) {
    launch(fixed.mt_nchw_to_nhwc16,
           Grid{tiles(hw, 32), tiles(channels, 32), unsigned(std::min(n, 65535))}, 256, from, to,
           (long long)n, (long long)channels, hw);
  };
  // Sample n0 of a 16-bit NCHW input, or of the output (its own type).
  auto at = [](const void *p, long long elements, int type) {
    return static_cast<const char *>(p) + elements * (type == kF32 || type == kI32 ? 4 : 2);
  };
  const long long wCount = (long long)a.k * a.c * a.r * a.s;
  const long long hw = (long long)a.h * a.w, pq = (long long)a.p * a.q;
  switch (a.mode) {
  case ConvGemmMode::Forward:
    launch(fixed.mt_weight_krsc16, Grid{blocks(wCount)}, 256, a.in1, in1, (long long)a.k,
           (long long)a.c, (long long)a.r * a.s);
    for (int n0 = 0; n0 < a.n; n0 += s.chunk) {
      const int n = std::min(s.chunk, a.n - n0);
      toNhwc(at(a.in0, (long long)n0 * a.c * hw, kF16), in0, n, a.c, hw);
      launch(kernel, Grid{tiles(n * pq, kConvTileM), tiles(a.k, bn)}, threads, in0, in1,
             const_cast<char *>(at(a.out, (long long)n0 * a.k * pq, a.outType)), a.outType,
             a.accumulate, n, a.c, a.h, a.w, a.k, a.p, a.q, a.ph, a.pw, 0);
    }
    return;
  case ConvGemmMode::BackwardInput:
    // dx = the forward convolution of dy [n][k][p][q] with the flipped weights.
    launch(fixed.mt_weight_flip16, Grid{blocks(wCount)}, 256, a.in1, in1, (long long)a.k,
           (long long)a.c, (long long)a.r, (long long)a.s);
    for (int n0 = 0; n0 < a.n; n0 += s.chunk) {
      const int n = std::min(s.chunk, a.n - n0);
      toNhwc(at(a.in0, (long long)n0 * a.k * pq, kF16), in0, n, a.k, pq);
      launch(kernel, Grid{tiles(n * hw, kConvTileM), tiles(a.c, bn)}, threads, in0, in1,
             const_cast<char *>(at(a.out, (long long)n0 * a.c * hw, a.outType)), a.outType,
             a.accumulate, n, a.k, a.p, a.q, a.c, a.h, a.w, a.r - 1 - a.ph, a.s - 1 - a.pw, 0);
    }
    return;
  case ConvGemmMode::BackwardWeight: {
    const int kPer = s.split.kTilesPerSplit;
    int split0 = 0; // the chunk's first partial
    for (int n0 = 0; n0 < a.n; n0 += s.chunk) {
      const int n = std::min(s.chunk, a.n - n0), splits = convSplitsFor(a, n, kPer);
      toNhwc(at(a.in0, (long long)n0 * a.c * hw, kF16), in0, n, a.c, hw);
      toNhwc(at(a.in1, (long long)n0 * a.k * pq, kF16), in1, n, a.k, pq);
      Grid grid = s.split.grid;
      grid.z = unsigned(splits);
      launch(kernel, grid, threads, in0, in1,
             const_cast<char *>(at(workspace, (long long)split0 * wCount, kF32)), int(kF32), 0, n,
             a.c, a.h, a.w, a.k, a.p, a.q, a.ph, a.pw, kPer);
      split0 += splits;
    }
    launch(fixed.mt_conv_wsum_rsc, Grid{blocks(wCount)}, 256, workspace, s.split.splits,
           (long long)a.k, (long long)a.c, (long long)a.r * a.s, a.out, a.outType, a.accumulate);
    return;
  }
  }
}

} // namespace cuda
} // namespace mantissa
