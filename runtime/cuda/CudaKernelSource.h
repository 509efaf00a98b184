//===- CudaKernelSource.h - CUDA C++ source of the executor's kernels ------===//
//
// Every kernel of the CUDA executor is CUDA C++ text compiled with NVRTC, ahead of
// time by `mantissa compile --arch` into the plan (AotKernels.h), or, for a plan
// compiled with --arch none, when the executor is created:
//
//  - the elementwise kernels are generated per plan anyway (one per distinct program
//    of the plan), so the fixed kernels (im2col, pooling, batch norm, losses,
//    reductions, data movement) take the same path: one compiler (NVRTC), one loader
//    (cudaLibraryLoadData), one place where a compile error is reported, and no nvcc
//    at build time (the plugin is built with g++ on a machine without a GPU);
//  - the source is self-contained: fp16/bf16 are declared here with PTX `cvt`
//    conversions (the same instructions cuda_fp16.h uses), so NVRTC needs no include
//    path and the result does not depend on which toolkit headers a machine has.
//
// The structs below are passed by value to kernels; their layout is declared twice,
// here for the host and in the prelude for the device, and must stay identical
// (only 8-byte and 4-byte members, in an order with no padding surprises).
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>

namespace mantissa {
namespace cuda {

/// Dtype codes passed to the fixed kernels (the values of plan::DType).
enum : int { kF32 = 0, kF16 = 1, kBF16 = 2, kI32 = 3 };

/// The highest rank the fixed reduce/transpose kernels handle (after collapsing).
constexpr int kMaxRank = 8;

/// Reduce: kept and reduced dimensions, innermost first, with their input strides.
struct ReduceGeometry {
  int32_t numKept, numReduced;
  int64_t keptSize[kMaxRank], keptStride[kMaxRank];
  int64_t reducedSize[kMaxRank], reducedStride[kMaxRank];
};
static_assert(sizeof(ReduceGeometry) == 8 + 4 * 8 * kMaxRank, "layout shared with the device");

/// Transpose: the output shape and, per output dimension, the input stride.
struct PermuteGeometry {
  int64_t rank;
  int64_t outShape[kMaxRank], srcStride[kMaxRank];
};
static_assert(sizeof(PermuteGeometry) == 8 + 2 * 8 * kMaxRank, "layout shared with the device");

/// One tensor checked by AllFinite.
struct FiniteItem {
  const void *data;
  int64_t count;
  int64_t dtype;
};
static_assert(sizeof(FiniteItem) == 24, "layout shared with the device");

/// One step of a multi-tensor elementwise launch (ElementwiseKernel::multiName): its
/// inputs' then outputs' data, and its element count.
constexpr int kElementwiseItemPointers = 14;
struct ElementwiseItem {
  void *p[kElementwiseItemPointers];
  int64_t n;
};
static_assert(sizeof(ElementwiseItem) == 8 * 15, "layout shared with the device");

/// Codes a kernel writes into the executor's status word (status[0]); status[1] is the
/// site (the step), status[2] and status[3] details.
enum : int { kStatusOk = 0, kStatusBadLabel = 1 };

/// Types, fp16/bf16 conversions and dtype-dispatched loads/stores shared by every
/// translation unit (fixed and generated).
const char *cudaPrelude();

/// The fixed kernels (extern "C", names starting with mt_); compiled after the prelude.
const char *fixedKernelSource();

/// The names of the fixed kernels, for lookup after loading.
const char *const *fixedKernelNames(int *count);

} // namespace cuda
} // namespace mantissa
