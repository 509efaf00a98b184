//===- ElementwiseCodegen.cpp - printing elementwise programs as CUDA C++ ---===//
#include "runtime/cuda/ElementwiseCodegen.h"

#include "common/Error.h"
#include "common/Hash.h"
#include "common/ScalarOp.h"
#include "runtime/kernels/IterationSpace.h"

#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>

namespace mantissa {
namespace cuda {

namespace {

void replaceAll(std::string &s, const std::string &from, const std::string &to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
}

/// The load of element `index` of input `j` as a float.
std::string loadExpr(plan::DType dtype, int j, const std::string &index) {
  std::string ref = "in" + std::to_string(j) + "[" + index + "]";
  switch (dtype) {
  case plan::DType::F16:
    return "__half2float(" + ref + ")";
  case plan::DType::BF16:
    return "__bfloat162float(" + ref + ")";
  default:
    return ref;
  }
}

/// The rounding store of `value` into output `o`.
std::string storeStmt(plan::DType dtype, int o, const std::string &value) {
  std::string ref = "out" + std::to_string(o) + "[i]";
  switch (dtype) {
  case plan::DType::F16:
    return ref + " = __float2half_rn(" + value + ");";
  case plan::DType::BF16:
    return ref + " = __float2bfloat16_rn(" + value + ");";
  default:
    return ref + " = " + value + ";";
  }
}

} // namespace

const char *cudaTypeName(plan::DType dtype) {
  switch (dtype) {
  case plan::DType::F16:
    return "__half";
  case plan::DType::BF16:
    return "__nv_bfloat16";
  case plan::DType::I32:
    return "int";
  default:
    return "float";
  }
}

std::string cudaFloatLiteral(float value) {
  char buf[64];
  if (std::isfinite(value)) {
    // %a of the (exactly widened) double is exact; the float literal rounds back to
    // the same value since it is representable.
    std::snprintf(buf, sizeof buf, "%af", double(value));
    if (buf[0] == '-')
      return std::string("(") + buf + ")";
    return buf;
  }
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  std::snprintf(buf, sizeof buf, "__int_as_float(0x%08x)", bits);
  return buf;
}

ElementwiseKernel generateElementwise(const plan::Plan &plan, const plan::Elementwise &k) {
  ElementwiseKernel out;
  const auto &tensors = *plan.tensors();
  std::vector<int64_t> shape(k.shape()->begin(), k.shape()->end());
  const size_t numIn = k.inputs()->size(), numOut = k.outputs()->size();
  int64_t total = 1;
  for (int64_t d : shape)
    total *= d;
  out.total = total;

  // Collapse exactly as the CPU interpreter does (one shared definition).
  kernels::CollapsedSpace space = kernels::collapseIterationSpace(
      shape, numIn, [&](size_t j, size_t d) { return k.inputs()->Get(j)->strides()->Get(d); });
  const std::vector<int64_t> &cshape = space.shape;
  const std::vector<std::vector<int64_t>> &cstrides = space.strides;
  const size_t rank = cshape.size();

  // Classify each input: read at the linear index, a scalar (element 0), or general.
  enum class Access { Linear, Scalar, General };
  std::vector<Access> access(numIn);
  std::vector<int64_t> contiguous(rank, 1);
  for (size_t d = rank; d-- > 1;)
    contiguous[d - 1] = contiguous[d] * cshape[d];
  bool anyGeneral = false;
  int64_t maxOffset = total;
  for (size_t j = 0; j < numIn; ++j) {
    bool linear = true, scalar = true;
    int64_t last = 0;
    for (size_t d = 0; d < rank; ++d) {
      linear = linear && cstrides[j][d] == contiguous[d];
      scalar = scalar && cstrides[j][d] == 0;
      last += (cshape[d] - 1) * cstrides[j][d];
    }
    maxOffset = std::max(maxOffset, last + 1);
    access[j] = scalar ? Access::Scalar : linear ? Access::Linear : Access::General;
    anyGeneral = anyGeneral || access[j] == Access::General;
  }
  // 32-bit indexing when every index and offset fits.
  const bool index32 = total < INT_MAX && maxOffset < INT_MAX;
  const char *ix = index32 ? "int" : "long long";

  std::ostringstream src;
  // No sizes in the text: steps that differ only in sizes share the kernel.
  src << "// " << numIn << " inputs, " << numOut << " outputs, rank " << rank << ", "
      << (anyGeneral ? "strided (multi-index)" : "linear") << " indexing\n";

  int geoSize = 0;
  std::vector<int> geoBase(numIn, -1);
  if (anyGeneral) {
    geoSize = int(rank);
    for (size_t j = 0; j < numIn; ++j)
      if (access[j] == Access::General) {
        geoBase[j] = geoSize;
        geoSize += int(rank);
      }
    src << "struct @NAME@_geo { long long v[" << geoSize << "]; };\n";
  }
  src << "extern \"C\" __global__ void __launch_bounds__(256) @NAME@(";
  for (size_t j = 0; j < numIn; ++j) {
    int id = k.inputs()->Get(j)->tensor();
    src << "const " << cudaTypeName(tensors.Get(id)->dtype()) << " *in" << j << ", ";
    out.inputs.push_back(id);
  }
  for (size_t o = 0; o < numOut; ++o) {
    int id = k.outputs()->Get(o);
    src << cudaTypeName(tensors.Get(id)->dtype()) << " *out" << o << ", ";
    out.outputs.push_back(id);
  }
  src << "long long n_";
  if (anyGeneral)
    src << ", @NAME@_geo g";
  src << ") {\n";
  src << "  typedef " << ix << " ix;\n";
  src << "  const ix n = (ix)n_;\n";
  src << "  for (ix i = (ix)blockIdx.x * (ix)blockDim.x + (ix)threadIdx.x; i < n;"
         " i += (ix)gridDim.x * (ix)blockDim.x) {\n";
  if (anyGeneral) {
    // Multi-index from the linear index, innermost dimension first; offsets of the
    // strided inputs accumulate as the coordinates come out.
    for (size_t j = 0; j < numIn; ++j)
      if (access[j] == Access::General)
        src << "    ix off" << j << " = 0;\n";
    src << "    {\n      ix rem = i, c;\n";
    for (size_t d = rank; d-- > 0;) {
      if (d > 0)
        src << "      c = rem % (ix)g.v[" << d << "]; rem /= (ix)g.v[" << d << "];\n";
      else
        src << "      c = rem;\n";
      for (size_t j = 0; j < numIn; ++j)
        if (access[j] == Access::General)
          src << "      off" << j << " += c * (ix)g.v[" << geoBase[j] + int(d) << "];\n";
    }
    src << "    }\n";
  }

  // The program, one register per instruction.
  const auto &program = *k.program();
  for (flatbuffers::uoffset_t r = 0; r < program.size(); ++r) {
    const plan::Instr *in = program.Get(r);
    ScalarOp op = ScalarOp(in->op());
    std::string expr;
    if (op == ScalarOp::Load) {
      int j = int(in->imm());
      plan::DType dt = tensors.Get(k.inputs()->Get(j)->tensor())->dtype();
      std::string index = access[j] == Access::Scalar   ? "0"
                          : access[j] == Access::Linear ? "i"
                                                        : "off" + std::to_string(j);
      expr = loadExpr(dt, j, index);
    } else if (op == ScalarOp::Const) {
      expr = cudaFloatLiteral(in->imm());
    } else {
      expr = scalarOpCuda(op);
      replaceAll(expr, "{0}", "r" + std::to_string(in->a()));
      replaceAll(expr, "{1}", "r" + std::to_string(in->b()));
      replaceAll(expr, "{2}", "r" + std::to_string(in->c()));
      replaceAll(expr, "{imm}", cudaFloatLiteral(in->imm()));
    }
    src << "    const float r" << r << " = " << expr << ";";
    if (op == ScalarOp::Const && std::isfinite(in->imm())) {
      char buf[48];
      std::snprintf(buf, sizeof buf, " // %.9g", double(in->imm()));
      src << buf;
    } else if (op != ScalarOp::Load) {
      src << " // " << scalarOpName(op);
    }
    src << "\n";
  }
  for (size_t o = 0; o < numOut; ++o) {
    plan::DType dt = tensors.Get(k.outputs()->Get(o))->dtype();
    src << "    " << storeStmt(dt, int(o), "r" + std::to_string(k.output_regs()->Get(o))) << "\n";
  }
  src << "  }\n}\n";

  std::string text = src.str();
  const std::string name = "mt_ew_" + hex16(fnv1a64(text));
  replaceAll(text, "@NAME@", name);
  out.name = name;
  out.source = std::move(text);

  if (anyGeneral) {
    out.geometry.assign(cshape.begin(), cshape.end());
    for (size_t j = 0; j < numIn; ++j)
      if (access[j] == Access::General)
        out.geometry.insert(out.geometry.end(), cstrides[j].begin(), cstrides[j].end());
  }
  return out;
}

} // namespace cuda
} // namespace mantissa
