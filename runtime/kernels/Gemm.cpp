//===- Gemm.cpp - GEMM through OpenBLAS, and convolution as im2col + GEMM --===//
#include "runtime/kernels/Kernels.h"

#include "common/Error.h"
#include "runtime/kernels/Parallel.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <string>

namespace mantissa {
namespace kernels {

namespace {

blasint toBlasInt(int64_t v, const char *what) {
  if (v < 0 || v > INT_MAX)
    throw Error(std::string("gemm: ") + what + " = " + std::to_string(v) +
                " is outside what BLAS can index");
  return blasint(v);
}

void blas(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, float alpha,
          const float *a, blasint lda, const float *b, blasint ldb, float beta, float *c,
          blasint ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void blas(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint m, blasint n, blasint k, double alpha,
          const double *a, blasint lda, const double *b, blasint ldb, double beta, double *c,
          blasint ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

} // namespace

void setBlasThreads(int threads) {
  // openblas_set_num_threads is process-wide and not free: only call it on change.
  static std::atomic<int> current{-1};
  if (threads < 1)
    threads = 1;
  if (current.exchange(threads) != threads)
    openblas_set_num_threads(threads);
}

template <class T>
void gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, T alpha, const T *a,
          const T *b, T beta, T *c) {
  if (m == 0 || n == 0)
    return;
  if (k == 0) {
    // An empty sum: C = beta * C (BLAS would also do this, but not all accept k = 0).
    for (int64_t i = 0; i < m * n; ++i)
      c[i] = beta == T(0) ? T(0) : beta * c[i];
    return;
  }
  blasint M = toBlasInt(m, "m"), N = toBlasInt(n, "n"), K = toBlasInt(k, "k");
  CBLAS_TRANSPOSE ta = transA ? CblasTrans : CblasNoTrans, tb = transB ? CblasTrans : CblasNoTrans;
  blasint lda = transA ? M : K, ldb = transB ? K : N;
  // OpenBLAS runs single-threaded (setBlasThreads(1) in the executor) and the GEMM is
  // split across our own pool in static blocks of rows (or of columns when there are
  // few rows): two thread pools on the same cores, OpenBLAS's spinning between calls,
  // made small models several times slower than one thread. Each element's sum runs
  // over K in the same order whatever the split.
  int threads = currentThreadPool().size();
  if (threads <= 1 || double(m) * double(n) * double(k) < double(1 << 21)) {
    blas(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, N);
    return;
  }
  bool byRows = m >= 4 * int64_t(threads) || m >= n;
  int64_t extent = byRows ? m : n;
  int64_t chunks = std::min<int64_t>(threads, extent);
  parallelFor(chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      int64_t lo = extent * i / chunks, hi = extent * (i + 1) / chunks;
      if (lo == hi)
        continue;
      if (byRows)
        blas(ta, tb, blasint(hi - lo), N, K, alpha, transA ? a + lo : a + lo * K, lda, b, ldb,
             beta, c + lo * N, N);
      else
        blas(ta, tb, M, blasint(hi - lo), K, alpha, a, lda, transB ? b + lo * K : b + lo, ldb,
             beta, c + lo, N);
    }
  });
}

template <class T>
void gemmStridedBatched(bool transA, bool transB, int64_t m, int64_t n, int64_t k, T alpha,
                        const T *a, int64_t strideA, const T *b, int64_t strideB, T beta, T *c,
                        int64_t strideC, int64_t batch) {
  // Sequential over the batch: each GEMM is already split across the pool.
  for (int64_t i = 0; i < batch; ++i)
    gemm(transA, transB, m, n, k, alpha, a + i * strideA, b + i * strideB, beta, c + i * strideC);
}

//===--- Convolution ---------------------------------------------------------===//
//
// Samples are processed in groups of G: im2col of the group is one [C*R*S, G*P*Q]
// matrix, so one GEMM covers G samples (small images would otherwise make many tiny
// GEMMs). G depends only on the shape (a workspace budget), so the summation order,
// and hence the result, does not depend on the thread count.

namespace {

constexpr int64_t kConvWorkspaceElems = int64_t(1) << 22;

void checkConv(const ConvShape &s, const char *kind) {
  if (s.strideH < 1 || s.strideW < 1 || s.padH < 0 || s.padW < 0 || s.r < 1 || s.s < 1 ||
      s.p() < 1 || s.q() < 1)
    throw Error(std::string("conv2d ") + kind + ": invalid geometry (output " +
                std::to_string(s.p()) + "x" + std::to_string(s.q()) + ")");
}

int64_t groupSize(const ConvShape &s) {
  int64_t perSample = s.c * s.r * s.s * s.p() * s.q() + s.k * s.p() * s.q();
  return std::max<int64_t>(
      1, std::min<int64_t>(s.n, kConvWorkspaceElems / std::max<int64_t>(1, perSample)));
}

/// col[(c*R + r)*S + s][g*PQ + p*Q + q] = x[n0+g, c, p*sh + r - ph, q*sw + s - pw] (or 0).
template <class T> void im2col(const ConvShape &sh, const T *x, int64_t n0, int64_t G, T *col) {
  const int64_t P = sh.p(), Q = sh.q(), PQ = P * Q, ld = G * PQ;
  parallelFor(G * sh.c, grainFor(sh.r * sh.s * PQ), [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      int64_t g = item / sh.c, ch = item % sh.c;
      const T *plane = x + ((n0 + g) * sh.c + ch) * sh.h * sh.w;
      for (int64_t r = 0; r < sh.r; ++r)
        for (int64_t s = 0; s < sh.s; ++s) {
          T *dst = col + ((ch * sh.r + r) * sh.s + s) * ld + g * PQ;
          for (int64_t p = 0; p < P; ++p) {
            int64_t ih = p * sh.strideH + r - sh.padH;
            T *row = dst + p * Q;
            if (ih < 0 || ih >= sh.h) {
              std::fill(row, row + Q, T(0));
              continue;
            }
            const T *src = plane + ih * sh.w;
            for (int64_t q = 0; q < Q; ++q) {
              int64_t iw = q * sh.strideW + s - sh.padW;
              row[q] = (iw >= 0 && iw < sh.w) ? src[iw] : T(0);
            }
          }
        }
    }
  });
}

/// The adjoint of im2col: dx[n0+g, c] += the columns' contributions. Each (g, c)
/// plane is written by one task, in a fixed order.
template <class T> void col2im(const ConvShape &sh, const T *col, int64_t n0, int64_t G, T *dx) {
  const int64_t P = sh.p(), Q = sh.q(), PQ = P * Q, ld = G * PQ;
  parallelFor(G * sh.c, grainFor(sh.r * sh.s * PQ), [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      int64_t g = item / sh.c, ch = item % sh.c;
      T *plane = dx + ((n0 + g) * sh.c + ch) * sh.h * sh.w;
      for (int64_t r = 0; r < sh.r; ++r)
        for (int64_t s = 0; s < sh.s; ++s) {
          const T *src = col + ((ch * sh.r + r) * sh.s + s) * ld + g * PQ;
          for (int64_t p = 0; p < P; ++p) {
            int64_t ih = p * sh.strideH + r - sh.padH;
            if (ih < 0 || ih >= sh.h)
              continue;
            T *row = plane + ih * sh.w;
            const T *srow = src + p * Q;
            for (int64_t q = 0; q < Q; ++q) {
              int64_t iw = q * sh.strideW + s - sh.padW;
              if (iw >= 0 && iw < sh.w)
                row[iw] += srow[q];
            }
          }
        }
    }
  });
}

/// dst[k][g*PQ + j] = y[n0+g, k, j]: gathers a group's [K, G*PQ] matrix.
template <class T>
void gatherGroup(const T *y, int64_t K, int64_t PQ, int64_t n0, int64_t G, T *dst) {
  parallelFor(G * K, grainFor(PQ), [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      int64_t g = item / K, k = item % K;
      std::memcpy(dst + k * G * PQ + g * PQ, y + ((n0 + g) * K + k) * PQ, size_t(PQ) * sizeof(T));
    }
  });
}

/// y[n0+g, k, j] (=|+=) src[k][g*PQ + j].
template <class T>
void scatterGroup(const T *src, int64_t K, int64_t PQ, int64_t n0, int64_t G, bool accumulate,
                  T *y) {
  parallelFor(G * K, grainFor(PQ), [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      int64_t g = item / K, k = item % K;
      const T *s = src + k * G * PQ + g * PQ;
      T *d = y + ((n0 + g) * K + k) * PQ;
      if (accumulate)
        for (int64_t j = 0; j < PQ; ++j)
          d[j] += s[j];
      else
        std::memcpy(d, s, size_t(PQ) * sizeof(T));
    }
  });
}

} // namespace

template <class T>
void conv2dForward(const ConvShape &sh, const T *x, const T *w, T *y, bool accumulate) {
  checkConv(sh, "forward");
  const int64_t PQ = sh.p() * sh.q(), CRS = sh.c * sh.r * sh.s, G = groupSize(sh);
  std::vector<T> col(size_t(CRS * G * PQ));
  std::vector<T> tmp(G > 1 ? size_t(sh.k * G * PQ) : 0);
  for (int64_t n0 = 0; n0 < sh.n; n0 += G) {
    int64_t g = std::min(G, sh.n - n0);
    im2col(sh, x, n0, g, col.data());
    if (g == 1) {
      gemm<T>(false, false, sh.k, PQ, CRS, T(1), w, col.data(), accumulate ? T(1) : T(0),
              y + n0 * sh.k * PQ);
    } else {
      gemm<T>(false, false, sh.k, g * PQ, CRS, T(1), w, col.data(), T(0), tmp.data());
      scatterGroup(tmp.data(), sh.k, PQ, n0, g, accumulate, y);
    }
  }
}

template <class T>
void conv2dBackwardInput(const ConvShape &sh, const T *dy, const T *w, T *dx, bool accumulate) {
  checkConv(sh, "backward-input");
  const int64_t PQ = sh.p() * sh.q(), CRS = sh.c * sh.r * sh.s, G = groupSize(sh);
  if (!accumulate)
    std::fill(dx, dx + sh.n * sh.c * sh.h * sh.w, T(0));
  std::vector<T> col(size_t(CRS * G * PQ));
  std::vector<T> dyG(G > 1 ? size_t(sh.k * G * PQ) : 0);
  for (int64_t n0 = 0; n0 < sh.n; n0 += G) {
    int64_t g = std::min(G, sh.n - n0);
    const T *dyMat = dy + n0 * sh.k * PQ;
    if (g > 1) {
      gatherGroup(dy, sh.k, PQ, n0, g, dyG.data());
      dyMat = dyG.data();
    }
    gemm<T>(true, false, CRS, g * PQ, sh.k, T(1), w, dyMat, T(0), col.data());
    col2im(sh, col.data(), n0, g, dx);
  }
}

template <class T>
void conv2dBackwardWeight(const ConvShape &sh, const T *x, const T *dy, T *dw, bool accumulate) {
  checkConv(sh, "backward-weight");
  const int64_t PQ = sh.p() * sh.q(), CRS = sh.c * sh.r * sh.s, G = groupSize(sh);
  if (sh.n == 0 && !accumulate)
    std::fill(dw, dw + sh.k * CRS, T(0));
  std::vector<T> col(size_t(CRS * G * PQ));
  std::vector<T> dyG(G > 1 ? size_t(sh.k * G * PQ) : 0);
  for (int64_t n0 = 0; n0 < sh.n; n0 += G) {
    int64_t g = std::min(G, sh.n - n0);
    im2col(sh, x, n0, g, col.data());
    const T *dyMat = dy + n0 * sh.k * PQ;
    if (g > 1) {
      gatherGroup(dy, sh.k, PQ, n0, g, dyG.data());
      dyMat = dyG.data();
    }
    T beta = (n0 == 0 && !accumulate) ? T(0) : T(1);
    gemm<T>(false, true, sh.k, CRS, g * PQ, T(1), dyMat, col.data(), beta, dw);
  }
}

#define MANTISSA_INSTANTIATE(T)                                                                    \
  template void gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T *, const T *, T, T *);   \
  template void gemmStridedBatched<T>(bool, bool, int64_t, int64_t, int64_t, T, const T *,         \
                                      int64_t, const T *, int64_t, T, T *, int64_t, int64_t);      \
  template void conv2dForward<T>(const ConvShape &, const T *, const T *, T *, bool);              \
  template void conv2dBackwardInput<T>(const ConvShape &, const T *, const T *, T *, bool);        \
  template void conv2dBackwardWeight<T>(const ConvShape &, const T *, const T *, T *, bool);
MANTISSA_INSTANTIATE(float)
MANTISSA_INSTANTIATE(double)
#undef MANTISSA_INSTANTIATE

} // namespace kernels
} // namespace mantissa
