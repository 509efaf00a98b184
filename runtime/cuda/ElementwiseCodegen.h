//===- ElementwiseCodegen.h - CUDA C++ for a plan's elementwise programs ---===//
//
// One kernel per elementwise step, printed from the step's program with the CUDA
// expression of each ScalarOp (common/ScalarOps.def). All arithmetic is in fp32; each
// input is read through its strides and converted to float; each output is stored
// rounded to its dtype (round to nearest even). The iteration space is collapsed as
// the CPU interpreter collapses it (size-1 dimensions dropped, neighbours merged where
// every input walks them contiguously); when every input is then contiguous or a
// scalar, the kernel indexes with the linear index only, otherwise it rebuilds the
// multi-index for the inputs that need it, from a geometry parameter. On the linear
// path each thread takes `vector` consecutive elements with 16-byte loads and stores
// when every non-scalar pointer is 16-byte aligned (the arena and cudaMalloc align to
// 256); the tail and unaligned tensors take the scalar loop. Either way every element
// is computed by the same program, so the result does not depend on the path.
//
// The kernel's name is a hash of its text, so steps with the same program, dtypes and
// indexing pattern share one compiled kernel; the sizes and strides are parameters.
//===----------------------------------------------------------------------===//
#pragma once

#include "plan/mantissa_plan_generated.h"

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace mantissa {
namespace cuda {

struct ElementwiseKernel {
  std::string name;   // mt_ew_<16 hex digits of the text's hash>
  std::string source; // the kernel's definition (needs cudaPrelude() before it)
  int64_t total = 0;  // elements of the iteration space
  std::vector<int> inputs, outputs;  // tensor ids, in parameter order
  /// Values of the kernel's geometry parameter (collapsed shape, then the strides of
  /// each input that is indexed through the multi-index); empty on the linear path.
  std::vector<int64_t> geometry;
  /// Elements per thread on the kernel's 16-byte vector path (1: it has none); the
  /// launch sizes its grid by total / vector.
  int vector = 1;
  /// The multi-tensor entry (`<name>_multi(const mt_ew_item *items, int count)`, one
  /// ElementwiseItem per step that runs this kernel), or empty where the kernel has
  /// none (multi-index geometry, or more tensors than an item holds).
  std::string multiName;
};

/// Generates the kernel of one Elementwise step of a verified plan.
/// Kernel parameters: (inputs as const T*..., outputs as T*..., long long n[, geometry]).
ElementwiseKernel generateElementwise(const plan::Plan &plan, const plan::Elementwise &step);

/// Where a tensor's bytes lie: [begin, end), in whatever address space the caller
/// uses (device pointers; arena offsets). Tensors of one plan may share bytes: the
/// memory plan overlaps temps whose lives do not, and an elementwise step may write
/// its result over an input that dies there.
using MemoryExtent = std::pair<uint64_t, uint64_t>;
using MemoryExtentOf = std::function<MemoryExtent(int tensor)>;

/// The groups of two or more steps that one multi-tensor launch each can take (step
/// indices, ascending; groups ordered by their first step). `steps[i]` is null for a
/// step that is not an elementwise step with a multi-tensor entry. A window of
/// consecutive such steps in which none reads or writes bytes that another writes (a
/// step may update its own tensors in place) may run in any order, and at once; its
/// steps are grouped by kernel, each group launched at its first step, at most
/// `maxGroup` steps each. The bytes, not the tensor ids, decide: a step's result may
/// lie where an earlier step's dying input was, and running both in one launch would
/// overwrite that input before it is read.
std::vector<std::vector<size_t>>
multiTensorGroups(const std::vector<const ElementwiseKernel *> &steps,
                  const MemoryExtentOf &extentOf, size_t maxGroup = 65535);

/// The extents the memory plan gives `plan`'s tensors: temps at their arena offsets,
/// every other tensor in a range of its own.
MemoryExtentOf planMemoryExtents(const plan::Plan &plan);

/// An exact CUDA float literal: a hex float for finite values ("0x1.8p+0f"),
/// __int_as_float(0x...) for infinities and NaNs (with their payload).
std::string cudaFloatLiteral(float value);

/// The CUDA element type of a dtype (float, __half, __nv_bfloat16, int).
const char *cudaTypeName(plan::DType dtype);

} // namespace cuda
} // namespace mantissa
