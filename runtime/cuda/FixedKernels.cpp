//===- FixedKernels.cpp - CUDA C++ of the executor's fixed kernels --------===//
//
// Compiled by NVRTC at executor creation (see CudaKernelSource.h for why). Each
// kernel mirrors one CPU kernel of runtime/kernels (the oracle); the comments name
// where the order of operations is kept identical so that results agree closely
// (bit-exactly where the CPU sums sequentially in the same order). Sums of many
// values are in double, in a fixed order (per-block partials, then one ordered pass):
// deterministic, no floating-point atomics.
//
// Conventions: every kernel takes `long long` sizes, `int` dtype codes (kF32...),
// `const void *` / `void *` data; 1-D kernels use grid-stride loops so that any grid
// size is correct; kernels that use mt_block_sum are launched with 256 threads.
//===----------------------------------------------------------------------===//
#include "runtime/cuda/CudaKernelSource.h"

namespace mantissa {
namespace cuda {

const char *cudaPrelude() {
  return R"MTSRC(
// ---- Mantissa CUDA prelude: fp16/bf16 without cuda_fp16.h (NVRTC needs no -I) ----
struct __align__(2) __half { unsigned short x; };
struct __align__(2) __nv_bfloat16 { unsigned short x; };
// 16 bytes moved by one vector access (ld/st.global.v4.u32).
struct __align__(16) mt_u4 { unsigned x, y, z, w; };
// MT_HOST_EMULATION: the kernels compiled by a host C++ compiler, for tests that run
// them on the CPU (test/unit/cuda/HostKernels.h); NVRTC never defines it.
static __device__ __forceinline__ __half __float2half_rn(float f) {
  __half h;
#ifndef MT_HOST_EMULATION
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.x) : "f"(f));
#else
  h.x = mt_host_float_to_half(f);
#endif
  return h;
}
static __device__ __forceinline__ float __half2float(__half h) {
  float f;
#ifndef MT_HOST_EMULATION
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.x));
#else
  f = mt_host_half_to_float(h.x);
#endif
  return f;
}
static __device__ __forceinline__ __nv_bfloat16 __float2bfloat16_rn(float f) {
  __nv_bfloat16 h;
#ifndef MT_HOST_EMULATION
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h.x) : "f"(f));
#else
  h.x = mt_host_float_to_bf16(f);
#endif
  return h;
}
static __device__ __forceinline__ float __bfloat162float(__nv_bfloat16 h) {
  return __uint_as_float(((unsigned)h.x) << 16);
}
// Dtype codes: the values of plan::DType.
#define MT_F32 0
#define MT_F16 1
#define MT_BF16 2
#define MT_I32 3
static __device__ __forceinline__ float mt_load(const void *p, int t, long long i) {
  if (t == MT_F16) return __half2float(((const __half *)p)[i]);
  if (t == MT_BF16) return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
  if (t == MT_I32) return (float)((const int *)p)[i]; // class labels
  return ((const float *)p)[i];
}
// Stores round to nearest even (fp16: overflow to inf, subnormals kept).
static __device__ __forceinline__ void mt_store(void *p, int t, long long i, float v) {
  if (t == MT_F16) ((__half *)p)[i] = __float2half_rn(v);
  else if (t == MT_BF16) ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);
  else ((float *)p)[i] = v;
}
#define MT_MAX_RANK 8
struct MtReduceGeo {
  int nk, nr;
  long long ks[MT_MAX_RANK], kst[MT_MAX_RANK], rs[MT_MAX_RANK], rst[MT_MAX_RANK];
};
struct MtPermGeo { long long rank; long long shape[MT_MAX_RANK], stride[MT_MAX_RANK]; };
struct MtFiniteItem { const void *data; long long count; long long dtype; };
struct mt_ew_item { void *p[14]; long long n; }; // ElementwiseItem
#define MT_GRID_STRIDE(i, n) \
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
       i += (long long)gridDim.x * blockDim.x)
)MTSRC";
}

const char *fixedKernelSource() {
  return R"MTSRC(
// ---- Mantissa fixed kernels ----

// Non-negative 64-bit quotient and remainder, with the (much cheaper) 32-bit division
// whenever both operands fit, which is nearly always.
static __device__ __forceinline__ long long mt_div(long long a, long long b) {
  if ((((unsigned long long)a) | ((unsigned long long)b)) <= 0xffffffffull)
    return (long long)((unsigned)a / (unsigned)b);
  return a / b;
}
static __device__ __forceinline__ long long mt_mod(long long a, long long b) {
  return a - mt_div(a, b) * b;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024) in a fixed order;
// the result is valid in thread 0. May be called repeatedly in one kernel.
static __device__ double mt_block_sum(double v) {
  __shared__ double sh[32];
  __syncthreads(); // a previous call's readers are done with sh
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  v = (threadIdx.x < warps) ? sh[threadIdx.x] : 0.0;
  if (warp == 0)
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

// Both sums over the block into out[0] and out[1] (by thread 0).
static __device__ void mt_block_sum2(double s1, double s2, double *out) {
  s1 = mt_block_sum(s1);
  s2 = mt_block_sum(s2);
  if (threadIdx.x == 0) {
    out[0] = s1;
    out[1] = s2;
  }
}

static __device__ __forceinline__ void mt_report(int *status, int code, int site, int a, int b) {
  if (atomicCAS(status, 0, code) == 0) {
    status[1] = site;
    status[2] = a;
    status[3] = b;
  }
}

// ---- conversions and fills ----

extern "C" __global__ void mt_convert(const void *in, int it, void *out, int ot, long long n) {
  MT_GRID_STRIDE(i, n) mt_store(out, ot, i, mt_load(in, it, i));
}

// C = beta * C (a GEMM with k = 0; beta = 0 is a memset on the host side).
extern "C" __global__ void mt_scale(void *p, int t, long long n, float beta) {
  MT_GRID_STRIDE(i, n) mt_store(p, t, i, beta * mt_load(p, t, i));
}

// A GEMM's epilogue where cuBLASLt offers none (or MANTISSA_CUDA_EPILOGUE=0): the fp32
// product [rows, cols] plus bias[col], then relu (the elementwise Relu's rule: NaN
// stays), rounded once to c's type, as Gemm.bias / Gemm.relu define it.
extern "C" __global__ void mt_bias_act(const float *acc, void *c, int ct, const void *bias, int bt,
                                       long long rows, long long cols, int relu) {
  MT_GRID_STRIDE(i, rows * cols) {
    float v = acc[i] + mt_load(bias, bt, i % cols);
    if (relu) v = v > 0.0f ? v : (v != v ? v : 0.0f);
    mt_store(c, ct, i, v);
  }
}

// ---- convolution: im2col / col2im around cuBLAS ----
//
// layout 0: col[g][c][r][s][p][q]   (one [CRS, PQ] matrix per sample: strided-batched GEMM)
// layout 1: col[c][r][s][g][p][q]   (one [CRS, G*PQ] matrix: backward-weight GEMM over G samples)
// One thread per (g, c, p, q) writes all R*S column entries of that output position:
// the index arithmetic is paid once per position, and for each (r, s) consecutive q
// (threads) write consecutive addresses.
#define MT_IM2COL(NAME, IX)                                                                     \
extern "C" __global__ void NAME(const void *x, int xt, void *col, int ct, long long n0,         \
                                long long G_, long long C_, long long H_, long long W_,          \
                                long long R_, long long S_, long long P_, long long Q_,          \
                                long long sh_, long long sw_, long long ph_, long long pw_,     \
                                int layout) {                                                   \
  const IX G = (IX)G_, C = (IX)C_, H = (IX)H_, W = (IX)W_, R = (IX)R_, S = (IX)S_, P = (IX)P_,  \
           Q = (IX)Q_, sh = (IX)sh_, sw = (IX)sw_, ph = (IX)ph_, pw = (IX)pw_;                  \
  const IX PQ = P * Q, positions = G * C * PQ;                                                  \
  for (IX e = (IX)blockIdx.x * (IX)blockDim.x + (IX)threadIdx.x; e < positions;                 \
       e += (IX)gridDim.x * (IX)blockDim.x) {                                                   \
    IX t = e;                                                                                   \
    const IX q = t % Q; t /= Q;                                                                 \
    const IX p = t % P; t /= P;                                                                 \
    const IX c = t % C; const IX g = t / C;                                                     \
    const IX pq = p * Q + q;                                                                    \
    /* layout 0: ((g*C + c)*RS + rs)*PQ + pq; layout 1: ((c*RS + rs)*G + g)*PQ + pq */          \
    IX out = layout == 0 ? (g * C + c) * R * S * PQ + pq : c * R * S * G * PQ + g * PQ + pq;   \
    const IX step = layout == 0 ? PQ : G * PQ;                                                  \
    const long long plane = (long long)(((IX)n0 + g) * C + c) * H * W;                          \
    for (IX r = 0; r < R; ++r) {                                                                \
      const IX ih = p * sh + r - ph;                                                            \
      const bool rowIn = ih >= 0 && ih < H;                                                     \
      for (IX s = 0; s < S; ++s, out += step) {                                                 \
        const IX iw = q * sw + s - pw;                                                          \
        float v = 0.0f;                                                                         \
        if (rowIn && iw >= 0 && iw < W) v = mt_load(x, xt, plane + (long long)ih * W + iw);     \
        mt_store(col, ct, (long long)out, v);                                                   \
      }                                                                                         \
    }                                                                                           \
  }                                                                                             \
}
MT_IM2COL(mt_im2col_i32, int)
MT_IM2COL(mt_im2col_i64, long long)

// dx[n0+g, c, h, w] = (accumulate ? dx : 0) + the column entries that read it, summed
// for r, then s, ascending: the order in which the CPU's col2im adds them. col is
// fp32, layout 0. A gather: each dx element is written by one thread, no atomics.
#define MT_COL2IM(NAME, IX)                                                                     \
extern "C" __global__ void NAME(const float *col, void *dx, int dt, long long n0,               \
                                long long G_, long long C_, long long H_, long long W_,         \
                                long long R_, long long S_, long long P_, long long Q_,         \
                                long long sh_, long long sw_, long long ph_, long long pw_,    \
                                int accumulate) {                                              \
  const IX G = (IX)G_, C = (IX)C_, H = (IX)H_, W = (IX)W_, R = (IX)R_, S = (IX)S_, P = (IX)P_, \
           Q = (IX)Q_, sh = (IX)sh_, sw = (IX)sw_, ph = (IX)ph_, pw = (IX)pw_;                 \
  const IX total = G * C * H * W;                                                              \
  for (IX e = (IX)blockIdx.x * (IX)blockDim.x + (IX)threadIdx.x; e < total;                    \
       e += (IX)gridDim.x * (IX)blockDim.x) {                                                  \
    IX t = e;                                                                                  \
    const IX w = t % W; t /= W;                                                                \
    const IX h = t % H; t /= H;                                                                \
    const IX c = t % C; const IX g = t / C;                                                    \
    const long long dxIndex = (long long)(n0 * C) * H * W + (long long)e;                     \
    float acc = accumulate ? mt_load(dx, dt, dxIndex) : 0.0f;                                 \
    for (IX r = 0; r < R; ++r) {                                                               \
      const IX ih = h + ph - r;                                                                \
      if (ih < 0 || (sh != 1 && ih % sh != 0)) continue;                                       \
      const IX p = sh == 1 ? ih : ih / sh;                                                     \
      if (p >= P) continue;                                                                    \
      for (IX s = 0; s < S; ++s) {                                                             \
        const IX iw = w + pw - s;                                                              \
        if (iw < 0 || (sw != 1 && iw % sw != 0)) continue;                                     \
        const IX q = sw == 1 ? iw : iw / sw;                                                   \
        if (q >= Q) continue;                                                                  \
        acc += col[(long long)(((g * C + c) * R + r) * S + s) * (P * Q) + p * Q + q];         \
      }                                                                                        \
    }                                                                                          \
    mt_store(dx, dt, dxIndex, acc);                                                            \
  }                                                                                            \
}
MT_COL2IM(mt_col2im_i32, int)
MT_COL2IM(mt_col2im_i64, long long)

// dst[k][g*PQ + j] = dy[n0+g, k, j]: a group's dy as one [K, G*PQ] matrix (backward weight).
extern "C" __global__ void mt_gather_groups(const void *dy, int dyt, void *dst, int dstt,
                                            long long n0, long long G, long long K, long long PQ) {
  MT_GRID_STRIDE(e, K * G * PQ) {
    const long long t = mt_div(e, PQ), j = e - t * PQ, k = mt_div(t, G), g = t - k * G;
    mt_store(dst, dstt, e, mt_load(dy, dyt, ((n0 + g) * K + k) * PQ + j));
  }
}

// ---- max pooling ----

// PyTorch's CPU loop: start at -inf with the window's first index; a larger value or a
// NaN takes over (so the last NaN of a window wins, as on the CPU).
extern "C" __global__ void mt_maxpool_fwd(const void *x, int xt, void *y, int yt, int *indices,
                                          long long planes, long long H, long long W,
                                          long long OH, long long OW, long long kernel,
                                          long long stride) {
  MT_GRID_STRIDE(e, planes * OH * OW) {
    const long long t = mt_div(e, OW), j = e - t * OW, pl = mt_div(t, OH), i = t - pl * OH;
    const long long h0 = i * stride, w0 = j * stride;
    const long long base = pl * H * W;
    float best = -__int_as_float(0x7f800000);
    long long bestIndex = h0 * W + w0;
    for (long long r = 0; r < kernel; ++r)
      for (long long s = 0; s < kernel; ++s) {
        const long long index = (h0 + r) * W + (w0 + s);
        const float v = mt_load(x, xt, base + index);
        if (v > best || isnan(v)) {
          best = v;
          bestIndex = index;
        }
      }
    mt_store(y, yt, e, best);
    if (indices) indices[e] = (int)bestIndex;
  }
}

// The window's argmax found again from x and y (the forward's pick): the last NaN if y
// is NaN, else the first element equal to y; the window's first if none is.
__device__ long long mt_pool_argmax(const void *x, int xt, long long base, long long W,
                                    long long h0, long long w0, long long kernel, float y) {
  const bool nan = isnan(y);
  long long found = -1;
  for (long long r = 0; r < kernel; ++r)
    for (long long s = 0; s < kernel; ++s) {
      const long long index = (h0 + r) * W + (w0 + s);
      const float v = mt_load(x, xt, base + index);
      if (nan ? isnan(v) : found < 0 && v == y) found = index;
    }
  return found >= 0 ? found : h0 * W + w0;
}

// dx = 0, then dx[plane][argmax(o)] += dy[o] for o ascending: a gather over the windows
// that contain each dx element, visited in ascending o, so the float sums are the CPU's.
extern "C" __global__ void mt_maxpool_bwd(const void *dy, int dyt, const void *x, int xt,
                                          const void *y, int yt, void *dx, int dxt,
                                          long long planes, long long H, long long W,
                                          long long OH, long long OW, long long kernel,
                                          long long stride) {
  MT_GRID_STRIDE(e, planes * H * W) {
    const long long t = mt_div(e, W), w = e - t * W, pl = mt_div(t, H), h = t - pl * H;
    const long long target = h * W + w;
    const long long iLo = h - kernel + 1 <= 0 ? 0 : mt_div(h - kernel + 1 + stride - 1, stride);
    const long long jLo = w - kernel + 1 <= 0 ? 0 : mt_div(w - kernel + 1 + stride - 1, stride);
    const long long iHi = min(OH - 1, mt_div(h, stride)), jHi = min(OW - 1, mt_div(w, stride));
    float acc = 0.0f;
    for (long long i = iLo; i <= iHi; ++i)
      for (long long j = jLo; j <= jHi; ++j) {
        const long long o = (pl * OH + i) * OW + j;
        if (mt_pool_argmax(x, xt, pl * H * W, W, i * stride, j * stride, kernel,
                           mt_load(y, yt, o)) == target)
          acc += mt_load(dy, dyt, o);
      }
    mt_store(dx, dxt, e, acc);
  }
}

// The same gradient where windows tile the plane (stride == kernel, as a U-Net's 2x2
// pooling): each dx element lies in at most one window, so one thread per window finds
// its argmax once and writes all kernel^2 elements (0 + dy, as mt_maxpool_bwd's sum, at
// the argmax; 0 elsewhere). Windows past OH/OW (to ceil(H/kernel), ceil(W/kernel))
// write the rows and columns no window covers: zeros.
extern "C" __global__ void mt_maxpool_bwd_tiles(const void *dy, int dyt, const void *x, int xt,
                                                const void *y, int yt, void *dx, int dxt,
                                                long long planes, long long H, long long W,
                                                long long OH, long long OW, long long kernel) {
  const long long TH = (H + kernel - 1) / kernel, TW = (W + kernel - 1) / kernel;
  MT_GRID_STRIDE(e, planes * TH * TW) {
    const long long t = mt_div(e, TW), j = e - t * TW, pl = mt_div(t, TH), i = t - pl * TH;
    const long long base = pl * H * W, h0 = i * kernel, w0 = j * kernel;
    long long target = -1;
    float g = 0.0f;
    if (i < OH && j < OW) {
      const long long o = (pl * OH + i) * OW + j;
      target = mt_pool_argmax(x, xt, base, W, h0, w0, kernel, mt_load(y, yt, o));
      g = 0.0f + mt_load(dy, dyt, o);
    }
    for (long long r = 0; r < kernel && h0 + r < H; ++r)
      for (long long s = 0; s < kernel && w0 + s < W; ++s) {
        const long long index = (h0 + r) * W + (w0 + s);
        mt_store(dx, dxt, base + index, index == target ? g : 0.0f);
      }
  }
}

// ---- batch normalisation ----
//
// Per channel ch, the m = n*hw values x[(i*c + ch)*hw + t] are split into `chunks`
// consecutive ranges of `chunk` values; block (b, ch) sums range b in double into
// partial[ch*chunks + b] (partial[2*(ch*chunks + b) + {0,1}] for two sums).

// v rounded to type t, as a store of it would round (mt_store).
static __device__ __forceinline__ float mt_round_as(float v, int t) {
  if (t == MT_F16) return __half2float(__float2half_rn(v));
  if (t == MT_BF16) return __bfloat162float(__float2bfloat16_rn(v));
  return v;
}

// Element i of channel ch of a batch norm's x; with an input bias xb (the folded bias
// add of the convolution that stored x without it), x + xb[ch] rounded to x's type,
// the value that bias add would have stored.
static __device__ __forceinline__ float mt_bn_x(const void *x, int xt, long long i,
                                                const void *xb, int xbt, long long ch) {
  const float v = mt_load(x, xt, i);
  return xb ? mt_round_as(v + mt_load(xb, xbt, ch), xt) : v;
}

// mean == 0: sum of x; else sum of (x - mean[ch])^2 (the CPU's two passes).
extern "C" __global__ void mt_bn_partial(const void *x, int xt, long long n, long long c,
                                         long long hw, long long chunk, long long chunks,
                                         const double *mean, double *partial, const void *xb,
                                         int xbt) {
  const long long m = n * hw;
  for (long long ch = blockIdx.y; ch < c; ch += gridDim.y) {
    const long long b = blockIdx.x;
    const long long j0 = b * chunk, j1 = min(m, j0 + chunk);
    const double mu = mean ? mean[ch] : 0.0;
    double s = 0.0;
    for (long long j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
      const long long i = mt_div(j, hw), t = j - i * hw;
      double v = (double)mt_bn_x(x, xt, (i * c + ch) * hw + t, xb, xbt, ch);
      if (mean) {
        v -= mu;
        v *= v;
      }
      s += v;
    }
    s = mt_block_sum(s);
    if (threadIdx.x == 0) partial[ch * chunks + b] = s;
  }
}

extern "C" __global__ void mt_bn_mean(const double *partial, long long chunks, long long c,
                                      long long m, double *mean) {
  MT_GRID_STRIDE(ch, c) {
    double s = 0.0;
    for (long long b = 0; b < chunks; ++b) s += partial[ch * chunks + b];
    mean[ch] = s / (double)m;
  }
}

// Saved statistics, running statistics (unbiased variance, PyTorch's momentum), and the
// (float-rounded) mean and invstd that normalisation uses, as the CPU does.
static __device__ void mt_bn_finish(long long ch, long long m, double mean, double var,
                                    double eps, double momentum, void *savedMean, int smt,
                                    void *savedInvstd, int sit, void *runningMean, int rmt,
                                    void *runningVar, int rvt, double *applyMean,
                                    double *applyInvstd) {
  const float meanF = (float)mean;
  const float invstdF = (float)(1.0 / sqrt(var + eps));
  if (savedMean) mt_store(savedMean, smt, ch, meanF);
  if (savedInvstd) mt_store(savedInvstd, sit, ch, invstdF);
  applyMean[ch] = (double)meanF;
  applyInvstd[ch] = (double)invstdF;
  const double unbiased = var * (double)m / (double)(m - 1);
  if (runningMean)
    mt_store(runningMean, rmt, ch,
             (float)((1.0 - momentum) * (double)mt_load(runningMean, rmt, ch) + momentum * mean));
  if (runningVar)
    mt_store(runningVar, rvt, ch,
             (float)((1.0 - momentum) * (double)mt_load(runningVar, rvt, ch) + momentum * unbiased));
}

extern "C" __global__ void mt_bn_finalize(const double *partialSq, long long chunks, long long c,
                                          long long m, double eps, double momentum,
                                          const double *mean, void *savedMean, int smt,
                                          void *savedInvstd, int sit, void *runningMean, int rmt,
                                          void *runningVar, int rvt, double *applyMean,
                                          double *applyInvstd) {
  MT_GRID_STRIDE(ch, c) {
    double sq = 0.0;
    for (long long b = 0; b < chunks; ++b) sq += partialSq[ch * chunks + b];
    mt_bn_finish(ch, m, mean[ch], sq / (double)m, eps, momentum, savedMean, smt, savedInvstd,
                 sit, runningMean, rmt, runningVar, rvt, applyMean, applyInvstd);
  }
}

extern "C" __global__ void mt_bn_eval_params(const void *runningMean, int rmt,
                                             const void *runningVar, int rvt, long long c,
                                             double eps, double *mean, double *invstd) {
  MT_GRID_STRIDE(ch, c) {
    mean[ch] = (double)mt_load(runningMean, rmt, ch);
    invstd[ch] = 1.0 / sqrt((double)mt_load(runningVar, rvt, ch) + eps);
  }
}

// y = (x - mean) * invstd * gamma + beta, in double as on the CPU. gamma/beta may be null.
// relu: the elementwise Relu's rule (NaN stays) before the rounding, with which it
// commutes.
static __device__ __forceinline__ float mt_bn_relu(float v, int relu) {
  return relu ? (v > 0.0f ? v : (v != v ? v : 0.0f)) : v;
}

extern "C" __global__ void mt_bn_apply(const void *x, int xt, void *y, int yt, long long n,
                                       long long c, long long hw, const double *mean,
                                       const double *invstd, const void *gamma, int gt,
                                       const void *beta, int bt, int relu, const void *xb,
                                       int xbt) {
  MT_GRID_STRIDE(e, n * c * hw) {
    const long long ch = mt_mod(mt_div(e, hw), c);
    const double g = gamma ? (double)mt_load(gamma, gt, ch) : 1.0;
    const double b = beta ? (double)mt_load(beta, bt, ch) : 0.0;
    const double v = ((double)mt_bn_x(x, xt, e, xb, xbt, ch) - mean[ch]) * invstd[ch] * g + b;
    mt_store(y, yt, e, mt_bn_relu((float)v, relu));
  }
}

// The gradient that flows into a batch norm's backward: dy, or with a folded relu_grad
// (mask: the relu's result) mask > 0 ? dy : 0.
static __device__ __forceinline__ float mt_bnb_grad(float g, const void *mask, int mt,
                                                    long long i) {
  return mask && !(mt_load(mask, mt, i) > 0.0f) ? 0.0f : g;
}

// Backward partials: sum dy and sum dy * (x - mean) * invstd.
extern "C" __global__ void mt_bnb_partial(const void *dy, int dyt, const void *x, int xt,
                                          long long n, long long c, long long hw, long long chunk,
                                          long long chunks, const void *savedMean, int smt,
                                          const void *savedInvstd, int sit, double *partial,
                                          const void *mask, int mt, const void *xb, int xbt) {
  const long long m = n * hw;
  for (long long ch = blockIdx.y; ch < c; ch += gridDim.y) {
    const long long b = blockIdx.x;
    const long long j0 = b * chunk, j1 = min(m, j0 + chunk);
    const double mean = (double)mt_load(savedMean, smt, ch);
    const double invstd = (double)mt_load(savedInvstd, sit, ch);
    double s1 = 0.0, s2 = 0.0;
    for (long long j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
      const long long i = mt_div(j, hw), t = j - i * hw, idx = (i * c + ch) * hw + t;
      const double g = (double)mt_bnb_grad(mt_load(dy, dyt, idx), mask, mt, idx);
      s1 += g;
      s2 += g * ((double)mt_bn_x(x, xt, idx, xb, xbt, ch) - mean) * invstd;
    }
    mt_block_sum2(s1, s2, partial + 2 * (ch * chunks + b));
  }
}

extern "C" __global__ void mt_bnb_finalize(const double *partial, long long chunks, long long c,
                                           long long m, void *dgamma, int dgt, void *dbeta,
                                           int dbt, double *meanDy, double *meanDyXhat) {
  MT_GRID_STRIDE(ch, c) {
    double s1 = 0.0, s2 = 0.0;
    for (long long b = 0; b < chunks; ++b) {
      s1 += partial[2 * (ch * chunks + b)];
      s2 += partial[2 * (ch * chunks + b) + 1];
    }
    if (dbeta) mt_store(dbeta, dbt, ch, (float)s1);
    if (dgamma) mt_store(dgamma, dgt, ch, (float)s2);
    meanDy[ch] = s1 / (double)m;
    meanDyXhat[ch] = s2 / (double)m;
  }
}

// dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)).
extern "C" __global__ void mt_bnb_dx(const void *dy, int dyt, const void *x, int xt,
                                     const void *gamma, int gt, const void *savedMean, int smt,
                                     const void *savedInvstd, int sit, const double *meanDy,
                                     const double *meanDyXhat, void *dx, int dxt, long long n,
                                     long long c, long long hw, const void *mask, int mt,
                                     const void *xb, int xbt) {
  MT_GRID_STRIDE(e, n * c * hw) {
    const long long ch = mt_mod(mt_div(e, hw), c);
    const double mean = (double)mt_load(savedMean, smt, ch);
    const double invstd = (double)mt_load(savedInvstd, sit, ch);
    const double scale = (gamma ? (double)mt_load(gamma, gt, ch) : 1.0) * invstd;
    const double xhat = ((double)mt_bn_x(x, xt, e, xb, xbt, ch) - mean) * invstd;
    const double d = scale * ((double)mt_bnb_grad(mt_load(dy, dyt, e), mask, mt, e) - meanDy[ch] -
                              xhat * meanDyXhat[ch]);
    mt_store(dx, dxt, e, (float)d);
  }
}

// ---- batch norm, 16-byte path (hw % 8 == 0, every activation 16-byte aligned) ----
//
// Eight consecutive elements of one (sample, channel) plane per access. Statistics in
// one pass: sums of d = x - shift and d * d in double, shift = the channel's first
// element (so that the variance E[d^2] - E[d]^2 does not cancel); the normalisation
// and the gradient use the same double expressions as the kernels above.

// Eight elements of a float, half or bfloat16 tensor from element i (a multiple of 8).
static __device__ __forceinline__ void mt_load8(const void *p, int t, long long i, float *v) {
  if (t == MT_F32) {
    const mt_u4 a = ((const mt_u4 *)((const float *)p + i))[0];
    const mt_u4 b = ((const mt_u4 *)((const float *)p + i))[1];
    const unsigned w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
    for (int u = 0; u < 8; ++u) v[u] = __uint_as_float(w[u]);
    return;
  }
  const mt_u4 a = *(const mt_u4 *)((const unsigned short *)p + i);
  const unsigned w[4] = {a.x, a.y, a.z, a.w};
  for (int u = 0; u < 4; ++u) {
    const unsigned short lo = (unsigned short)(w[u] & 0xffffu), hi = (unsigned short)(w[u] >> 16);
    if (t == MT_F16) {
      __half h;
      h.x = lo;
      v[2 * u] = __half2float(h);
      h.x = hi;
      v[2 * u + 1] = __half2float(h);
    } else {
      v[2 * u] = __uint_as_float((unsigned)lo << 16);
      v[2 * u + 1] = __uint_as_float((unsigned)hi << 16);
    }
  }
}

static __device__ __forceinline__ void mt_store8(void *p, int t, long long i, const float *v) {
  if (t == MT_F32) {
    mt_u4 a, b;
    a.x = __float_as_uint(v[0]); a.y = __float_as_uint(v[1]);
    a.z = __float_as_uint(v[2]); a.w = __float_as_uint(v[3]);
    b.x = __float_as_uint(v[4]); b.y = __float_as_uint(v[5]);
    b.z = __float_as_uint(v[6]); b.w = __float_as_uint(v[7]);
    ((mt_u4 *)((float *)p + i))[0] = a;
    ((mt_u4 *)((float *)p + i))[1] = b;
    return;
  }
  unsigned w[4];
  for (int u = 0; u < 4; ++u) {
    unsigned lo, hi;
    if (t == MT_F16) {
      lo = __float2half_rn(v[2 * u]).x;
      hi = __float2half_rn(v[2 * u + 1]).x;
    } else {
      lo = __float2bfloat16_rn(v[2 * u]).x;
      hi = __float2bfloat16_rn(v[2 * u + 1]).x;
    }
    w[u] = lo | (hi << 16);
  }
  mt_u4 a;
  a.x = w[0]; a.y = w[1]; a.z = w[2]; a.w = w[3];
  *(mt_u4 *)((unsigned short *)p + i) = a;
}

// Block (b, ch): the channel's values j in [b * chunk, min(m, (b + 1) * chunk)) with
// j = sample * hw + pixel; chunk is a multiple of 8 * blockDim.x. partial[ch][b] =
// {sum d, sum d^2}.
// mt_bn_x on eight elements of channel ch from i (a multiple of 8).
static __device__ __forceinline__ void mt_bn_x8(const void *x, int xt, long long i, const void *xb,
                                                int xbt, long long ch, float *v) {
  mt_load8(x, xt, i, v);
  if (!xb) return;
  const float b = mt_load(xb, xbt, ch);
  for (int u = 0; u < 8; ++u) v[u] = mt_round_as(v[u] + b, xt);
}

extern "C" __global__ void mt_bn_stats8(const void *x, int xt, long long n, long long c,
                                        long long hw, long long chunk, long long chunks,
                                        double *partial, const void *xb, int xbt) {
  const long long m = n * hw;
  for (long long ch = blockIdx.y; ch < c; ch += gridDim.y) {
    const long long b = blockIdx.x;
    const long long j1 = min(m, (b + 1) * chunk);
    const double shift = (double)mt_bn_x(x, xt, ch * hw, xb, xbt, ch);
    double s1 = 0.0, s2 = 0.0;
    for (long long j = b * chunk + 8 * (long long)threadIdx.x; j < j1; j += 8 * (long long)blockDim.x) {
      const long long i = mt_div(j, hw);
      float v[8];
      mt_bn_x8(x, xt, (i * c + ch) * hw + (j - i * hw), xb, xbt, ch, v);
      for (int u = 0; u < 8; ++u) {
        const double d = (double)v[u] - shift;
        s1 += d;
        s2 += d * d;
      }
    }
    mt_block_sum2(s1, s2, partial + 2 * (ch * chunks + b));
  }
}

extern "C" __global__ void mt_bn_finalize8(const double *partial, long long chunks, long long c,
                                           long long m, long long hw, const void *x, int xt,
                                           double eps, double momentum, void *savedMean, int smt,
                                           void *savedInvstd, int sit, void *runningMean, int rmt,
                                           void *runningVar, int rvt, double *applyMean,
                                           double *applyInvstd, const void *xb, int xbt) {
  MT_GRID_STRIDE(ch, c) {
    double s1 = 0.0, s2 = 0.0;
    for (long long b = 0; b < chunks; ++b) {
      s1 += partial[2 * (ch * chunks + b)];
      s2 += partial[2 * (ch * chunks + b) + 1];
    }
    const double md = s1 / (double)m, var = s2 / (double)m - md * md;
    mt_bn_finish(ch, m, (double)mt_bn_x(x, xt, ch * hw, xb, xbt, ch) + md, var > 0.0 ? var : 0.0, eps,
                 momentum, savedMean, smt, savedInvstd, sit, runningMean, rmt, runningVar, rvt,
                 applyMean, applyInvstd);
  }
}

extern "C" __global__ void mt_bn_apply8(const void *x, int xt, void *y, int yt, long long n,
                                        long long c, long long hw, const double *mean,
                                        const double *invstd, const void *gamma, int gt,
                                        const void *beta, int bt, int relu, const void *xb,
                                        int xbt) {
  MT_GRID_STRIDE(v, n * c * hw / 8) {
    const long long e = 8 * v, ch = mt_mod(mt_div(e, hw), c);
    const double g = gamma ? (double)mt_load(gamma, gt, ch) : 1.0;
    const double b = beta ? (double)mt_load(beta, bt, ch) : 0.0;
    const double mu = mean[ch], is = invstd[ch];
    float in[8], out[8];
    mt_bn_x8(x, xt, e, xb, xbt, ch, in);
    for (int u = 0; u < 8; ++u) out[u] = mt_bn_relu((float)(((double)in[u] - mu) * is * g + b), relu);
    mt_store8(y, yt, e, out);
  }
}

// mt_bnb_grad on eight elements from i (a multiple of 8).
static __device__ __forceinline__ void mt_bnb_grad8(float *g, const void *mask, int mt,
                                                    long long i) {
  if (!mask) return;
  float mv[8];
  mt_load8(mask, mt, i, mv);
  for (int u = 0; u < 8; ++u) g[u] = mv[u] > 0.0f ? g[u] : 0.0f;
}

// partial[ch][b] = {sum dy, sum dy * (x - mean) * invstd} over the block's values.
extern "C" __global__ void mt_bnb_partial8(const void *dy, int dyt, const void *x, int xt,
                                           long long n, long long c, long long hw, long long chunk,
                                           long long chunks, const void *savedMean, int smt,
                                           const void *savedInvstd, int sit, double *partial,
                                           const void *mask, int mt, const void *xb, int xbt) {
  const long long m = n * hw;
  for (long long ch = blockIdx.y; ch < c; ch += gridDim.y) {
    const long long b = blockIdx.x;
    const long long j1 = min(m, (b + 1) * chunk);
    const double mean = (double)mt_load(savedMean, smt, ch);
    const double invstd = (double)mt_load(savedInvstd, sit, ch);
    double s1 = 0.0, s2 = 0.0;
    for (long long j = b * chunk + 8 * (long long)threadIdx.x; j < j1; j += 8 * (long long)blockDim.x) {
      const long long i = mt_div(j, hw), idx = (i * c + ch) * hw + (j - i * hw);
      float g[8], xv[8];
      mt_load8(dy, dyt, idx, g);
      mt_bn_x8(x, xt, idx, xb, xbt, ch, xv);
      mt_bnb_grad8(g, mask, mt, idx);
      for (int u = 0; u < 8; ++u) {
        s1 += (double)g[u];
        s2 += (double)g[u] * ((double)xv[u] - mean) * invstd;
      }
    }
    mt_block_sum2(s1, s2, partial + 2 * (ch * chunks + b));
  }
}

extern "C" __global__ void mt_bnb_dx8(const void *dy, int dyt, const void *x, int xt,
                                      const void *gamma, int gt, const void *savedMean, int smt,
                                      const void *savedInvstd, int sit, const double *meanDy,
                                      const double *meanDyXhat, void *dx, int dxt, long long n,
                                      long long c, long long hw, const void *mask, int mt,
                                      const void *xb, int xbt) {
  MT_GRID_STRIDE(v, n * c * hw / 8) {
    const long long e = 8 * v, ch = mt_mod(mt_div(e, hw), c);
    const double mean = (double)mt_load(savedMean, smt, ch);
    const double invstd = (double)mt_load(savedInvstd, sit, ch);
    const double scale = (gamma ? (double)mt_load(gamma, gt, ch) : 1.0) * invstd;
    const double md = meanDy[ch], mdx = meanDyXhat[ch];
    float g[8], xv[8], out[8];
    mt_load8(dy, dyt, e, g);
    mt_bn_x8(x, xt, e, xb, xbt, ch, xv);
    mt_bnb_grad8(g, mask, mt, e);
    for (int u = 0; u < 8; ++u) {
      const double xhat = ((double)xv[u] - mean) * invstd;
      out[u] = (float)(scale * ((double)g[u] - md - xhat * mdx));
    }
    mt_store8(dx, dxt, e, out);
  }
}

// ---- losses ----

// Warp-per-row softmax statistics: the row's max (NaNs ignored, as std::max does on
// the CPU) and sum of exp(x - max), in double; valid in every lane.
static __device__ void mt_row_stats(const void *logits, int lt, long long row, long long c,
                                    double *mxOut, double *sumOut) {
  const int lane = threadIdx.x & 31;
  double mx = -__longlong_as_double(0x7ff0000000000000ll);
  for (long long j = lane; j < c; j += 32) {
    const double v = (double)mt_load(logits, lt, row * c + j);
    mx = (mx < v) ? v : mx;
  }
  for (int o = 16; o > 0; o >>= 1) {
    const double other = __shfl_down_sync(0xffffffffu, mx, o);
    mx = (mx < other) ? other : mx;
  }
  mx = __shfl_sync(0xffffffffu, mx, 0);
  double sum = 0.0;
  for (long long j = lane; j < c; j += 32) sum += exp((double)mt_load(logits, lt, row * c + j) - mx);
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, o);
  sum = __shfl_sync(0xffffffffu, sum, 0);
  *mxOut = mx;
  *sumOut = sum;
}

// A label must be an integer in [0, c) (checked in float, as on the CPU); a bad one is
// reported through the status word and gives NaN.
static __device__ __forceinline__ long long mt_label(const void *labels, int labt, long long row,
                                                     long long c, int *status, int site) {
  const float l = mt_load(labels, labt, row);
  if (!(l >= 0.0f && l < (float)c && l == floorf(l))) {
    mt_report(status, 1, site, (int)row, __float_as_int(l));
    return -1;
  }
  return (long long)l;
}

// rowLoss[row] = log(sum exp(x - max)) + max - x[label]; 8 rows per 256-thread block.
extern "C" __global__ void mt_ce_fwd(const void *logits, int lt, const void *labels, int labt,
                                     long long n, long long c, int *status, int site,
                                     double *rowLoss) {
  const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= n) return; // the whole warp leaves together
  double mx, sum;
  mt_row_stats(logits, lt, row, c, &mx, &sum);
  if ((threadIdx.x & 31) == 0) {
    const long long label = mt_label(labels, labt, row, c, status, site);
    rowLoss[row] = label < 0 ? __longlong_as_double(0x7ff8000000000000ll)
                             : log(sum) + mx - (double)mt_load(logits, lt, row * c + label);
  }
}

// dlogits = (softmax - onehot) * dloss / n.
extern "C" __global__ void mt_ce_bwd(const void *logits, int lt, const void *labels, int labt,
                                     const void *dloss, int dlt, long long n, long long c,
                                     void *dlogits, int dt, int *status, int site) {
  const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= n) return;
  double mx, sum;
  mt_row_stats(logits, lt, row, c, &mx, &sum);
  const float l = mt_load(labels, labt, row);
  const bool bad = !(l >= 0.0f && l < (float)c && l == floorf(l));
  if (bad && (threadIdx.x & 31) == 0) mt_label(labels, labt, row, c, status, site);
  const long long label = bad ? -1 : (long long)l;
  const double scale = (double)mt_load(dloss, dlt, 0) / (double)n;
  for (long long j = threadIdx.x & 31; j < c; j += 32) {
    const double p = exp((double)mt_load(logits, lt, row * c + j) - mx) / sum;
    const double d = bad ? __longlong_as_double(0x7ff8000000000000ll)
                         : (p - (j == label ? 1.0 : 0.0)) * scale;
    mt_store(dlogits, dt, row * c + j, (float)d);
  }
}

// partial[b] = sum over [b*chunk, (b+1)*chunk) of (a - b)^2.
extern "C" __global__ void mt_mse_partial(const void *a, int at, const void *b, int bt,
                                          long long count, long long chunk, double *partial) {
  const long long j0 = (long long)blockIdx.x * chunk, j1 = min(count, j0 + chunk);
  double s = 0.0;
  for (long long j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
    const double d = (double)mt_load(a, at, j) - (double)mt_load(b, bt, j);
    s += d * d;
  }
  s = mt_block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// da = 2 (a - b) / count * dloss.
extern "C" __global__ void mt_mse_bwd(const void *a, int at, const void *b, int bt,
                                      const void *dloss, int dlt, long long count, void *da,
                                      int dat) {
  const double scale = 2.0 * (double)mt_load(dloss, dlt, 0) / (double)count;
  MT_GRID_STRIDE(j, count) {
    mt_store(da, dat, j, (float)(((double)mt_load(a, at, j) - (double)mt_load(b, bt, j)) * scale));
  }
}

// out[0] = (sum of p[0..count)) / divisor, one 256-thread block, fixed order.
extern "C" __global__ void mt_sum_partials(const double *p, long long count, double divisor,
                                           void *out, int ot) {
  double s = 0.0;
  for (long long i = threadIdx.x; i < count; i += blockDim.x) s += p[i];
  s = mt_block_sum(s);
  if (threadIdx.x == 0) mt_store(out, ot, 0, (float)(s / divisor));
}

// ---- reduce (sum or mean to out_shape) ----

static __device__ __forceinline__ long long mt_kept_base(const MtReduceGeo &g, long long o) {
  long long base = 0;
  for (int d = 0; d < g.nk; ++d) {
    const long long q = mt_div(o, g.ks[d]);
    base += (o - q * g.ks[d]) * g.kst[d];
    o = q;
  }
  return base;
}
static __device__ __forceinline__ long long mt_reduced_offset(const MtReduceGeo &g, long long r) {
  long long off = 0;
  for (int d = 0; d < g.nr; ++d) {
    const long long q = mt_div(r, g.rs[d]);
    off += (r - q * g.rs[d]) * g.rst[d];
    r = q;
  }
  return off;
}

// Up to 2048 values per output: a block of 256 threads takes 32 consecutive outputs
// (lane = output, so kept-contiguous outputs load coalesced) and 8 row groups; group j
// sums the values r = j, j + 8, ... in double, and lane's group-0 thread adds the 8
// group sums in order (deterministic; in double, as the CPU's sequential sum, so the
// float results agree but for the rare sum a double rounding separates). One thread per
// output walking its values in sequence took 0.2 ms for a bias gradient over a batch of
// 512 on an H100.
extern "C" __global__ void mt_reduce_small(const void *in, int it, void *out, int ot,
                                           long long outCount, long long rcount, MtReduceGeo g,
                                           double scale) {
  __shared__ double sums[8][33];
  const int lane = threadIdx.x & 31, group = threadIdx.x >> 5;
  for (long long o0 = (long long)blockIdx.x * 32; o0 < outCount; o0 += (long long)gridDim.x * 32) {
    const long long o = o0 + lane;
    double s = 0.0;
    if (o < outCount) {
      const long long base = mt_kept_base(g, o);
      for (long long r = group; r < rcount; r += 8) s += (double)mt_load(in, it, base + mt_reduced_offset(g, r));
    }
    sums[group][lane] = s;
    __syncthreads();
    if (group == 0 && o < outCount) {
      double t = 0.0;
      for (int j = 0; j < 8; ++j) t += sums[j][lane];
      mt_store(out, ot, o, (float)(t * scale));
    }
    __syncthreads();
  }
}

// Block b: output b / chunks, reduced range (b % chunks) * chunk + [0, chunk).
extern "C" __global__ void mt_reduce_partial(const void *in, int it, long long outCount,
                                             long long rcount, long long chunk, long long chunks,
                                             MtReduceGeo g, double *partial) {
  for (long long b = blockIdx.x; b < outCount * chunks; b += gridDim.x) {
    const long long o = mt_div(b, chunks), k = b - o * chunks;
    const long long base = mt_kept_base(g, o);
    const long long r0 = k * chunk, r1 = min(rcount, r0 + chunk);
    double s = 0.0;
    for (long long r = r0 + threadIdx.x; r < r1; r += blockDim.x)
      s += (double)mt_load(in, it, base + mt_reduced_offset(g, r));
    s = mt_block_sum(s);
    if (threadIdx.x == 0) partial[b] = s;
  }
}

// mt_reduce_partial with 8 values per load: the innermost reduced dimension is
// contiguous and its size and every other stride are multiples of 8 (FixedLaunch.h).
extern "C" __global__ void mt_reduce_partial8(const void *in, int it, long long outCount,
                                              long long rcount, long long chunk, long long chunks,
                                              MtReduceGeo g, double *partial) {
  for (long long b = blockIdx.x; b < outCount * chunks; b += gridDim.x) {
    const long long o = mt_div(b, chunks), k = b - o * chunks;
    const long long base = mt_kept_base(g, o);
    const long long r1 = min(rcount, (k + 1) * chunk);
    double s = 0.0;
    for (long long r = k * chunk + 8 * (long long)threadIdx.x; r < r1; r += 8 * (long long)blockDim.x) {
      float v[8];
      mt_load8(in, it, base + mt_reduced_offset(g, r), v);
      for (int u = 0; u < 8; ++u) s += (double)v[u];
    }
    s = mt_block_sum(s);
    if (threadIdx.x == 0) partial[b] = s;
  }
}

extern "C" __global__ void mt_reduce_finalize(const double *partial, long long outCount,
                                              long long chunks, double scale, void *out, int ot) {
  MT_GRID_STRIDE(o, outCount) {
    double s = 0.0;
    for (long long k = 0; k < chunks; ++k) s += partial[o * chunks + k];
    mt_store(out, ot, o, (float)(s * scale));
  }
}

// ---- data movement ----

// out[r*outRow + outOffset + j] = in[r*inRow + inOffset + j], j < rowLen (concat, slice).
extern "C" __global__ void mt_copy_rows(const void *in, int it, void *out, int ot, long long outer,
                                        long long rowLen, long long inRow, long long inOffset,
                                        long long outRow, long long outOffset) {
  MT_GRID_STRIDE(e, outer * rowLen) {
    const long long r = mt_div(e, rowLen), j = e - r * rowLen;
    mt_store(out, ot, r * outRow + outOffset + j, mt_load(in, it, r * inRow + inOffset + j));
  }
}

// The same with in and out of one type and every row start and length a whole number
// of 16-byte vectors (in vectors here): one vector access each, no conversion (the
// U-Net's concatenations along channels and remat-concat's slices).
extern "C" __global__ void mt_copy_rows16(const mt_u4 *in, mt_u4 *out, long long outer,
                                          long long rowLen, long long inRow, long long inOffset,
                                          long long outRow, long long outOffset) {
  MT_GRID_STRIDE(e, outer * rowLen) {
    const long long r = mt_div(e, rowLen), j = e - r * rowLen;
    out[r * outRow + outOffset + j] = in[r * inRow + inOffset + j];
  }
}

extern "C" __global__ void mt_transpose(const void *in, int it, void *out, int ot, long long total,
                                        MtPermGeo g) {
  MT_GRID_STRIDE(o, total) {
    long long rem = o, off = 0;
    for (long long d = g.rank - 1; d >= 0; --d) {
      const long long q = mt_div(rem, g.shape[d]);
      off += (rem - q * g.shape[d]) * g.stride[d];
      rem = q;
    }
    mt_store(out, ot, o, mt_load(in, it, off));
  }
}

// *flag = 1 if any element of any item (times *mult, in fp32, where mult is not null)
// is not finite. Block row blockIdx.y checks item y.
extern "C" __global__ void mt_allfinite(const MtFiniteItem *items, int *flag, const void *mult,
                                        int mt) {
  const MtFiniteItem item = items[blockIdx.y];
  const float m = mult ? mt_load(mult, mt, 0) : 1.0f;
  MT_GRID_STRIDE(i, item.count) {
    const float v = mt_load(item.data, (int)item.dtype, i);
    if (!isfinite(v * m)) *flag = 1; // m is 1 without a multiplier: v * 1 == v
  }
}

extern "C" __global__ void mt_allfinite_out(const int *flag, void *out, int ot) {
  if (blockIdx.x == 0 && threadIdx.x == 0) mt_store(out, ot, 0, *flag ? 0.0f : 1.0f);
}

// ---- layouts for the NHWC convolution (ConvGemmConfig::nhwc), 16-bit elements ----

// out[i][p][c] = in[i][c][p] for i < n, c < c, p < hw: 32 x 32 tiles through shared
// memory, so that both the reads (along p) and the writes (along c) are coalesced.
// Grid (tiles of hw, tiles of c, n), 256 threads.
extern "C" __global__ void mt_nchw_to_nhwc16(const unsigned short *in, unsigned short *out,
                                             long long n, long long c, long long hw) {
  __shared__ unsigned short tile[32][33];
  const long long p0 = (long long)blockIdx.x * 32, c0 = (long long)blockIdx.y * 32;
  const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
  for (long long i = blockIdx.z; i < n; i += gridDim.z) {
    for (int k = ty; k < 32; k += 8) {
      const long long ch = c0 + k, p = p0 + tx;
      if (ch < c && p < hw) tile[k][tx] = in[(i * c + ch) * hw + p];
    }
    __syncthreads();
    for (int k = ty; k < 32; k += 8) {
      const long long p = p0 + k, ch = c0 + tx;
      if (ch < c && p < hw) out[(i * hw + p) * c + ch] = tile[tx][k];
    }
    __syncthreads();
  }
}

// w [k][c][rs] -> out [k][rs][c].
extern "C" __global__ void mt_weight_krsc16(const unsigned short *w, unsigned short *out,
                                            long long k, long long c, long long rs) {
  MT_GRID_STRIDE(o, k * c * rs) {
    const long long ch = mt_mod(o, c), t = mt_div(o, c), r = mt_mod(t, rs), kk = mt_div(t, rs);
    out[o] = w[(kk * c + ch) * rs + r];
  }
}

// The input gradient's weights: w [k][c][r][s] -> out [c][r'][s'][k] with r' = R-1-r,
// s' = S-1-s (the convolution of dy with them is the input gradient, stride 1).
extern "C" __global__ void mt_weight_flip16(const unsigned short *w, unsigned short *out,
                                            long long k, long long c, long long r, long long s) {
  MT_GRID_STRIDE(o, k * c * r * s) {
    long long t = o;
    const long long kk = mt_mod(t, k); t = mt_div(t, k);
    const long long ss = mt_mod(t, s); t = mt_div(t, s);
    const long long rr = mt_mod(t, r), ch = mt_div(t, r);
    out[o] = w[((kk * c + ch) * r + (r - 1 - rr)) * s + (s - 1 - ss)];
  }
}

// The NHWC weight gradient's reduction: dw [k][c][rs] = (accumulate ? dw : 0) + the
// splits' fp32 partials [split][k][rs][c], added in split order.
extern "C" __global__ void mt_conv_wsum_rsc(const float *partials, int splits, long long k,
                                            long long c, long long rs, void *out, int outType,
                                            int accumulate) {
  MT_GRID_STRIDE(o, k * c * rs) {
    const long long r = mt_mod(o, rs), t = mt_div(o, rs), ch = mt_mod(t, c), kk = mt_div(t, c);
    const long long i = (kk * rs + r) * c + ch, count = k * c * rs;
    float s = 0.0f;
    for (int z = 0; z < splits; ++z)
      s += partials[(long long)z * count + i];
    if (accumulate)
      s = mt_load(out, outType, o) + s;
    mt_store(out, outType, o, s);
  }
}

// The implicit-GEMM backward-weight convolution's reduction (ConvKernels.h):
// dw = (accumulate ? dw : 0) + the splits' fp32 partials, added in split order.
extern "C" __global__ void mt_conv_wsum(const float *partials, int splits, long long count,
                                        void *out, int outType, int accumulate) {
  MT_GRID_STRIDE(i, count) {
    float s = 0.0f;
    for (int z = 0; z < splits; ++z)
      s += partials[(long long)z * count + i];
    if (accumulate)
      s = mt_load(out, outType, i) + s;
    mt_store(out, outType, i, s);
  }
}
)MTSRC";
}

const char *const *fixedKernelNames(int *count) {
  static const char *const names[] = {
#define MANTISSA_FIXED_KERNEL(name, ...) #name,
#include "runtime/cuda/FixedKernels.def"
  };
  *count = int(sizeof(names) / sizeof(names[0]));
  return names;
}

} // namespace cuda
} // namespace mantissa
