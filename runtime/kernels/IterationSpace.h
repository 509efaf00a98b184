//===- IterationSpace.h - collapsing elementwise and reduction spaces -----===//
//
// One definition shared by the CPU kernels and the CUDA backend, so that both walk
// an operand the same way:
//  - elementwise: size-1 dimensions are dropped and neighbouring dimensions that
//    every input walks contiguously are merged, which makes runs along the last
//    dimension long;
//  - reduction: the input's dimensions become alternating kept / reduced runs with
//    their input strides.
// Header-only: the CUDA backend links no CPU kernels.
//===----------------------------------------------------------------------===//
#pragma once

#include "common/Error.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mantissa::kernels {

struct CollapsedSpace {
  std::vector<int64_t> shape;                // empty for a single element
  std::vector<std::vector<int64_t>> strides; // per input, one stride per dimension
};

/// `strideOf(j, d)` is input j's stride along dimension d of `shape`.
template <class StrideFn>
CollapsedSpace collapseIterationSpace(const std::vector<int64_t> &shape, size_t numInputs,
                                      StrideFn strideOf) {
  CollapsedSpace c;
  c.strides.resize(numInputs);
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1)
      continue;
    bool merge = !c.shape.empty();
    for (size_t j = 0; j < numInputs && merge; ++j)
      merge = c.strides[j].back() == int64_t(strideOf(j, d)) * shape[d];
    if (merge) {
      c.shape.back() *= shape[d];
      for (size_t j = 0; j < numInputs; ++j)
        c.strides[j].back() = strideOf(j, d);
    } else {
      c.shape.push_back(shape[d]);
      for (size_t j = 0; j < numInputs; ++j)
        c.strides[j].push_back(strideOf(j, d));
    }
  }
  return c;
}

/// A reduction of `inShape` to `outShape` (same rank; each out dimension equal to the
/// input's or 1) as kept and reduced dimension runs, innermost first: adjacent
/// dimensions of the same kind are merged, size-1 dimensions dropped.
struct ReductionSpace {
  struct Dim {
    int64_t size, stride; // stride in input elements
  };
  std::vector<Dim> kept, reduced;
  int64_t outCount = 1, reducedCount = 1;
};

inline ReductionSpace collapseReduction(const std::vector<int64_t> &inShape,
                                        const std::vector<int64_t> &outShape) {
  if (inShape.size() != outShape.size())
    throw Error("reduce: rank of in_shape and out_shape differ");
  ReductionSpace r;
  int64_t stride = 1;
  bool havePrev = false, prevReduced = false;
  for (size_t d = inShape.size(); d-- > 0;) {
    const int64_t size = inShape[d];
    if (outShape[d] != size && outShape[d] != 1)
      throw Error("reduce: out dimension " + std::to_string(d) + " is " +
                  std::to_string(outShape[d]) + ", expected 1 or " + std::to_string(size));
    const bool isReduced = outShape[d] == 1 && size != 1;
    (isReduced ? r.reducedCount : r.outCount) *= size;
    if (size != 1) {
      std::vector<ReductionSpace::Dim> &list = isReduced ? r.reduced : r.kept;
      // Merge with the previous (inner) dimension of the same kind when adjacent.
      if (havePrev && prevReduced == isReduced)
        list.back().size *= size;
      else
        list.push_back({size, stride});
      havePrev = true;
      prevReduced = isReduced;
    }
    stride *= size;
  }
  return r;
}

} // namespace mantissa::kernels
