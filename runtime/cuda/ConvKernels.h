//===- ConvKernels.h - implicit-GEMM convolutions on tensor cores ---------===//
//
// fp16/bf16 convolutions without an im2col matrix: each kernel gathers its operand
// tiles straight from the NCHW tensors into shared memory and multiplies them with
// mma.sync (m16n8k16, fp32 accumulation), so a 3x3 convolution reads its input once
// from DRAM instead of writing and reading a 9x larger column matrix. The three
// products of a convolution are three GEMMs over the same tensors:
//
//   forward         y[n,k,p,q]  = sum_{c,r,s} x[n,c,h(p,r),w(q,s)] w[k,c,r,s]
//                   M = N*P*Q pixels, N = K, reduction C*R*S
//   backward input  dx[n,c,h,w] = sum_{k,r,s} dy[n,k,p(h,r),q(w,s)] w[k,c,r,s]
//                   M = N*H*W pixels, N = C, reduction K*R*S (only the (p, q) that
//                   the stride reaches contribute)
//   backward weight dw[k,c,r,s] = sum_{n,p,q} x[n,c,h(p,r),w(q,s)] dy[n,k,p,q]
//                   M = C*R*S, N = K, reduction N*P*Q, split over blocks into fp32
//                   partials that a second kernel adds up in a fixed order
//                   (deterministic: no floating-point atomics)
//
// The kernel size and stride are template parameters (the index arithmetic then
// divides by constants); everything else is a run-time argument. Results agree with
// the CPU oracle up to the order of the fp32 sums (inputs are exact fp16/bf16, the
// products exact in fp32, one rounding to the output type at the end, as the CPU's
// fp32 GEMM then rounding does).
//===----------------------------------------------------------------------===//
#pragma once

#include "plan/mantissa_plan_generated.h"

#include <optional>
#include <string>
#include <vector>

namespace mantissa {
namespace cuda {

enum class ConvGemmMode { Forward = 0, BackwardInput = 1, BackwardWeight = 2 };

/// One kernel instantiation: what is compiled.
struct ConvGemmConfig {
  ConvGemmMode mode = ConvGemmMode::Forward;
  plan::DType dtype = plan::DType::F16; // both operands
  int bn = 64;                          // output-channel tile (32 or 64)
  int r = 3, s = 3, sh = 1, sw = 1;
  /// The NHWC kernel (the CUDA backend's default where it applies): the activations transposed to
  /// NHWC and the weights to [k][r][s][c] (for the input gradient, flipped to
  /// [c][r][s][k]) first, then a forward convolution whose operand tiles arrive by
  /// 16-byte cp.async through a three-stage shared-memory pipeline. Needs the
  /// reduction's channels in multiples of 32 and, for the input gradient, stride 1.
  bool nhwc = false;
  /// NHWC kernels only: 8 warps in a 4 x 2 grid of 32 x bn/2 warp tiles whose fragments
  /// are 32-bit shared loads (the default), or 4 warps in a 2 x 2 grid of 64 x bn/2 warp
  /// tiles whose fragments arrive by ldmatrix: twice the mma per warp and per fragment
  /// load, a fifth or less of the shared-memory load instructions per mma, and loaders
  /// that advance the tile's (r, s, c) and pixels instead of dividing. The same block
  /// tile, grid and results (the same products summed in the same order per output).
  int warps = 8;
  int threads() const { return 32 * warps; }
  std::string kernelName() const;
  bool operator<(const ConvGemmConfig &o) const { return kernelName() < o.kernelName(); }
};

/// The instantiation a convolution step uses, or nothing when it stays on the im2col +
/// cuBLAS path: fp32 operands, mixed operand types, or sizes past 32-bit indexing.
std::optional<ConvGemmConfig> convGemmConfigFor(const plan::Plan &plan, const plan::Conv2d &conv);

/// The NHWC kernel for this convolution, where it applies (see ConvGemmConfig::nhwc).
std::optional<ConvGemmConfig> convNhwcConfigFor(const plan::Plan &plan, const plan::Conv2d &conv);

/// The 4-warp NHWC kernel (ConvGemmConfig::warps) for this convolution, where the NHWC
/// kernel applies.
std::optional<ConvGemmConfig> convNhwcWideConfigFor(const plan::Plan &plan,
                                                    const plan::Conv2d &conv);

/// Every implicit-GEMM kernel this convolution may run (compiled into the plan).
std::vector<ConvGemmConfig> convGemmConfigsFor(const plan::Plan &plan, const plan::Conv2d &conv);

/// CUDA C++ (after cudaPrelude()) defining the kernels of `configs` (the partial sums
/// of the backward weight are added by the fixed kernel mt_conv_wsum). Parameters:
///   (const void *in0, const void *in1, void *out, int outType, int accumulate,
///    int n, int c, int h, int w, int k, int p, int q, int padH, int padW,
///    int kTilesPerSplit)
std::string convGemmSource(const std::vector<ConvGemmConfig> &configs);

/// The tile sizes the source is written for (the host computes grids with them).
inline constexpr int kConvTileM = 128;
inline constexpr int kConvTileK = 32;
inline constexpr int kConvThreads = 256;

} // namespace cuda
} // namespace mantissa
