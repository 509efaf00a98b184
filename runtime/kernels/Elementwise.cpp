//===- Elementwise.cpp - block interpreter of elementwise programs --------===//
#include "runtime/kernels/Elementwise.h"
#include "runtime/kernels/IterationSpace.h"

#include "common/Error.h"
#include "runtime/kernels/Parallel.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace mantissa {
namespace kernels {

namespace {
// 256 elements per column: long enough to amortise the per-instruction dispatch,
// short enough that a few dozen live columns fit in L1/L2.
constexpr int64_t kBlock = 256;
// At least this many blocks per thread, so tiny kernels do not pay for a wake-up.
constexpr int64_t kGrainBlocks = 64;
} // namespace

template <class T> void roundToDType(plan::DType dtype, T *data, int64_t count) {
  if (dtype != plan::DType::F16 && dtype != plan::DType::BF16)
    return;
  parallelFor(count, 1 << 14, [&](int64_t b, int64_t e) {
    if (dtype == plan::DType::F16)
      for (int64_t i = b; i < e; ++i)
        data[i] = roundToF16(data[i]);
    else
      for (int64_t i = b; i < e; ++i)
        data[i] = roundToBF16(data[i]);
  });
}

std::string ElementwiseProgram::check(const plan::Instr *instrs, size_t count,
                                      const std::vector<int> &outputRegs, int numInputs) {
  if (count > 32767)
    return "program has " + std::to_string(count) + " instructions, at most 32767 allowed";
  for (size_t i = 0; i < count; ++i) {
    const plan::Instr &in = instrs[i];
    std::string where = "instruction " + std::to_string(i);
    if (in.op() >= kNumScalarOps)
      return where + ": op index " + std::to_string(in.op()) + " is not a scalar op (there are " +
             std::to_string(kNumScalarOps) + ")";
    ScalarOp op = ScalarOp(in.op());
    int arity = scalarOpArity(op);
    int16_t operands[3] = {in.a(), in.b(), in.c()};
    for (int j = 0; j < arity; ++j)
      if (operands[j] < 0 || size_t(operands[j]) >= i)
        return where + " (" + scalarOpName(op) + "): operand " + "abc"[j] + " is register " +
               std::to_string(operands[j]) + ", not an earlier register";
    if (op == ScalarOp::Load) {
      float imm = in.imm();
      if (!(imm >= 0 && imm < float(numInputs) && imm == std::floor(imm)))
        return where + " (Load): input number " + std::to_string(imm) + " is not in [0, " +
               std::to_string(numInputs) + ")";
    }
  }
  for (size_t o = 0; o < outputRegs.size(); ++o)
    if (outputRegs[o] < 0 || size_t(outputRegs[o]) >= count)
      return "output " + std::to_string(o) + " reads register " + std::to_string(outputRegs[o]) +
             ", but the program has " + std::to_string(count) + " instructions";
  return "";
}

ElementwiseProgram::ElementwiseProgram(std::vector<plan::Instr> instrs, std::vector<int> outputRegs,
                                       int numInputs)
    : instrs_(std::move(instrs)), outputRegs_(std::move(outputRegs)), numInputs_(numInputs) {
  std::string problem = check(instrs_.data(), instrs_.size(), outputRegs_, numInputs_);
  if (!problem.empty())
    throw Error("elementwise program: " + problem);

  // Liveness: a register's column is free after its last reader; outputs live to the
  // end. An instruction may write the column of an operand it reads last, since
  // every op reads element i before writing element i.
  int n = int(instrs_.size());
  std::vector<int> lastUse(n, -1);
  for (int i = 0; i < n; ++i) {
    const plan::Instr &in = instrs_[i];
    int arity = scalarOpArity(ScalarOp(in.op()));
    int16_t operands[3] = {in.a(), in.b(), in.c()};
    for (int j = 0; j < arity; ++j)
      lastUse[operands[j]] = i;
  }
  for (int r : outputRegs_)
    lastUse[r] = n;
  slots_.assign(n, -1);
  std::vector<int> freeSlots;
  for (int i = 0; i < n; ++i) {
    const plan::Instr &in = instrs_[i];
    int arity = scalarOpArity(ScalarOp(in.op()));
    int16_t operands[3] = {in.a(), in.b(), in.c()};
    for (int j = 0; j < arity; ++j) {
      int r = operands[j];
      bool dup = false; // the same register twice (x * x) is freed once
      for (int k = 0; k < j; ++k)
        dup |= operands[k] == r;
      if (lastUse[r] == i && !dup)
        freeSlots.push_back(slots_[r]);
    }
    if (!freeSlots.empty()) {
      slots_[i] = freeSlots.back();
      freeSlots.pop_back();
    } else {
      slots_[i] = numSlots_++;
    }
    if (lastUse[i] < i) // never read: its column is free again at once
      freeSlots.push_back(slots_[i]);
  }
}

namespace {

/// Copies `len` elements of an input, starting at flat iteration index `start`.
template <class T>
void gather(const T *base, const int64_t *strides, const int64_t *shape, int rank, int64_t start,
            int64_t len, int64_t *idx, T *out) {
  int64_t off = 0, rem = start;
  for (int d = rank - 1; d >= 0; --d) {
    idx[d] = rem % shape[d];
    rem /= shape[d];
    off += idx[d] * strides[d];
  }
  const int last = rank - 1;
  const int64_t st = strides[last];
  int64_t done = 0;
  for (;;) {
    int64_t run = std::min(len - done, shape[last] - idx[last]);
    const T *p = base + off;
    T *o = out + done;
    if (st == 1)
      std::memcpy(o, p, size_t(run) * sizeof(T));
    else if (st == 0)
      std::fill(o, o + run, *p);
    else
      for (int64_t i = 0; i < run; ++i)
        o[i] = p[i * st];
    done += run;
    if (done >= len)
      return;
    // The run ended at the end of the last dimension: carry into the outer ones.
    off -= idx[last] * st;
    idx[last] = 0;
    for (int d = last - 1; d >= 0; --d) {
      ++idx[d];
      off += strides[d];
      if (idx[d] < shape[d])
        break;
      off -= idx[d] * strides[d];
      idx[d] = 0;
    }
  }
}

template <class T>
void evalOp(ScalarOp op, float imm, int64_t len, const T *A, const T *B, const T *C, T *R) {
  // R may alias an operand (column reuse); each element is read before it is written.
  switch (op) {
#define MANTISSA_SCALAR_OP(Name, Arity, CpuExpr, CudaExpr)                                         \
  case ScalarOp::Name:                                                                             \
    for (int64_t i = 0; i < len; ++i) {                                                            \
      const T a = A[i], b = B[i], c = C[i];                                                        \
      (void)a, (void)b, (void)c, (void)imm;                                                        \
      R[i] = CpuExpr;                                                                              \
    }                                                                                              \
    break;
#include "common/ScalarOps.def"
  }
}

} // namespace

template <class T>
void runElementwise(const ElementwiseProgram &program, const std::vector<int64_t> &shape,
                    const std::vector<ElementwiseInput<T>> &inputs,
                    const std::vector<ElementwiseOutput<T>> &outputs) {
  if (int(inputs.size()) != program.numInputs())
    throw Error("elementwise: " + std::to_string(inputs.size()) + " inputs given, program reads " +
                std::to_string(program.numInputs()));
  if (outputs.size() != program.outputRegs().size())
    throw Error("elementwise: " + std::to_string(outputs.size()) + " outputs given, program has " +
                std::to_string(program.outputRegs().size()));
  int64_t total = 1;
  for (int64_t d : shape)
    total *= d;
  if (total <= 0)
    return;

  const size_t numIn = inputs.size();
  CollapsedSpace space = collapseIterationSpace(
      shape, numIn, [&](size_t j, size_t d) { return inputs[j].strides[d]; });
  std::vector<int64_t> &cshape = space.shape;
  std::vector<std::vector<int64_t>> &cstrides = space.strides;
  if (cshape.empty()) {
    cshape.push_back(1);
    for (auto &s : cstrides)
      s.push_back(0);
  }
  const int rank = int(cshape.size());

  const auto &instrs = program.instrs();
  const auto &outRegs = program.outputRegs();
  const int numSlots = program.numSlots();
  const int64_t numBlocks = (total + kBlock - 1) / kBlock;

  parallelFor(numBlocks, kGrainBlocks, [&](int64_t b0, int64_t b1) {
    // One extra column of zeros stands in for the operands an op does not read.
    std::vector<T> scratch(size_t(numSlots + 1) * kBlock, T(0));
    T *zeros = scratch.data() + size_t(numSlots) * kBlock;
    auto column = [&](int reg) { return scratch.data() + size_t(program.slot(reg)) * kBlock; };
    std::vector<int64_t> idx(rank);
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t start = blk * kBlock;
      const int64_t len = std::min(kBlock, total - start);
      for (size_t i = 0; i < instrs.size(); ++i) {
        const plan::Instr &in = instrs[i];
        ScalarOp op = ScalarOp(in.op());
        T *r = column(int(i));
        if (op == ScalarOp::Load) {
          int j = int(in.imm());
          gather(inputs[j].data, cstrides[j].data(), cshape.data(), rank, start, len, idx.data(),
                 r);
          continue;
        }
        if (op == ScalarOp::Const) {
          std::fill(r, r + len, T(in.imm()));
          continue;
        }
        int arity = scalarOpArity(op);
        const T *a = arity > 0 ? column(in.a()) : zeros;
        const T *b = arity > 1 ? column(in.b()) : zeros;
        const T *c = arity > 2 ? column(in.c()) : zeros;
        evalOp<T>(op, in.imm(), len, a, b, c, r);
      }
      for (size_t o = 0; o < outputs.size(); ++o) {
        const T *src = column(outRegs[o]);
        T *dst = outputs[o].data + start;
        switch (outputs[o].dtype) {
        case plan::DType::F16:
          for (int64_t i = 0; i < len; ++i)
            dst[i] = roundToF16(src[i]);
          break;
        case plan::DType::BF16:
          for (int64_t i = 0; i < len; ++i)
            dst[i] = roundToBF16(src[i]);
          break;
        default:
          std::memcpy(dst, src, size_t(len) * sizeof(T));
        }
      }
    }
  });
}

template void roundToDType<float>(plan::DType, float *, int64_t);
template void roundToDType<double>(plan::DType, double *, int64_t);
template void runElementwise<float>(const ElementwiseProgram &, const std::vector<int64_t> &,
                                    const std::vector<ElementwiseInput<float>> &,
                                    const std::vector<ElementwiseOutput<float>> &);
template void runElementwise<double>(const ElementwiseProgram &, const std::vector<int64_t> &,
                                     const std::vector<ElementwiseInput<double>> &,
                                     const std::vector<ElementwiseOutput<double>> &);

} // namespace kernels
} // namespace mantissa
