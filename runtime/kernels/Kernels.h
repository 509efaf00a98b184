//===- Kernels.h - the CPU kernels of the runtime --------------------------===//
//
// Every kernel is templated on the compute type T: float (what training runs in)
// or double (the reference mode used for finite-difference gradient checks). All
// tensors are row-major, NCHW, contiguous. Kernels compute in T (accumulating
// statistics in double) and do not round to fp16/bf16 themselves: the executor
// rounds each output to its tensor's dtype afterwards. Inputs are already stored
// rounded, so e.g. a GEMM of fp16 operands with fp32 accumulation is emulated
// exactly up to summation order.
//
// Parallel kernels run on currentThreadPool() and are deterministic: chunks write
// disjoint outputs and reductions combine partial results in a fixed order that
// does not depend on the number of threads.
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <vector>

namespace mantissa {
namespace kernels {

//===--- GEMM (OpenBLAS) ---------------------------------------------------===//

/// C[m,n] = alpha * op(A) op(B) + beta * C, row-major; op(A) is [m,k] (A stored
/// [k,m] when transA), op(B) is [k,n] (B stored [n,k] when transB). beta == 0
/// overwrites C without reading it (NaNs in C do not leak through).
template <class T>
void gemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, T alpha, const T *a,
          const T *b, T beta, T *c);

/// `batch` independent GEMMs; matrix i of A, B, C starts at a + i*strideA etc.
template <class T>
void gemmStridedBatched(bool transA, bool transB, int64_t m, int64_t n, int64_t k, T alpha,
                        const T *a, int64_t strideA, const T *b, int64_t strideB, T beta, T *c,
                        int64_t strideC, int64_t batch);

/// Sets OpenBLAS's thread count (a process-wide setting of OpenBLAS).
void setBlasThreads(int threads);

//===--- Convolution ---------------------------------------------------------===//

/// y[n,k,p,q] = sum_{c,r,s} x[n,c,p*strideH+r-padH, q*strideW+s-padW] * w[k,c,r,s],
/// out-of-range x reading as 0. x is [n,c,h,w], w [k,c,r,s], y [n,k,p(),q()].
struct ConvShape {
  int64_t n, c, h, w;
  int64_t k, r, s;
  int64_t strideH = 1, strideW = 1, padH = 0, padW = 0;
  int64_t p() const { return (h + 2 * padH - r) / strideH + 1; }
  int64_t q() const { return (w + 2 * padW - s) / strideW + 1; }
};

/// Forward: y = conv(x, w). With `accumulate`, adds into y.
template <class T>
void conv2dForward(const ConvShape &shape, const T *x, const T *w, T *y, bool accumulate = false);
/// dx = conv^T(dy, w): the adjoint of conv2dForward in x (a transposed convolution).
template <class T>
void conv2dBackwardInput(const ConvShape &shape, const T *dy, const T *w, T *dx,
                         bool accumulate = false);
/// dw = the adjoint of conv2dForward in w, summed over the batch.
template <class T>
void conv2dBackwardWeight(const ConvShape &shape, const T *x, const T *dy, T *dw,
                          bool accumulate = false);

//===--- Max pooling ----------------------------------------------------------===//

/// PyTorch's max_pool2d without padding or dilation: output floor((h-kernel)/stride)+1.
struct PoolShape {
  int64_t n, c, h, w;
  int64_t kernel, stride;
  int64_t oh() const { return (h - kernel) / stride + 1; }
  int64_t ow() const { return (w - kernel) / stride + 1; }
};

/// y[n,c,i,j] = max of the window; indices[n,c,i,j] (when not null) = flat index
/// (row*w + col) of the maximum within the (n,c) plane, the first one on ties; a NaN
/// wins, the last one (as in PyTorch).
template <class T>
void maxPool2dForward(const PoolShape &shape, const T *x, T *y, int32_t *indices);
/// The flat index in its plane of the element maxPool2dForward picked for window
/// (i, j), found from the plane of x and the window's y: the last NaN if y is NaN,
/// else the first element equal to y.
template <class T>
int64_t maxPool2dArgmax(const PoolShape &shape, const T *plane, int64_t i, int64_t j, T y);
/// dx = 0, then dx[plane][argmax] += dy for each window in order (overlapping windows
/// accumulate); x and y are the forward's input and result.
template <class T>
void maxPool2dBackward(const PoolShape &shape, const T *dy, const T *x, const T *y, T *dx);

//===--- Batch normalisation ---------------------------------------------------===//

struct BatchNormShape {
  int64_t n, c, hw; // x is [n, c, hw]; statistics per channel over n*hw values
};

/// Training forward, exactly torch.nn.BatchNorm2d in train mode: normalises with the
/// batch mean and biased variance, saves mean and invstd = 1/sqrt(var+eps), and
/// updates running_mean/var in place with the unbiased variance:
/// running = (1 - momentum) * running + momentum * batch. gamma/beta may be null
/// (1 and 0); savedMean/savedInvstd may be null. Throws Error if n*hw < 2.
template <class T>
void batchNormTrainForward(const BatchNormShape &shape, const T *x, const T *gamma, const T *beta,
                           T *y, T *savedMean, T *savedInvstd, T *runningMean, T *runningVar,
                           double eps, double momentum);
/// Eval forward with the running statistics.
template <class T>
void batchNormEvalForward(const BatchNormShape &shape, const T *x, const T *gamma, const T *beta,
                          const T *runningMean, const T *runningVar, T *y, double eps);
/// Backward of the training forward (batch statistics): dx, dgamma = sum dy*xhat,
/// dbeta = sum dy. gamma may be null (1); dgamma/dbeta may be null (not wanted).
/// `mask` (may be null): the gradient that flows in is mask > 0 ? dy : 0 (a folded
/// relu_grad, mask being the relu's result).
template <class T>
void batchNormBackward(const BatchNormShape &shape, const T *dy, const T *x, const T *gamma,
                       const T *savedMean, const T *savedInvstd, T *dx, T *dgamma, T *dbeta,
                       const T *mask = nullptr);

//===--- Losses ----------------------------------------------------------------===//

/// Mean over n rows of -log softmax(logits[row])[label[row]]; labels are integers
/// stored as T. Throws Error naming the row if a label is not an integer in [0, c).
template <class T> T softmaxCrossEntropy(int64_t n, int64_t c, const T *logits, const T *labels);
/// dlogits = (softmax(logits) - onehot(labels)) * dloss / n.
template <class T>
void softmaxCrossEntropyBackward(int64_t n, int64_t c, const T *logits, const T *labels, T dloss,
                                 T *dlogits);

/// mean((a - b)^2) over count elements.
template <class T> T mseLoss(int64_t count, const T *a, const T *b);
/// da = 2 (a - b) / count * dloss.
template <class T> void mseLossBackward(int64_t count, const T *a, const T *b, T dloss, T *da);

//===--- Data movement and reductions -------------------------------------------===//

/// Sum (or mean) of `in` of inShape down to outShape: same rank, each out dim equal
/// to the in dim or 1 (reduced). Accumulates in double, in a fixed order.
template <class T>
void reduce(const std::vector<int64_t> &inShape, const std::vector<int64_t> &outShape, bool mean,
            const T *in, T *out);

/// out row r = concatenation of input i's row r (rowSizes[i] elements each).
template <class T>
void concat(int64_t outer, const std::vector<int64_t> &rowSizes,
            const std::vector<const T *> &inputs, T *out);
/// out row r = in row r [offset, offset + outRow).
template <class T>
void slice(int64_t outer, int64_t inRow, int64_t offset, int64_t outRow, const T *in, T *out);
/// out = in.permute(perm): out dim i is in dim perm[i].
template <class T>
void transpose(const std::vector<int64_t> &inShape, const std::vector<int64_t> &perm, const T *in,
               T *out);
template <class T> void copy(int64_t count, const T *in, T *out);
/// True if every element is finite; with a `multiplier` (a scalar), if every element
/// times it (rounded to T) is: the gradients, unscaled, without storing them unscaled.
template <class T> bool allFinite(int64_t count, const T *data, const T *multiplier = nullptr);

} // namespace kernels
} // namespace mantissa
