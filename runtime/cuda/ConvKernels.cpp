//===- ConvKernels.cpp - implicit-GEMM convolutions on tensor cores -------===//
#include "runtime/cuda/ConvKernels.h"

#include <climits>
#include <cstdint>

namespace mantissa {
namespace cuda {

std::string ConvGemmConfig::kernelName() const {
  static const char *modes[] = {"fwd", "bwdin", "bwdw"};
  const char *kind = !nhwc                                  ? modes[int(mode)]
                     : mode == ConvGemmMode::BackwardWeight ? "nhwcw"
                                                            : "nhwc";
  return std::string("mt_conv_") + kind + (dtype == plan::DType::BF16 ? "_bf16" : "_f16") + "_n" +
         std::to_string(bn) + "_r" + std::to_string(r) + "s" + std::to_string(s) + "_u" +
         std::to_string(sh) + "x" + std::to_string(sw) + (warps == 4 ? "_w4" : "");
}

std::optional<ConvGemmConfig> convGemmConfigFor(const plan::Plan &plan, const plan::Conv2d &k) {
  const auto *tensors = plan.tensors();
  auto dtypeOf = [&](int id) {
    return id >= 0 && tensors && uint32_t(id) < tensors->size() ? tensors->Get(uint32_t(id))->dtype()
                                                                 : plan::DType::I32;
  };
  const plan::DType a = dtypeOf(k.in0()), b = dtypeOf(k.in1()), o = dtypeOf(k.out());
  if (a != b || (a != plan::DType::F16 && a != plan::DType::BF16) || o == plan::DType::I32)
    return std::nullopt;
  const int64_t N = k.n(), C = k.c(), H = k.h(), W = k.w(), K = k.k(), R = k.r(), S = k.s();
  const int64_t sh = k.stride_h(), sw = k.stride_w(), ph = k.pad_h(), pw = k.pad_w();
  if (N <= 0 || C <= 0 || H <= 0 || W <= 0 || K <= 0 || R <= 0 || S <= 0 || sh <= 0 || sw <= 0 ||
      ph < 0 || pw < 0 || R > 16 || S > 16 || sh > 16 || sw > 16)
    return std::nullopt;
  const int64_t P = (H + 2 * ph - R) / sh + 1, Q = (W + 2 * pw - S) / sw + 1;
  if (P <= 0 || Q <= 0)
    return std::nullopt;
  // Every index the kernels form fits a 32-bit int (outputs use 64-bit offsets).
  for (int64_t v : {N * C * H * W, N * K * P * Q, K * C * R * S, ph + H, pw + W})
    if (v >= INT_MAX)
      return std::nullopt;
  // The index tables mark a reduction index past the end with r = -30000.
  if (H + 2 * ph >= 16384 || W + 2 * pw >= 16384)
    return std::nullopt;
  ConvGemmConfig c;
  switch (k.kind()) {
  case plan::ConvKind::Forward:
    c.mode = ConvGemmMode::Forward;
    break;
  case plan::ConvKind::BackwardInput:
    c.mode = ConvGemmMode::BackwardInput;
    break;
  case plan::ConvKind::BackwardWeight:
    c.mode = ConvGemmMode::BackwardWeight;
    break;
  default:
    return std::nullopt;
  }
  c.dtype = a;
  const int64_t cols = c.mode == ConvGemmMode::BackwardInput ? C : K;
  c.bn = cols <= 32 ? 32 : 64;
  c.r = int(R);
  c.s = int(S);
  c.sh = int(sh);
  c.sw = int(sw);
  return c;
}

std::optional<ConvGemmConfig> convNhwcConfigFor(const plan::Plan &plan, const plan::Conv2d &k) {
  std::optional<ConvGemmConfig> c = convGemmConfigFor(plan, k);
  if (!c)
    return std::nullopt;
  if (c->mode == ConvGemmMode::BackwardWeight) {
    // 16-byte chunks of 8 channels of x and of dy.
    if (k.c() % 8 != 0 || k.k() % 8 != 0)
      return std::nullopt;
    c->nhwc = true;
    return c;
  }
  // The reduction runs over (r, s, channel) with 32 channels of one (r, s) per tile.
  const int64_t channels = c->mode == ConvGemmMode::Forward ? k.c() : k.k();
  if (channels % 32 != 0)
    return std::nullopt;
  if (c->mode == ConvGemmMode::BackwardInput &&
      (c->sh != 1 || c->sw != 1 || k.pad_h() > k.r() - 1 || k.pad_w() > k.s() - 1))
    return std::nullopt;
  c->nhwc = true;
  c->bn = (c->mode == ConvGemmMode::Forward ? k.k() : k.c()) <= 32 ? 32 : 64;
  return c;
}

std::optional<ConvGemmConfig> convNhwcWideConfigFor(const plan::Plan &plan, const plan::Conv2d &k) {
  std::optional<ConvGemmConfig> c = convNhwcConfigFor(plan, k);
  if (c)
    c->warps = 4;
  return c;
}

std::vector<ConvGemmConfig> convGemmConfigsFor(const plan::Plan &plan, const plan::Conv2d &k) {
  std::vector<ConvGemmConfig> out;
  if (auto c = convGemmConfigFor(plan, k))
    out.push_back(*c);
  if (auto c = convNhwcConfigFor(plan, k))
    out.push_back(*c);
  if (auto c = convNhwcWideConfigFor(plan, k))
    out.push_back(*c);
  return out;
}

namespace {

const char *kConvTemplate = R"MTSRC(
// ---- implicit-GEMM convolution (runtime/cuda/ConvKernels.h) ----
// mma.sync m16n8k16 (row-major A, column-major B, fp32 accumulators). Per lane, with
// g = lane / 4 and t = lane % 4: a[0] = A[g][2t..2t+1], a[1] = A[g+8][2t..], a[2] =
// A[g][2t+8..], a[3] = A[g+8][2t+8..]; b[0] = B[2t..2t+1][g], b[1] = B[2t+8..][g];
// c[0..1] = C[g][2t..2t+1], c[2..3] = C[g+8][2t..2t+1].
template <int DT>
static __device__ __forceinline__ void mt_mma16816(float *c, const unsigned *a, const unsigned *b) {
#ifdef MT_HOST_EMULATION // test/unit/cuda/HostKernels.h
  mt_host_mma16816(c, a, b, DT == MT_BF16);
#else
  if (DT == MT_F16)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// The warp tiles of a block: 8 warps in a 4 x 2 grid, warp (wm, wn) computing rows
// wm*32 .. +32 and columns wn*BN/2 .. +BN/2 of the block's BM = 128 x BN tile, as 2 x
// (BN/16) m16n8 fragments; lane (g, t) = (lane / 4, lane % 4).
//
// One BK = 32 slice of the reduction: A in shared memory as [m][k] rows and B as
// [n][k] rows, both 40 halves apart (the k pairs of a fragment are one 32-bit load).
template <int DT, int BN>
static __device__ __forceinline__ void mt_tile_mma(float (*acc)[BN / 16][4],
                                                   const unsigned short *As,
                                                   const unsigned short *Bs, int wm, int wn,
                                                   int g, int t) {
  constexpr int LDS = 40, WN = BN / 2, NI = WN / 8;
#pragma unroll
  for (int ks = 0; ks < 32; ks += 16) {
    unsigned a[2][4], b[NI][2];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) {
      const unsigned short *pa = As + (wm * 32 + mi * 16 + g) * LDS + ks + 2 * t;
      a[mi][0] = *(const unsigned *)pa;
      a[mi][1] = *(const unsigned *)(pa + 8 * LDS);
      a[mi][2] = *(const unsigned *)(pa + 8);
      a[mi][3] = *(const unsigned *)(pa + 8 * LDS + 8);
    }
#pragma unroll
    for (int ni = 0; ni < NI; ++ni) {
      const unsigned short *pb = Bs + (wn * WN + ni * 8 + g) * LDS + ks + 2 * t;
      b[ni][0] = *(const unsigned *)pb;
      b[ni][1] = *(const unsigned *)(pb + 8);
    }
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int ni = 0; ni < NI; ++ni)
        mt_mma16816<DT>(acc[mi][ni], a[mi], b[ni]);
  }
}

// The accumulators into Cs, the block's result tile column-major (BM + 4 floats per
// column), so that consecutive threads then store consecutive rows. Warp (wm, wn) holds
// rows wm * 16 * MI .. and columns wn * BN/2 .. as MI x (BN/16) m16n8 fragments.
template <int BN, int MI = 2>
static __device__ __forceinline__ void mt_stage_result(float *Cs, float (*acc)[BN / 16][4], int wm,
                                                       int wn, int g, int t) {
  constexpr int LDC = 128 + 4, WN = BN / 2, NI = WN / 8;
#pragma unroll
  for (int mi = 0; mi < MI; ++mi)
#pragma unroll
    for (int ni = 0; ni < NI; ++ni) {
      const int row = wm * 16 * MI + mi * 16 + g, col = wn * WN + ni * 8 + 2 * t;
      Cs[col * LDC + row] = acc[mi][ni][0];
      Cs[(col + 1) * LDC + row] = acc[mi][ni][1];
      Cs[col * LDC + row + 8] = acc[mi][ni][2];
      Cs[(col + 1) * LDC + row + 8] = acc[mi][ni][3];
    }
}

// Block tile: BM = 128 GEMM rows x BN columns x BK = 32 of the reduction, 8 warps in a
// 4 x 2 grid, each 32 rows x BN/2 columns. Shared rows are BK + 8 halves long (80
// bytes): the fragment loads of a warp then hit 32 distinct banks. Tiles are loaded
// into registers one step ahead, so the global gathers overlap the mma of the
// previous tile. MODE: 0 forward, 1 backward input, 2 backward weight.
template <int MODE, int DT, int BN, int R, int S, int SH, int SW>
static __device__ __forceinline__ void mt_conv_gemm(
    const unsigned short *__restrict__ in0, const unsigned short *__restrict__ in1, void *out,
    int outType, int accumulate, int N, int C, int H, int W, int K, int P, int Q, int ph, int pw,
    int kTilesPerSplit) {
  constexpr int BM = 128, BK = 32, LDS = BK + 8, RS = R * S, LDC = BM + 4;
  constexpr int WN = BN / 2, NI = WN / 8, BROWS = BN / 8;
  constexpr int SMEM_AB = (BM + BN) * LDS / 2, SMEM_C = BN * LDC;
  __shared__ __align__(16) float smem[SMEM_AB > SMEM_C ? SMEM_AB : SMEM_C];
  unsigned short *As = (unsigned short *)smem; // [BM][LDS]: A[m][k]
  unsigned short *Bs = As + BM * LDS;          // [BN][LDS]: B[k][n] stored as [n][k]
  float *Cs = smem;                            // [BN][LDC]: the result tile, column-major

  const int PQ = P * Q, HW = H * W;
  const int M = MODE == 0 ? N * PQ : MODE == 1 ? N * HW : C * RS;
  const int NC = MODE == 1 ? C : K;
  const int KD = MODE == 0 ? C * RS : MODE == 1 ? K * RS : N * PQ;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int numK = (KD + BK - 1) / BK;
  int kt0 = 0, kt1 = numK;
  if (MODE == 2) {
    kt0 = blockIdx.z * kTilesPerSplit;
    kt1 = min(numK, kt0 + kTilesPerSplit);
  }

  // Modes 0 and 1 gather A with one GEMM row (pixel) per thread, fixed for the whole
  // block: consecutive threads read consecutive pixels. Decompose it once.
  const int am = tid & (BM - 1), ak0 = tid >> 7;
  int aBase = 0, ay = 0, ax = 0;
  bool aValid = false;
  if (MODE != 2) {
    const int gm = m0 + am;
    aValid = gm < M;
    if (aValid) {
      const int plane = MODE == 0 ? PQ : HW, cols = MODE == 0 ? Q : W;
      const int n = gm / plane, rem = gm - n * plane, y = rem / cols, x = rem - y * cols;
      if (MODE == 0) {
        aBase = n * C * HW;
        ay = y * SH - ph;
        ax = x * SW - pw;
      } else {
        aBase = n * K * PQ;
        ay = y + ph;
        ax = x + pw;
      }
    }
  }
  // The other loaders take one reduction index per thread (consecutive threads read
  // consecutive elements) and a stride of 8 rows.
  const int kk = tid & 31, row0 = tid >> 5;

  // Index tables, so that a gathered element costs an add, two bounds checks and a
  // load instead of divisions: entry = {offset, r << 16 | s}; r = kBadR marks an index
  // past the reduction (every bounds check then fails: H, W, P, Q < 2^14 on this path).
  //  mode 0: per reduction index k = (c, r, s) of the next tile: c*H*W + r*W + s
  //  mode 1 (stride 1): per k = (k', r, s): k'*P*Q - r*Q - s
  //  mode 2: per GEMM row (c, r, s) of the block, once: c*H*W + r*W + s
  const int kBadR = -30000;
  __shared__ int2 ktab[2][BK];
  __shared__ int2 rowtab[MODE == 2 ? BM : 1];
  auto rsPack = [](int r, int s) { return (r << 16) | (s & 0xffff); };
  auto buildKTable = [&](int kt) {
    if (tid < BK) {
      const int kg = kt * BK + tid;
      int2 e = make_int2(0, rsPack(kBadR, 0));
      if (kg < KD) {
        const int c = kg / RS, rs = kg - c * RS, r = rs / S, s = rs - r * S;
        e.x = MODE == 0 ? c * HW + r * W + s : c * PQ - r * Q - s;
        e.y = rsPack(r, s);
      }
      ktab[kt & 1][tid] = e;
    }
  };
  constexpr bool TABLE_A = MODE == 0 || (MODE == 1 && SH == 1 && SW == 1);
  if (MODE == 2) {
    for (int row = tid; row < BM; row += blockDim.x) {
      const int crs = m0 + row;
      int2 e = make_int2(0, rsPack(kBadR, 0));
      if (crs < M) {
        const int c = crs / RS, rs = crs - c * RS, r = rs / S, s = rs - r * S;
        e = make_int2(c * HW + r * W + s, rsPack(r, s));
      }
      rowtab[row] = e;
    }
  }
  const int aPix = MODE == 0 ? aBase + ay * W + ax : aBase + ay * Q + ax;

  unsigned short ra[16], rb[BROWS];
  auto load = [&](int kt) {
    const int kbase = kt * BK;
    if (TABLE_A) {
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        const int2 e = ktab[kt & 1][ak0 + 2 * i];
        const int r = e.y >> 16, s = (short)(e.y & 0xffff);
        unsigned short v = 0;
        if (MODE == 0) {
          if (aValid && (unsigned)(ay + r) < (unsigned)H && (unsigned)(ax + s) < (unsigned)W)
            v = in0[aPix + e.x];
        } else {
          if (aValid && (unsigned)(ay - r) < (unsigned)P && (unsigned)(ax - s) < (unsigned)Q)
            v = in0[aPix + e.x];
        }
        ra[i] = v;
      }
    } else if (MODE == 1) {
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        const int kg = kbase + ak0 + 2 * i;
        unsigned short v = 0;
        if (aValid && kg < KD) {
          const int ko = kg / RS, rs = kg - ko * RS, r = rs / S, s = rs - r * S;
          const int yy = ay - r, xx = ax - s; // p * SH and q * SW when they exist
          if (yy >= 0 && xx >= 0 && yy % SH == 0 && xx % SW == 0) {
            const int p = yy / SH, q = xx / SW;
            if (p < P && q < Q)
              v = in0[aBase + (ko * P + p) * Q + q];
          }
        }
        ra[i] = v;
      }
    } else {
      const int kg = kbase + kk;
      const bool kv = kg < KD;
      int y0 = 0, x0 = 0, pix = 0;
      if (kv) {
        const int n = kg / PQ, pq = kg - n * PQ, p = pq / Q, q = pq - p * Q;
        y0 = p * SH - ph;
        x0 = q * SW - pw;
        pix = n * C * HW + y0 * W + x0;
      }
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        const int2 e = rowtab[row0 + 8 * i];
        const int r = e.y >> 16, s = (short)(e.y & 0xffff);
        unsigned short v = 0;
        if (kv && (unsigned)(y0 + r) < (unsigned)H && (unsigned)(x0 + s) < (unsigned)W)
          v = in0[pix + e.x];
        ra[i] = v;
      }
    }
    // B: [reduction][column] gathered as rows of columns.
    const int kg = kbase + kk;
    const bool kv = kg < KD;
    int bq = 0, brs = 0;
    if (MODE == 1 && kv) {
      bq = kg / RS;
      brs = kg - bq * RS;
    }
    if (MODE == 2 && kv) {
      bq = kg / PQ;
      brs = kg - bq * PQ;
    }
#pragma unroll
    for (int j = 0; j < BROWS; ++j) {
      const int col = n0 + row0 + 8 * j;
      unsigned short v = 0;
      if (kv && col < NC) {
        if (MODE == 0)
          v = in1[col * KD + kg];                 // w[k][c r s]
        else if (MODE == 1)
          v = in1[(bq * C + col) * RS + brs];     // w[k][c][r s], k = bq
        else
          v = in1[(bq * K + col) * PQ + brs];     // dy[n][k][p q], n = bq
      }
      rb[j] = v;
    }
  };
  auto stash = [&]() {
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      if (MODE != 2)
        As[am * LDS + ak0 + 2 * i] = ra[i];
      else
        As[(row0 + 8 * i) * LDS + kk] = ra[i];
    }
#pragma unroll
    for (int j = 0; j < BROWS; ++j)
      Bs[(row0 + 8 * j) * LDS + kk] = rb[j];
  };

  const int wm = warp & 3, wn = warp >> 2, g = lane >> 2, t = lane & 3;
  float acc[2][NI][4] = {};

  if (kt0 < kt1) {
    if (TABLE_A)
      buildKTable(kt0);
    __syncthreads(); // the tables
    load(kt0);
  }
  for (int kt = kt0; kt < kt1; ++kt) {
    stash();
    if (TABLE_A && kt + 1 < kt1)
      buildKTable(kt + 1); // the other buffer: its last reader, load(kt - 1), is done
    __syncthreads();
    if (kt + 1 < kt1)
      load(kt + 1);
    mt_tile_mma<DT, BN>(acc, As, Bs, wm, wn, g, t);
    __syncthreads();
  }

  // Through shared memory, so that consecutive threads store consecutive pixels.
  mt_stage_result<BN>(Cs, acc, wm, wn, g, t);
  __syncthreads();
  for (int idx = tid; idx < BM * BN; idx += blockDim.x) {
    const int col = idx / BM, row = idx - col * BM;
    const int gm = m0 + row, gn = n0 + col;
    if (gm >= M || gn >= NC)
      continue;
    long long o;
    if (MODE == 0) {
      const int n = gm / PQ;
      o = ((long long)n * K + gn) * PQ + (gm - n * PQ);
    } else if (MODE == 1) {
      const int n = gm / HW;
      o = ((long long)n * C + gn) * HW + (gm - n * HW);
    } else {
      o = ((long long)blockIdx.z * K + gn) * M + gm; // partials [split][k][c r s]
    }
    float v = Cs[col * LDC + row];
    if (accumulate)
      v += mt_load(out, outType, o);
    mt_store(out, outType, o, v);
  }
}

// ---- the NHWC kernel (ConvGemmConfig::nhwc) ----
// 16 bytes from global to shared memory without passing through registers; src-size 0
// writes zeros (the halo of the padding, rows past the end).
static __device__ __forceinline__ void mt_cp_async16(void *smem, const void *gmem, bool valid) {
#ifdef MT_HOST_EMULATION
  if (valid) memcpy(smem, gmem, 16); else memset(smem, 0, 16);
#else
  unsigned addr;
  asm volatile("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(addr) : "l"(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(addr), "l"(gmem), "r"(valid ? 16 : 0));
#endif
}
static __device__ __forceinline__ void mt_cp_async_commit() {
#ifndef MT_HOST_EMULATION
  asm volatile("cp.async.commit_group;" ::);
#endif
}
template <int N> static __device__ __forceinline__ void mt_cp_async_wait() {
#ifndef MT_HOST_EMULATION
  asm volatile("cp.async.wait_group %0;" :: "n"(N));
#endif
}

// The cp.async pipeline of the NHWC kernels over tiles kt0 .. kt1 - 1: load(kt, stage)
// issues tile kt's copies into a stage, compute(stage) multiplies the tile there. Tiles
// load in order, STAGES - 1 ahead of the tensor cores; on return every copy has landed
// and the block is synchronised (the stages may be reused).
template <int STAGES, class Load, class Compute>
static __device__ __forceinline__ void mt_cp_async_pipeline(int kt0, int kt1, Load &&load,
                                                            Compute &&compute) {
#pragma unroll
  for (int st = 0; st < STAGES - 1; ++st) {
    if (kt0 + st < kt1)
      load(kt0 + st, st);
    mt_cp_async_commit();
  }
  for (int kt = kt0; kt < kt1; ++kt) {
    const int i = kt - kt0;
    mt_cp_async_wait<STAGES - 2>(); // this thread's copies of tile kt have landed
    __syncthreads();                // everyone's; and tile kt - 1 is no longer read
    if (kt + STAGES - 1 < kt1)
      load(kt + STAGES - 1, (i + STAGES - 1) % STAGES);
    mt_cp_async_commit();
    compute(i % STAGES);
  }
  mt_cp_async_wait<0>();
  __syncthreads();
}

// A forward convolution of x [N][H][W][C] (NHWC) with w [K][R][S][C] into out, NCHW
// [N][K][P][Q] (accumulating when asked): C a multiple of 32, so that each BK = 32
// slice of the reduction (r, s, c) is 32 channels of one (r, s), 64 contiguous bytes
// per pixel. Tiles as mt_conv_gemm's (BM = 128 pixels, BN output channels, the same
// fragments and epilogue); each arrives as 16-byte cp.async copies into one of three
// shared-memory stages, two tiles ahead of the tensor cores.
template <int DT, int BN, int R, int S, int SH, int SW>
static __device__ __forceinline__ void mt_conv_nhwc(
    const unsigned short *__restrict__ x, const unsigned short *__restrict__ w, void *out,
    int outType, int accumulate, int N, int C, int H, int W, int K, int P, int Q, int ph, int pw) {
  constexpr int BM = 128, BK = 32, LDS = BK + 8, LDC = BM + 4, STAGES = 3;
  constexpr int WN = BN / 2, NI = WN / 8;
  constexpr int STAGE = (BM + BN) * LDS; // halves
  constexpr int SMEM_AB = STAGES * STAGE / 2, SMEM_C = BN * LDC;
  __shared__ __align__(16) float smem[SMEM_AB > SMEM_C ? SMEM_AB : SMEM_C];
  unsigned short *stages = (unsigned short *)smem; // per stage: A [BM][LDS], then B [BN][LDS]
  float *Cs = smem;

  const int PQ = P * Q, M = N * PQ, KD = R * S * C, numK = KD / BK;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;

  // This thread's copies: A rows tid/4 and tid/4 + 64 (16 bytes = 8 channels each, at
  // chunk tid % 4 of the row's 64 bytes); B row tid/4 when tid < 4 * BN.
  const int chunk = tid & 3;
  int aPix[2], aY[2], aX[2];
  bool aValid[2];
  for (int i = 0; i < 2; ++i) {
    const int gm = m0 + (tid >> 2) + 64 * i;
    aValid[i] = gm < M;
    const int n = aValid[i] ? gm / PQ : 0, pq = gm - n * PQ, p = pq / Q, q = pq - p * Q;
    aY[i] = p * SH - ph;
    aX[i] = q * SW - pw;
    aPix[i] = n * H * W;
  }
  const int bRow = tid >> 2, bCol = n0 + bRow;
  const bool bValid = tid < 4 * BN && bCol < K;

  auto load = [&](int kt, int stage) {
    const int k0 = kt * BK, rs = k0 / C, c0 = k0 - rs * C + 8 * chunk;
    const int r = rs / S, s = rs - r * S;
    unsigned short *As = stages + stage * STAGE, *Bs = As + BM * LDS;
    for (int i = 0; i < 2; ++i) {
      const int y = aY[i] + r, xx = aX[i] + s;
      const bool ok = aValid[i] && (unsigned)y < (unsigned)H && (unsigned)xx < (unsigned)W;
      const unsigned short *src = ok ? x + ((long long)(aPix[i] + y * W + xx) * C + c0) : x;
      mt_cp_async16(As + ((tid >> 2) + 64 * i) * LDS + 8 * chunk, src, ok);
    }
    if (tid < 4 * BN)
      mt_cp_async16(Bs + bRow * LDS + 8 * chunk,
                    bValid ? w + ((long long)bCol * KD + k0 + 8 * chunk) : w, bValid);
  };

  const int wm = warp & 3, wn = warp >> 2, g = lane >> 2, t = lane & 3;
  float acc[2][NI][4] = {};

  mt_cp_async_pipeline<STAGES>(0, numK, load, [&](int stage) {
    const unsigned short *As = stages + stage * STAGE, *Bs = As + BM * LDS;
    mt_tile_mma<DT, BN>(acc, As, Bs, wm, wn, g, t);
  }); // the stages then become the result tile

  mt_stage_result<BN>(Cs, acc, wm, wn, g, t);
  __syncthreads();
  // Each thread keeps one row (pixel) and walks the columns: one division per thread.
  const int row = tid & (BM - 1), gm = m0 + row;
  if (gm >= M)
    return;
  const int n = gm / PQ;
  const long long base = (long long)n * K * PQ + (gm - n * PQ);
  for (int col = tid >> 7; col < BN; col += 2) {
    const int gn = n0 + col;
    if (gn >= K)
      break;
    const long long o = base + (long long)gn * PQ;
    float v = Cs[col * LDC + row];
    if (accumulate)
      v += mt_load(out, outType, o);
    mt_store(out, outType, o, v);
  }
}


// The weight gradient from NHWC x [N][H][W][C] and dy [N][P][Q][K]: the GEMM of
// mt_conv_gemm's mode 2 (rows m = (r, s, c), here with c fastest; columns k; the
// reduction over the pixels n p q, split over blockIdx.z into fp32 partials
// [split][k][r s c] that mt_conv_wsum_rsc adds up). Both operands arrive with the
// reduction as their rows (pixel-major), by 16-byte cp.async (8 channels of one
// (r, s), or 8 output channels) through three stages; the fragments are then read
// across those rows, two 16-bit values at a time. C and K multiples of 8.
template <int DT, int BN, int R, int S, int SH, int SW>
static __device__ __forceinline__ void mt_conv_nhwcw(
    const unsigned short *__restrict__ x, const unsigned short *__restrict__ dy, float *partial,
    int N, int C, int H, int W, int K, int P, int Q, int ph, int pw, int kTilesPerSplit) {
  constexpr int BM = 128, BK = 32, LDA = BM + 8, LDB = BN + 8, LDC = BM + 4, STAGES = 3;
  constexpr int WN = BN / 2, NI = WN / 8, BCHUNKS = BN / 8;
  constexpr int STAGE = BK * (LDA + LDB); // halves
  constexpr int SMEM_AB = STAGES * STAGE / 2, SMEM_C = BN * LDC;
  __shared__ __align__(16) float smem[SMEM_AB > SMEM_C ? SMEM_AB : SMEM_C];
  unsigned short *stages = (unsigned short *)smem; // per stage: A [BK][LDA], then B [BK][LDB]
  float *Cs = smem;

  const int PQ = P * Q, NPQ = N * PQ, M = R * S * C, numK = (NPQ + BK - 1) / BK;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int kt0 = blockIdx.z * kTilesPerSplit, kt1 = min(numK, kt0 + kTilesPerSplit);

  // A: this thread's chunk of 8 rows m (fixed for the block) in reduction rows
  // tid / 16 and tid / 16 + 16; B: chunk tid % BCHUNKS of reduction row tid / BCHUNKS.
  const int am = m0 + 8 * (tid & 15);
  const bool amValid = am < M;
  const int ars = amValid ? am / C : 0, ac = am - ars * C, ar = ars / S, as = ars - ar * S;
  const int bRow = tid / BCHUNKS, bChunk = tid % BCHUNKS, bCol = n0 + 8 * bChunk;
  const bool bThread = tid < BK * BCHUNKS, bColValid = bCol < K;

  auto load = [&](int kt, int stage) {
    unsigned short *As = stages + stage * STAGE, *Bs = As + BK * LDA;
    for (int i = 0; i < 2; ++i) {
      const int row = (tid >> 4) + 16 * i, npq = kt * BK + row;
      bool ok = amValid && npq < NPQ;
      const unsigned short *src = x;
      if (ok) {
        const int n = npq / PQ, pq = npq - n * PQ, p = pq / Q, q = pq - p * Q;
        const int y = p * SH - ph + ar, xx = q * SW - pw + as;
        ok = (unsigned)y < (unsigned)H && (unsigned)xx < (unsigned)W;
        if (ok)
          src = x + ((long long)(n * H + y) * W + xx) * C + ac;
      }
      mt_cp_async16(As + row * LDA + 8 * (tid & 15), src, ok);
    }
    if (bThread) {
      const int npq = kt * BK + bRow;
      const bool ok = bColValid && npq < NPQ;
      mt_cp_async16(Bs + bRow * LDB + 8 * bChunk, ok ? dy + ((long long)npq * K + bCol) : dy, ok);
    }
  };
  auto pack = [](unsigned short lo, unsigned short hi) { return (unsigned)lo | ((unsigned)hi << 16); };

  const int wm = warp & 3, wn = warp >> 2, g = lane >> 2, t = lane & 3;
  float acc[2][NI][4] = {};

  mt_cp_async_pipeline<STAGES>(kt0, kt1, load, [&](int stage) {
    const unsigned short *As = stages + stage * STAGE, *Bs = As + BK * LDA;
#pragma unroll
    for (int ks = 0; ks < BK; ks += 16) {
      unsigned a[2][4], b[NI][2];
      const unsigned short *r0 = As + (ks + 2 * t) * LDA, *r8 = r0 + 8 * LDA;
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
        const int m = wm * 32 + mi * 16 + g;
        a[mi][0] = pack(r0[m], r0[LDA + m]);
        a[mi][1] = pack(r0[m + 8], r0[LDA + m + 8]);
        a[mi][2] = pack(r8[m], r8[LDA + m]);
        a[mi][3] = pack(r8[m + 8], r8[LDA + m + 8]);
      }
      const unsigned short *b0 = Bs + (ks + 2 * t) * LDB, *b8 = b0 + 8 * LDB;
#pragma unroll
      for (int ni = 0; ni < NI; ++ni) {
        const int n = wn * WN + ni * 8 + g;
        b[ni][0] = pack(b0[n], b0[LDB + n]);
        b[ni][1] = pack(b8[n], b8[LDB + n]);
      }
#pragma unroll
      for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < NI; ++ni)
          mt_mma16816<DT>(acc[mi][ni], a[mi], b[ni]);
    }
  });

  mt_stage_result<BN>(Cs, acc, wm, wn, g, t);
  __syncthreads();
  const int row = tid & (BM - 1), gm = m0 + row;
  if (gm >= M)
    return;
  for (int col = tid >> 7; col < BN; col += 2) {
    const int gn = n0 + col;
    if (gn >= K)
      break;
    partial[((long long)blockIdx.z * K + gn) * M + gm] = Cs[col * LDC + row];
  }
}

// ---- the 4-warp NHWC kernels (ConvGemmConfig::warps == 4) ----
// ldmatrix.x4: four 8 x 8 matrices of 16-bit values; lane l gives the shared address of
// row l % 8 of matrix l / 8 (16 bytes, 16-byte aligned), and lane (g, t) receives in
// r[j] elements 2t and 2t + 1 of row g of matrix j (TRANS: rows 2t and 2t + 1 of
// column g), the layout of an mma.sync fragment register.
template <bool TRANS>
static __device__ __forceinline__ void mt_ldmatrix_x4(unsigned *r, const unsigned short *row) {
#ifdef MT_HOST_EMULATION // test/unit/cuda/HostKernels.h
  mt_host_ldmatrix_x4(r, row, TRANS);
#else
  unsigned addr;
  asm volatile("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(addr) : "l"(row));
  if (TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
#endif
}

// One BK = 32 slice for warp (wm, wn) of 4 in a 2 x 2 grid: rows wm*64 .. +64, columns
// wn*BN/2 .. +BN/2, as 4 x (BN/16) m16n8 fragments, the same mma in the same order per
// output as mt_tile_mma's. KMAJOR: A as [m][k] rows (LDA halves apart) and B as [n][k];
// else (the weight gradient) A as [k][m] and B as [k][n], read transposed.
template <int DT, int BN, bool KMAJOR, int LDA, int LDB>
static __device__ __forceinline__ void mt_tile_mma_w4(float (*acc)[BN / 16][4],
                                                      const unsigned short *As,
                                                      const unsigned short *Bs, int wm, int wn,
                                                      int lane) {
  constexpr int WN = BN / 2, NI = WN / 8;
  const int l8 = lane & 7, j1 = (lane >> 3) & 1, j2 = lane >> 4;
#pragma unroll
  for (int ks = 0; ks < 32; ks += 16) {
    unsigned a[4][4], b[NI][2];
#pragma unroll
    for (int mi = 0; mi < 4; ++mi) {
      // Matrices 0..3: (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15),
      // (rows 8-15, k 8-15) of the 16 x 16 fragment: a[mi][0..3].
      const int m = wm * 64 + mi * 16;
      if (KMAJOR)
        mt_ldmatrix_x4<false>(a[mi], As + (m + l8 + 8 * j1) * LDA + ks + 8 * j2);
      else
        mt_ldmatrix_x4<true>(a[mi], As + (ks + l8 + 8 * j2) * LDA + m + 8 * j1);
    }
#pragma unroll
    for (int ni = 0; ni < NI; ni += 2) {
      // Matrices 0..3: (columns 0-7, k 0-7), (columns 0-7, k 8-15), (columns 8-15, k 0-7),
      // (columns 8-15, k 8-15): b[ni][0], b[ni][1], b[ni + 1][0], b[ni + 1][1].
      const int n = wn * WN + ni * 8;
      unsigned r[4];
      if (KMAJOR)
        mt_ldmatrix_x4<false>(r, Bs + (n + l8 + 8 * j2) * LDB + ks + 8 * j1);
      else
        mt_ldmatrix_x4<true>(r, Bs + (ks + l8 + 8 * j1) * LDB + n + 8 * j2);
      b[ni][0] = r[0];
      b[ni][1] = r[1];
      b[ni + 1][0] = r[2];
      b[ni + 1][1] = r[3];
    }
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
      for (int ni = 0; ni < NI; ++ni)
        mt_mma16816<DT>(acc[mi][ni], a[mi], b[ni]);
  }
}

// mt_conv_nhwc with 4 warps (128 threads): each thread copies 4 rows of A (rows tid/4
// + 32 i, chunk tid % 4) and BN/32 rows of B per tile; tiles load in order, so the
// tile's (r, s, first channel) advances by 32 channels per load instead of dividing.
template <int DT, int BN, int R, int S, int SH, int SW>
static __device__ __forceinline__ void mt_conv_nhwc_w4(
    const unsigned short *__restrict__ x, const unsigned short *__restrict__ w, void *out,
    int outType, int accumulate, int N, int C, int H, int W, int K, int P, int Q, int ph, int pw) {
  constexpr int BM = 128, BK = 32, LDS = BK + 8, LDC = BM + 4, STAGES = 3, THREADS = 128;
  constexpr int NI = BN / 16;
  constexpr int STAGE = (BM + BN) * LDS; // halves
  constexpr int SMEM_AB = STAGES * STAGE / 2, SMEM_C = BN * LDC;
  __shared__ __align__(16) float smem[SMEM_AB > SMEM_C ? SMEM_AB : SMEM_C];
  unsigned short *stages = (unsigned short *)smem; // per stage: A [BM][LDS], then B [BN][LDS]
  float *Cs = smem;

  const int PQ = P * Q, M = N * PQ, KD = R * S * C, numK = KD / BK;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;

  const int chunk = tid & 3, row0 = tid >> 2;
  int aPix[4], aY[4], aX[4];
  bool aValid[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int gm = m0 + row0 + 32 * i;
    aValid[i] = gm < M;
    const int n = aValid[i] ? gm / PQ : 0, pq = gm - n * PQ, p = pq / Q, q = pq - p * Q;
    aY[i] = p * SH - ph;
    aX[i] = q * SW - pw;
    aPix[i] = n * H * W;
  }
  int lr = 0, ls = 0, lc = 0; // the next tile to load: (r, s) and its first channel
  auto load = [&](int /* the next tile: (lr, ls, lc) */, int stage) {
    unsigned short *As = stages + stage * STAGE, *Bs = As + BM * LDS;
    const int c = lc + 8 * chunk;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int y = aY[i] + lr, xx = aX[i] + ls;
      const bool ok = aValid[i] && (unsigned)y < (unsigned)H && (unsigned)xx < (unsigned)W;
      const unsigned short *src = ok ? x + ((long long)(aPix[i] + y * W + xx) * C + c) : x;
      mt_cp_async16(As + (row0 + 32 * i) * LDS + 8 * chunk, src, ok);
    }
    const int k = (lr * S + ls) * C + c;
#pragma unroll
    for (int j = 0; j < BN / 32; ++j) {
      const int col = n0 + row0 + 32 * j;
      const bool ok = col < K;
      mt_cp_async16(Bs + (row0 + 32 * j) * LDS + 8 * chunk, ok ? w + ((long long)col * KD + k) : w,
                    ok);
    }
    lc += BK;
    if (lc == C) {
      lc = 0;
      if (++ls == S) {
        ls = 0;
        ++lr;
      }
    }
  };

  const int wm = warp & 1, wn = warp >> 1, g = lane >> 2, t = lane & 3;
  float acc[4][NI][4] = {};

  mt_cp_async_pipeline<STAGES>(0, numK, load, [&](int stage) {
    const unsigned short *As = stages + stage * STAGE, *Bs = As + BM * LDS;
    mt_tile_mma_w4<DT, BN, true, LDS, LDS>(acc, As, Bs, wm, wn, lane);
  });

  mt_stage_result<BN, 4>(Cs, acc, wm, wn, g, t);
  __syncthreads();
  static_assert(THREADS == BM, "one row (pixel) per thread");
  const int row = tid, gm = m0 + row;
  if (gm >= M)
    return;
  const int n = gm / PQ;
  const long long base = (long long)n * K * PQ + (gm - n * PQ);
  for (int col = 0; col < BN; ++col) {
    const int gn = n0 + col;
    if (gn >= K)
      break;
    const long long o = base + (long long)gn * PQ;
    float v = Cs[col * LDC + row];
    if (accumulate)
      v += mt_load(out, outType, o);
    mt_store(out, outType, o, v);
  }
}

// mt_conv_nhwcw with 4 warps (128 threads): each thread copies its 8 rows m in
// reduction rows tid/16 + 8 i (i < 4) and BN/32 chunks of B; fragments by
// ldmatrix.trans from the pixel-major tiles. Tiles load in order, so each row's pixel
// (n, p, q) advances by BK pixels per load with carries instead of two divisions.
template <int DT, int BN, int R, int S, int SH, int SW>
static __device__ __forceinline__ void mt_conv_nhwcw_w4(
    const unsigned short *__restrict__ x, const unsigned short *__restrict__ dy, float *partial,
    int N, int C, int H, int W, int K, int P, int Q, int ph, int pw, int kTilesPerSplit) {
  constexpr int BM = 128, BK = 32, LDA = BM + 8, LDB = BN + 8, LDC = BM + 4, STAGES = 3;
  constexpr int THREADS = 128, NI = BN / 16, BCHUNKS = BN / 8;
  constexpr int STAGE = BK * (LDA + LDB); // halves
  constexpr int SMEM_AB = STAGES * STAGE / 2, SMEM_C = BN * LDC;
  __shared__ __align__(16) float smem[SMEM_AB > SMEM_C ? SMEM_AB : SMEM_C];
  unsigned short *stages = (unsigned short *)smem; // per stage: A [BK][LDA], then B [BK][LDB]
  float *Cs = smem;

  const int PQ = P * Q, NPQ = N * PQ, M = R * S * C, numK = (NPQ + BK - 1) / BK;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const int kt0 = blockIdx.z * kTilesPerSplit, kt1 = min(numK, kt0 + kTilesPerSplit);

  const int am = m0 + 8 * (tid & 15);
  const bool amValid = am < M;
  const int ars = amValid ? am / C : 0, ac = am - ars * C, ar = ars / S, as = ars - ar * S;
  // BK pixels = dn samples + dp rows + dq columns (dp < P, dq < Q).
  const int dq = BK % Q, dp = (BK / Q) % P, dn = BK / PQ;
  int ln[4], lp[4], lq[4]; // the pixel of row tid/16 + 8 i of the next tile to load
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int npq = kt0 * BK + (tid >> 4) + 8 * i, pq = npq % PQ;
    ln[i] = npq / PQ;
    lp[i] = pq / Q;
    lq[i] = pq - lp[i] * Q;
  }

  auto load = [&](int kt, int stage) {
    unsigned short *As = stages + stage * STAGE, *Bs = As + BK * LDA;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int row = (tid >> 4) + 8 * i;
      const int y = lp[i] * SH - ph + ar, xx = lq[i] * SW - pw + as;
      const bool ok = amValid && ln[i] < N && (unsigned)y < (unsigned)H && (unsigned)xx < (unsigned)W;
      const unsigned short *src = ok ? x + ((long long)(ln[i] * H + y) * W + xx) * C + ac : x;
      mt_cp_async16(As + row * LDA + 8 * (tid & 15), src, ok);
      lq[i] += dq;
      const int cq = lq[i] >= Q;
      lq[i] -= cq * Q;
      lp[i] += dp + cq;
      const int cp = lp[i] >= P;
      lp[i] -= cp * P;
      ln[i] += dn + cp;
    }
#pragma unroll
    for (int j = 0; j < BN / 32; ++j) {
      const int idx = tid + THREADS * j, row = idx / BCHUNKS, ch = idx % BCHUNKS;
      const int npq = kt * BK + row, col = n0 + 8 * ch;
      const bool ok = col < K && npq < NPQ;
      mt_cp_async16(Bs + row * LDB + 8 * ch, ok ? dy + ((long long)npq * K + col) : dy, ok);
    }
  };

  const int wm = warp & 1, wn = warp >> 1, g = lane >> 2, t = lane & 3;
  float acc[4][NI][4] = {};

  mt_cp_async_pipeline<STAGES>(kt0, kt1, load, [&](int stage) {
    const unsigned short *As = stages + stage * STAGE, *Bs = As + BK * LDA;
    mt_tile_mma_w4<DT, BN, false, LDA, LDB>(acc, As, Bs, wm, wn, lane);
  });

  mt_stage_result<BN, 4>(Cs, acc, wm, wn, g, t);
  __syncthreads();
  static_assert(THREADS == BM, "one row (c, r, s) per thread");
  const int row = tid, gm = m0 + row;
  if (gm >= M)
    return;
  for (int col = 0; col < BN; ++col) {
    const int gn = n0 + col;
    if (gn >= K)
      break;
    partial[((long long)blockIdx.z * K + gn) * M + gm] = Cs[col * LDC + row];
  }
}

)MTSRC";

} // namespace

std::string convGemmSource(const std::vector<ConvGemmConfig> &configs) {
  std::string src = kConvTemplate;
  for (const ConvGemmConfig &c : configs) {
    const std::string args = std::to_string(int(c.mode)) + ", " +
                             (c.dtype == plan::DType::BF16 ? "MT_BF16" : "MT_F16") + ", " +
                             std::to_string(c.bn) + ", " + std::to_string(c.r) + ", " +
                             std::to_string(c.s) + ", " + std::to_string(c.sh) + ", " +
                             std::to_string(c.sw);
    const std::string nhwcArgs = std::string(c.dtype == plan::DType::BF16 ? "MT_BF16" : "MT_F16") +
                                 ", " + std::to_string(c.bn) + ", " + std::to_string(c.r) + ", " +
                                 std::to_string(c.s) + ", " + std::to_string(c.sh) + ", " +
                                 std::to_string(c.sw);
    const std::string w4 = c.warps == 4 ? "_w4<" : "<";
    src += "extern \"C\" __global__ void __launch_bounds__(" + std::to_string(c.threads()) + ") " +
           c.kernelName() +
           "(const void *in0, const void *in1, void *out, int outType, int accumulate, int n, "
           "int c, int h, int w, int k, int p, int q, int padH, int padW, int kTilesPerSplit) {\n";
    if (c.nhwc && c.mode == ConvGemmMode::BackwardWeight)
      src += "  (void)outType; (void)accumulate;\n  mt_conv_nhwcw" + w4 + nhwcArgs +
             ">((const unsigned short *)in0, (const unsigned short *)in1, (float *)out, n, c, h, "
             "w, k, p, q, padH, padW, kTilesPerSplit);\n}\n";
    else if (c.nhwc)
      src += "  (void)kTilesPerSplit;\n  mt_conv_nhwc" + w4 + nhwcArgs +
             ">((const unsigned short *)in0, (const unsigned short *)in1, out, outType, "
             "accumulate, n, c, h, w, k, p, q, padH, padW);\n}\n";
    else
      src += "  mt_conv_gemm<" + args +
             ">((const unsigned short *)in0, (const unsigned short *)in1, "
             "out, outType, accumulate, n, c, h, w, k, p, q, padH, padW, kTilesPerSplit);\n}\n";
  }
  return src;
}

} // namespace cuda
} // namespace mantissa
