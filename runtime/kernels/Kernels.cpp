//===- Kernels.cpp - pooling, batch norm, losses, data movement -----------===//
#include "runtime/kernels/Kernels.h"
#include "runtime/kernels/IterationSpace.h"

#include "common/Error.h"
#include "runtime/kernels/Parallel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

namespace mantissa {
namespace kernels {

//===--- Max pooling ----------------------------------------------------------===//

template <class T> void maxPool2dForward(const PoolShape &sh, const T *x, T *y, int32_t *indices) {
  const int64_t OH = sh.oh(), OW = sh.ow(), planes = sh.n * sh.c;
  parallelFor(planes, grainFor(sh.h * sh.w), [&](int64_t begin, int64_t end) {
    for (int64_t pl = begin; pl < end; ++pl) {
      const T *in = x + pl * sh.h * sh.w;
      T *out = y + pl * OH * OW;
      int32_t *ind = indices ? indices + pl * OH * OW : nullptr;
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          int64_t h0 = i * sh.stride, w0 = j * sh.stride;
          // PyTorch's CPU loop: start at -inf with the window's first index; a larger
          // value or a NaN takes over.
          T best = -std::numeric_limits<T>::infinity();
          int64_t bestIndex = h0 * sh.w + w0;
          for (int64_t r = 0; r < sh.kernel; ++r)
            for (int64_t s = 0; s < sh.kernel; ++s) {
              int64_t index = (h0 + r) * sh.w + (w0 + s);
              T v = in[index];
              if (v > best || std::isnan(v)) {
                best = v;
                bestIndex = index;
              }
            }
          out[i * OW + j] = best;
          if (ind)
            ind[i * OW + j] = int32_t(bestIndex);
        }
    }
  });
}

template <class T>
int64_t maxPool2dArgmax(const PoolShape &sh, const T *plane, int64_t i, int64_t j, T y) {
  const int64_t h0 = i * sh.stride, w0 = j * sh.stride;
  const bool nan = std::isnan(y);
  int64_t found = -1;
  for (int64_t r = 0; r < sh.kernel; ++r)
    for (int64_t s = 0; s < sh.kernel; ++s) {
      int64_t index = (h0 + r) * sh.w + (w0 + s);
      T v = plane[index];
      if (nan ? std::isnan(v) : found < 0 && v == y)
        found = index;
    }
  // None equal (y = -inf over an all -inf window is found; only an x and y that are
  // not input and result of one pooling get here): the forward's starting index.
  return found >= 0 ? found : h0 * sh.w + w0;
}

template <class T>
void maxPool2dBackward(const PoolShape &sh, const T *dy, const T *x, const T *y, T *dx) {
  const int64_t OH = sh.oh(), OW = sh.ow(), HW = sh.h * sh.w, planes = sh.n * sh.c;
  parallelFor(planes, grainFor(HW), [&](int64_t begin, int64_t end) {
    for (int64_t pl = begin; pl < end; ++pl) {
      T *d = dx + pl * HW;
      std::fill(d, d + HW, T(0));
      const T *g = dy + pl * OH * OW, *in = x + pl * HW, *out = y + pl * OH * OW;
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j)
          d[maxPool2dArgmax(sh, in, i, j, out[i * OW + j])] += g[i * OW + j];
    }
  });
}

//===--- Batch normalisation ---------------------------------------------------===//

template <class T>
void batchNormTrainForward(const BatchNormShape &sh, const T *x, const T *gamma, const T *beta,
                           T *y, T *savedMean, T *savedInvstd, T *runningMean, T *runningVar,
                           double eps, double momentum) {
  const int64_t m = sh.n * sh.hw;
  if (m < 2)
    throw Error("batch_norm: training needs more than one value per channel, got " +
                std::to_string(m));
  // One task per channel: each channel's statistics are summed by one thread in a
  // fixed order (two passes, in double: mean first, then squared deviations).
  parallelFor(sh.c, grainFor(sh.n * sh.hw), [&](int64_t begin, int64_t end) {
    for (int64_t ch = begin; ch < end; ++ch) {
      double sum = 0;
      for (int64_t i = 0; i < sh.n; ++i) {
        const T *p = x + (i * sh.c + ch) * sh.hw;
        for (int64_t j = 0; j < sh.hw; ++j)
          sum += double(p[j]);
      }
      double mean = sum / double(m);
      double sq = 0;
      for (int64_t i = 0; i < sh.n; ++i) {
        const T *p = x + (i * sh.c + ch) * sh.hw;
        for (int64_t j = 0; j < sh.hw; ++j) {
          double d = double(p[j]) - mean;
          sq += d * d;
        }
      }
      double var = sq / double(m);
      // Normalise with the stored (T) statistics so that backward, which only sees
      // the saved values, differentiates exactly the function forward computed.
      T meanT = T(mean);
      T invstdT = T(1.0 / std::sqrt(var + eps));
      if (savedMean)
        savedMean[ch] = meanT;
      if (savedInvstd)
        savedInvstd[ch] = invstdT;
      double g = gamma ? double(gamma[ch]) : 1.0, b = beta ? double(beta[ch]) : 0.0;
      for (int64_t i = 0; i < sh.n; ++i) {
        const T *p = x + (i * sh.c + ch) * sh.hw;
        T *q = y + (i * sh.c + ch) * sh.hw;
        for (int64_t j = 0; j < sh.hw; ++j)
          q[j] = T((double(p[j]) - double(meanT)) * double(invstdT) * g + b);
      }
      double unbiased = var * double(m) / double(m - 1);
      if (runningMean)
        runningMean[ch] = T((1.0 - momentum) * double(runningMean[ch]) + momentum * mean);
      if (runningVar)
        runningVar[ch] = T((1.0 - momentum) * double(runningVar[ch]) + momentum * unbiased);
    }
  });
}

template <class T>
void batchNormEvalForward(const BatchNormShape &sh, const T *x, const T *gamma, const T *beta,
                          const T *runningMean, const T *runningVar, T *y, double eps) {
  parallelFor(sh.c, grainFor(sh.n * sh.hw), [&](int64_t begin, int64_t end) {
    for (int64_t ch = begin; ch < end; ++ch) {
      double mean = double(runningMean[ch]);
      double invstd = 1.0 / std::sqrt(double(runningVar[ch]) + eps);
      double g = gamma ? double(gamma[ch]) : 1.0, b = beta ? double(beta[ch]) : 0.0;
      for (int64_t i = 0; i < sh.n; ++i) {
        const T *p = x + (i * sh.c + ch) * sh.hw;
        T *q = y + (i * sh.c + ch) * sh.hw;
        for (int64_t j = 0; j < sh.hw; ++j)
          q[j] = T((double(p[j]) - mean) * invstd * g + b);
      }
    }
  });
}

template <class T>
void batchNormBackward(const BatchNormShape &sh, const T *dy, const T *x, const T *gamma,
                       const T *savedMean, const T *savedInvstd, T *dx, T *dgamma, T *dbeta,
                       const T *mask) {
  const double m = double(sh.n * sh.hw);
  // relu_grad's rule: the gradient where the relu's result is > 0 (NaN: 0).
  auto grad = [&](int64_t i) { return !mask || mask[i] > T(0) ? double(dy[i]) : 0.0; };
  parallelFor(sh.c, grainFor(sh.n * sh.hw), [&](int64_t begin, int64_t end) {
    for (int64_t ch = begin; ch < end; ++ch) {
      double mean = double(savedMean[ch]), invstd = double(savedInvstd[ch]);
      double sumDy = 0, sumDyXhat = 0;
      for (int64_t i = 0; i < sh.n; ++i) {
        const int64_t base = (i * sh.c + ch) * sh.hw;
        const T *p = x + base;
        for (int64_t j = 0; j < sh.hw; ++j) {
          const double g = grad(base + j);
          sumDy += g;
          sumDyXhat += g * (double(p[j]) - mean) * invstd;
        }
      }
      if (dbeta)
        dbeta[ch] = T(sumDy);
      if (dgamma)
        dgamma[ch] = T(sumDyXhat);
      if (!dx)
        continue;
      // dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)).
      double scale = (gamma ? double(gamma[ch]) : 1.0) * invstd;
      double meanDy = sumDy / m, meanDyXhat = sumDyXhat / m;
      for (int64_t i = 0; i < sh.n; ++i) {
        const int64_t base = (i * sh.c + ch) * sh.hw;
        const T *p = x + base;
        T *d = dx + base;
        for (int64_t j = 0; j < sh.hw; ++j) {
          double xhat = (double(p[j]) - mean) * invstd;
          d[j] = T(scale * (grad(base + j) - meanDy - xhat * meanDyXhat));
        }
      }
    }
  });
}

//===--- Losses ----------------------------------------------------------------===//

namespace {

template <class T> int64_t checkedLabel(const T *labels, int64_t row, int64_t c) {
  T l = labels[row];
  if (!(l >= T(0) && l < T(c) && l == std::floor(l)))
    throw Error("softmax_cross_entropy: label " + std::to_string(double(l)) + " in row " +
                std::to_string(row) + " is not a class index in [0, " + std::to_string(c) + ")");
  return int64_t(l);
}

/// The row's maximum and sum of exp(x - max), in double: both cross-entropy passes
/// need exactly the same softmax normaliser.
template <class T> void softmaxRowStats(const T *row, int64_t c, double &mx, double &sum) {
  mx = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < c; ++j)
    mx = std::max(mx, double(row[j]));
  sum = 0;
  for (int64_t j = 0; j < c; ++j)
    sum += std::exp(double(row[j]) - mx);
}

/// Fixed-size blocks (independent of the thread count) for deterministic sums.
constexpr int64_t kSumBlock = 4096;

template <class F> double blockedSum(int64_t count, F term) {
  int64_t blocks = (count + kSumBlock - 1) / kSumBlock;
  std::vector<double> partial(size_t(blocks), 0.0);
  parallelFor(blocks, 4, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      double s = 0;
      for (int64_t i = b * kSumBlock, e = std::min(count, (b + 1) * kSumBlock); i < e; ++i)
        s += term(i);
      partial[b] = s;
    }
  });
  double total = 0;
  for (double p : partial)
    total += p;
  return total;
}

} // namespace

template <class T> T softmaxCrossEntropy(int64_t n, int64_t c, const T *logits, const T *labels) {
  // Labels are validated serially first so that the error names the first bad row.
  for (int64_t i = 0; i < n; ++i)
    checkedLabel(labels, i, c);
  std::vector<double> rowLoss(static_cast<size_t>(n));
  parallelFor(n, 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T *row = logits + i * c;
      double mx, sum;
      softmaxRowStats(row, c, mx, sum);
      rowLoss[i] = std::log(sum) + mx - double(row[int64_t(labels[i])]);
    }
  });
  double total = 0;
  for (double l : rowLoss)
    total += l;
  return T(total / double(n));
}

template <class T>
void softmaxCrossEntropyBackward(int64_t n, int64_t c, const T *logits, const T *labels, T dloss,
                                 T *dlogits) {
  for (int64_t i = 0; i < n; ++i)
    checkedLabel(labels, i, c);
  const double scale = double(dloss) / double(n);
  parallelFor(n, 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T *row = logits + i * c;
      T *d = dlogits + i * c;
      double mx, sum;
      softmaxRowStats(row, c, mx, sum);
      int64_t label = int64_t(labels[i]);
      for (int64_t j = 0; j < c; ++j) {
        double p = std::exp(double(row[j]) - mx) / sum;
        d[j] = T((p - (j == label ? 1.0 : 0.0)) * scale);
      }
    }
  });
}

template <class T> T mseLoss(int64_t count, const T *a, const T *b) {
  double s = blockedSum(count, [&](int64_t i) {
    double d = double(a[i]) - double(b[i]);
    return d * d;
  });
  return T(s / double(count));
}

template <class T> void mseLossBackward(int64_t count, const T *a, const T *b, T dloss, T *da) {
  const double scale = 2.0 * double(dloss) / double(count);
  parallelFor(count, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      da[i] = T((double(a[i]) - double(b[i])) * scale);
  });
}

//===--- Data movement and reductions -------------------------------------------===//

template <class T>
void reduce(const std::vector<int64_t> &inShape, const std::vector<int64_t> &outShape, bool mean,
            const T *in, T *out) {
  // Alternating kept / reduced dimensions with their input strides.
  const ReductionSpace space = collapseReduction(inShape, outShape);
  using Dim = ReductionSpace::Dim;
  const std::vector<Dim> &kept = space.kept, &reduced = space.reduced;
  const int64_t outCount = space.outCount, reducedCount = space.reducedCount;
  if (outCount == 0)
    return;
  // kept/reduced are innermost first; offsets of a kept index are computed per output.
  const double scale = mean ? 1.0 / double(reducedCount) : 1.0;
  parallelFor(outCount, 64, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> idx(reduced.size());
    for (int64_t o = begin; o < end; ++o) {
      int64_t base = 0, rem = o;
      for (const Dim &d : kept) {
        base += (rem % d.size) * d.stride;
        rem /= d.size;
      }
      double sum = 0;
      if (reduced.empty()) {
        sum = double(in[base]);
      } else if (reducedCount > 0) {
        // Row-major over the reduced index space, innermost dimension fastest.
        std::fill(idx.begin(), idx.end(), 0);
        const Dim inner = reduced[0];
        int64_t off = base;
        for (;;) {
          const T *p = in + off;
          for (int64_t i = 0; i < inner.size; ++i)
            sum += double(p[i * inner.stride]);
          size_t d = 1;
          for (; d < reduced.size(); ++d) {
            ++idx[d];
            off += reduced[d].stride;
            if (idx[d] < reduced[d].size)
              break;
            off -= idx[d] * reduced[d].stride;
            idx[d] = 0;
          }
          if (d == reduced.size())
            break;
        }
      }
      out[o] = T(sum * scale);
    }
  });
}

template <class T>
void concat(int64_t outer, const std::vector<int64_t> &rowSizes,
            const std::vector<const T *> &inputs, T *out) {
  int64_t outRow = 0;
  for (int64_t r : rowSizes)
    outRow += r;
  parallelFor(outer, 64, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      T *dst = out + row * outRow;
      for (size_t i = 0; i < inputs.size(); ++i) {
        std::memcpy(dst, inputs[i] + row * rowSizes[i], size_t(rowSizes[i]) * sizeof(T));
        dst += rowSizes[i];
      }
    }
  });
}

template <class T>
void slice(int64_t outer, int64_t inRow, int64_t offset, int64_t outRow, const T *in, T *out) {
  parallelFor(outer, 64, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row)
      std::memcpy(out + row * outRow, in + row * inRow + offset, size_t(outRow) * sizeof(T));
  });
}

template <class T>
void transpose(const std::vector<int64_t> &inShape, const std::vector<int64_t> &perm, const T *in,
               T *out) {
  const size_t rank = inShape.size();
  std::vector<int64_t> inStride(rank, 1), outShape(rank), srcStride(rank);
  for (size_t d = rank; d-- > 1;)
    inStride[d - 1] = inStride[d] * inShape[d];
  int64_t total = 1;
  for (size_t d = 0; d < rank; ++d) {
    outShape[d] = inShape[perm[d]];
    srcStride[d] = inStride[perm[d]];
    total *= outShape[d];
  }
  if (total == 0)
    return;
  if (rank == 0) {
    out[0] = in[0];
    return;
  }
  parallelFor(total, 1 << 12, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> idx(rank);
    int64_t off = 0, rem = begin;
    for (size_t d = rank; d-- > 0;) {
      idx[d] = rem % outShape[d];
      rem /= outShape[d];
      off += idx[d] * srcStride[d];
    }
    for (int64_t o = begin; o < end; ++o) {
      out[o] = in[off];
      for (size_t d = rank; d-- > 0;) {
        ++idx[d];
        off += srcStride[d];
        if (idx[d] < outShape[d])
          break;
        off -= idx[d] * srcStride[d];
        idx[d] = 0;
      }
    }
  });
}

template <class T> void copy(int64_t count, const T *in, T *out) {
  if (in != out && count > 0)
    std::memmove(out, in, size_t(count) * sizeof(T));
}

template <class T> bool allFinite(int64_t count, const T *data, const T *multiplier) {
  const T m = multiplier ? *multiplier : T(1); // x * 1 is x, NaN and inf included
  for (int64_t i = 0; i < count; ++i)
    if (!std::isfinite(data[i] * m))
      return false;
  return true;
}

#define MANTISSA_INSTANTIATE(T)                                                                    \
  template void maxPool2dForward<T>(const PoolShape &, const T *, T *, int32_t *);                 \
  template int64_t maxPool2dArgmax<T>(const PoolShape &, const T *, int64_t, int64_t, T);          \
  template void maxPool2dBackward<T>(const PoolShape &, const T *, const T *, const T *, T *);     \
  template void batchNormTrainForward<T>(const BatchNormShape &, const T *, const T *, const T *,  \
                                         T *, T *, T *, T *, T *, double, double);                 \
  template void batchNormEvalForward<T>(const BatchNormShape &, const T *, const T *, const T *,   \
                                        const T *, const T *, T *, double);                        \
  template void batchNormBackward<T>(const BatchNormShape &, const T *, const T *, const T *,      \
                                     const T *, const T *, T *, T *, T *, const T *);              \
  template T softmaxCrossEntropy<T>(int64_t, int64_t, const T *, const T *);                       \
  template void softmaxCrossEntropyBackward<T>(int64_t, int64_t, const T *, const T *, T, T *);    \
  template T mseLoss<T>(int64_t, const T *, const T *);                                            \
  template void mseLossBackward<T>(int64_t, const T *, const T *, T, T *);                         \
  template void reduce<T>(const std::vector<int64_t> &, const std::vector<int64_t> &, bool,        \
                          const T *, T *);                                                         \
  template void concat<T>(int64_t, const std::vector<int64_t> &, const std::vector<const T *> &,   \
                          T *);                                                                    \
  template void slice<T>(int64_t, int64_t, int64_t, int64_t, const T *, T *);                      \
  template void transpose<T>(const std::vector<int64_t> &, const std::vector<int64_t> &,           \
                             const T *, T *);                                                      \
  template void copy<T>(int64_t, const T *, T *);                                                  \
  template bool allFinite<T>(int64_t, const T *, const T *);
MANTISSA_INSTANTIATE(float)
MANTISSA_INSTANTIATE(double)
#undef MANTISSA_INSTANTIATE

} // namespace kernels
} // namespace mantissa
