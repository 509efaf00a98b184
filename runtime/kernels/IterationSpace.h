//===- IterationSpace.h - collapsing an elementwise iteration space -------===//
//
// One definition shared by the CPU interpreter and the CUDA code generator, so that
// both walk an elementwise kernel's operands the same way: size-1 dimensions are
// dropped and neighbouring dimensions that every input walks contiguously are
// merged, which makes runs along the last dimension long. Header-only: the CUDA
// code generator links no CPU kernels.
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
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

} // namespace mantissa::kernels
