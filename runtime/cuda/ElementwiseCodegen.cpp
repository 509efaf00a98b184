//===- ElementwiseCodegen.cpp - printing elementwise programs as CUDA C++ ---===//
#include "runtime/cuda/ElementwiseCodegen.h"

#include "common/Error.h"
#include "common/Hash.h"
#include "common/ScalarOp.h"
#include "plan/DType.h"
#include "runtime/cuda/CudaKernelSource.h"
#include "runtime/kernels/IterationSpace.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <sstream>

namespace mantissa {
namespace cuda {

namespace {

void replaceAll(std::string &s, const std::string &from, const std::string &to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
}

/// The load of element reference `ref` (e.g. "in0[i]") as a float.
std::string loadExpr(plan::DType dtype, const std::string &ref) {
  switch (dtype) {
  case plan::DType::F16:
    return "__half2float(" + ref + ")";
  case plan::DType::BF16:
    return "__bfloat162float(" + ref + ")";
  default:
    return ref;
  }
}

/// The float `value` converted (rounded to nearest even) to a `dtype` element.
std::string storeValue(plan::DType dtype, const std::string &value) {
  switch (dtype) {
  case plan::DType::F16:
    return "__float2half_rn(" + value + ")";
  case plan::DType::BF16:
    return "__float2bfloat16_rn(" + value + ")";
  default:
    return value;
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
  // The kernel's work is a device function, so that the multi-tensor entry (below)
  // runs the same code for each of its items.
  std::string params, args;
  std::vector<std::string> types;
  for (size_t j = 0; j < numIn; ++j) {
    int id = k.inputs()->Get(j)->tensor();
    types.push_back(std::string("const ") + cudaTypeName(tensors.Get(id)->dtype()) + " *");
    params += types.back() + "in" + std::to_string(j) + ", ";
    args += "in" + std::to_string(j) + ", ";
    out.inputs.push_back(id);
  }
  for (size_t o = 0; o < numOut; ++o) {
    int id = k.outputs()->Get(o);
    types.push_back(std::string(cudaTypeName(tensors.Get(id)->dtype())) + " *");
    params += types.back() + "out" + std::to_string(o) + ", ";
    args += "out" + std::to_string(o) + ", ";
    out.outputs.push_back(id);
  }
  params += "long long n_";
  args += "n_";
  if (anyGeneral) {
    params += ", @NAME@_geo g";
    args += ", g";
  }
  src << "static __device__ __forceinline__ void @NAME@_body(" << params << ") {\n";
  src << "  typedef " << ix << " ix;\n";
  src << "  const ix n = (ix)n_, stride = (ix)gridDim.x * (ix)blockDim.x;\n";
  src << "  ix i = (ix)blockIdx.x * (ix)blockDim.x + (ix)threadIdx.x;\n";

  // The program, one register per instruction; `load(j)` and `store(o, value)` give
  // the element access of the loop being printed.
  const auto &program = *k.program();
  auto emitProgram = [&](const std::string &indent, const std::function<std::string(int)> &load,
                         const std::function<std::string(int, const std::string &)> &store) {
    for (flatbuffers::uoffset_t r = 0; r < program.size(); ++r) {
      const plan::Instr *in = program.Get(r);
      ScalarOp op = ScalarOp(in->op());
      std::string expr;
      if (op == ScalarOp::Load) {
        expr = load(int(in->imm()));
      } else if (op == ScalarOp::Const) {
        expr = cudaFloatLiteral(in->imm());
      } else {
        expr = scalarOpCuda(op);
        replaceAll(expr, "{0}", "r" + std::to_string(in->a()));
        replaceAll(expr, "{1}", "r" + std::to_string(in->b()));
        replaceAll(expr, "{2}", "r" + std::to_string(in->c()));
        replaceAll(expr, "{imm}", cudaFloatLiteral(in->imm()));
      }
      src << indent << "const float r" << r << " = " << expr << ";";
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
      src << indent << store(int(o), storeValue(dt, "r" + std::to_string(k.output_regs()->Get(o))))
          << "\n";
    }
  };
  auto inDtype = [&](int j) { return tensors.Get(k.inputs()->Get(j)->tensor())->dtype(); };
  auto outDtype = [&](int o) { return tensors.Get(k.outputs()->Get(o))->dtype(); };

  // Multi-index of linear index `index`, innermost dimension first; the offsets of the
  // strided inputs accumulate as the coordinates come out.
  auto emitOffsets = [&](const std::string &indent, const std::string &index) {
    for (size_t j = 0; j < numIn; ++j)
      if (access[j] == Access::General)
        src << indent << "ix off" << j << " = 0;\n";
    src << indent << "{\n" << indent << "  ix rem = " << index << ", c;\n";
    for (size_t d = rank; d-- > 0;) {
      if (d > 0)
        src << indent << "  c = rem % (ix)g.v[" << d << "]; rem /= (ix)g.v[" << d << "];\n";
      else
        src << indent << "  c = rem;\n";
      for (size_t j = 0; j < numIn; ++j)
        if (access[j] == Access::General)
          src << indent << "  off" << j << " += c * (ix)g.v[" << geoBase[j] + int(d) << "];\n";
    }
    src << indent << "}\n";
  };

  // Vector path: each thread takes V consecutive elements and every contiguous tensor
  // moves them with 16-byte accesses (V = 16 bytes of the narrowest such tensor; wider
  // ones take two). Inputs read through the multi-index (broadcasts, transposes) get
  // their offsets once per vector, which stays in one row of the innermost dimension
  // when its size is a multiple of V; they are then read element by element (a
  // broadcast along that dimension reads one element). Taken when the contiguous
  // pointers are 16-byte aligned and, with multi-index inputs, the innermost size is a
  // multiple of V (both checked in the kernel: uniform); the tail, and everything
  // else, take the scalar loop below.
  {
    size_t narrowest = 4;
    std::vector<int> vecIn;
    for (size_t j = 0; j < numIn; ++j)
      if (access[j] == Access::Linear) {
        vecIn.push_back(int(j));
        narrowest = std::min(narrowest, size_t(dtypeBytes(inDtype(int(j)))));
      }
    for (size_t o = 0; o < numOut; ++o)
      narrowest = std::min(narrowest, size_t(dtypeBytes(outDtype(int(o)))));
    const size_t V = 16 / narrowest;
    out.vector = int(V);
    src << "  if (((";
    for (int j : vecIn)
      src << "(unsigned long long)in" << j << " | ";
    for (size_t o = 0; o < numOut; ++o)
      src << "(unsigned long long)out" << o << (o + 1 < numOut ? " | " : "");
    src << ") & 15ull) == 0";
    if (anyGeneral)
      src << " && g.v[" << rank - 1 << "] % " << V << " == 0";
    src << ") { // " << V << " elements per thread, 16-byte accesses\n";
    src << "    const ix nv = n / " << V << ";\n";
    src << "    for (ix v = i; v < nv; v += stride) {\n";
    src << "      const ix i0 = v * " << V << ";\n";
    auto declare = [&](const std::string &var, plan::DType dt) {
      const size_t q = V * dtypeBytes(dt) / 16;
      src << "      union { mt_u4 q[" << q << "]; " << cudaTypeName(dt) << " e[" << V << "]; } "
          << var << ";\n";
      return q;
    };
    for (int j : vecIn) {
      const std::string var = "a" + std::to_string(j);
      const size_t q = declare(var, inDtype(j));
      for (size_t c = 0; c < q; ++c)
        src << "      " << var << ".q[" << c << "] = ((const mt_u4 *)(in" << j << " + i0))[" << c
            << "];\n";
    }
    if (anyGeneral)
      emitOffsets("      ", "i0");
    std::vector<size_t> outQ;
    for (size_t o = 0; o < numOut; ++o)
      outQ.push_back(declare("b" + std::to_string(o), outDtype(int(o))));
    src << "#pragma unroll\n      for (int u = 0; u < " << V << "; ++u) {\n";
    emitProgram(
        "        ",
        [&](int j) {
          const std::string in = "in" + std::to_string(j);
          if (access[size_t(j)] == Access::Scalar)
            return loadExpr(inDtype(j), in + "[0]");
          if (access[size_t(j)] == Access::General)
            return loadExpr(inDtype(j), in + "[off" + std::to_string(j) + " + (ix)u * (ix)g.v[" +
                                            std::to_string(geoBase[size_t(j)] + int(rank) - 1) +
                                            "]]");
          return loadExpr(inDtype(j), "a" + std::to_string(j) + ".e[u]");
        },
        [&](int o, const std::string &value) {
          return "b" + std::to_string(o) + ".e[u] = " + value + ";";
        });
    src << "      }\n";
    for (size_t o = 0; o < numOut; ++o)
      for (size_t c = 0; c < outQ[o]; ++c)
        src << "      ((mt_u4 *)(out" << o << " + i0))[" << c << "] = b" << o << ".q[" << c
            << "];\n";
    src << "    }\n";
    src << "    i += nv * " << V << "; // the tail\n";
    src << "  }\n";
  }

  src << "  for (; i < n; i += stride) {\n";
  if (anyGeneral)
    emitOffsets("    ", "i");
  emitProgram(
      "    ",
      [&](int j) {
        std::string index = access[size_t(j)] == Access::Scalar   ? "0"
                            : access[size_t(j)] == Access::Linear ? "i"
                                                                  : "off" + std::to_string(j);
        return loadExpr(inDtype(j), "in" + std::to_string(j) + "[" + index + "]");
      },
      [&](int o, const std::string &value) {
        return "out" + std::to_string(o) + "[i] = " + value + ";";
      });
  src << "  }\n}\n";
  src << "extern \"C\" __global__ void __launch_bounds__(256) @NAME@(" << params << ") {\n"
      << "  @NAME@_body(" << args << ");\n}\n";
  // Multi-tensor entry: item blockIdx.y (and every gridDim.y-th after it) of a table of
  // steps that run this same kernel on other tensors (the optimizer's updates).
  const bool multi = !anyGeneral && numIn + numOut <= size_t(kElementwiseItemPointers);
  if (multi) {
    src << "extern \"C\" __global__ void __launch_bounds__(256) @NAME@_multi("
           "const mt_ew_item *items, int count) {\n"
        << "  for (int it = blockIdx.y; it < count; it += gridDim.y) {\n"
        << "    const mt_ew_item &m = items[it];\n    @NAME@_body(";
    for (size_t p = 0; p < types.size(); ++p)
      src << "(" << types[p] << ")m.p[" << p << "], ";
    src << "m.n);\n  }\n}\n";
  }

  std::string text = src.str();
  const std::string name = "mt_ew_" + hex16(fnv1a64(text));
  replaceAll(text, "@NAME@", name);
  out.name = name;
  if (multi)
    out.multiName = name + "_multi";
  out.source = std::move(text);

  if (anyGeneral) {
    out.geometry.assign(cshape.begin(), cshape.end());
    for (size_t j = 0; j < numIn; ++j)
      if (access[j] == Access::General)
        out.geometry.insert(out.geometry.end(), cstrides[j].begin(), cstrides[j].end());
  }
  return out;
}

std::vector<std::vector<size_t>>
multiTensorGroups(const std::vector<const ElementwiseKernel *> &steps,
                  const MemoryExtentOf &extentOf, size_t maxGroup) {
  std::vector<std::vector<size_t>> groups;
  auto eligible = [&](size_t i) { return steps[i] && !steps[i]->multiName.empty(); };
  auto overlaps = [](const std::vector<MemoryExtent> &set, const MemoryExtent &x) {
    for (const MemoryExtent &y : set)
      if (x.first < y.second && y.first < x.second)
        return true;
    return false;
  };
  for (size_t s = 0; s < steps.size();) {
    if (!eligible(s)) {
      ++s;
      continue;
    }
    // The window: consecutive eligible steps, none reading or writing bytes that
    // another writes, so that they may run in any order.
    std::vector<MemoryExtent> written, touched;
    size_t e = s;
    for (; e < steps.size() && eligible(e); ++e) {
      const ElementwiseKernel &k = *steps[e];
      bool independent = true;
      for (int id : k.outputs)
        independent = independent && !overlaps(touched, extentOf(id));
      for (int id : k.inputs)
        independent = independent && !overlaps(written, extentOf(id));
      if (!independent)
        break;
      for (int id : k.outputs) {
        written.push_back(extentOf(id));
        touched.push_back(extentOf(id));
      }
      for (int id : k.inputs)
        touched.push_back(extentOf(id));
    }
    // Its steps by kernel, in order of first appearance.
    std::vector<std::vector<size_t>> byKernel;
    std::map<std::string, size_t> index;
    for (size_t i = s; i < e; ++i) {
      auto [it, fresh] = index.emplace(steps[i]->name, byKernel.size());
      if (fresh || byKernel[it->second].size() >= maxGroup) {
        it->second = byKernel.size();
        byKernel.emplace_back();
      }
      byKernel[it->second].push_back(i);
    }
    for (auto &g : byKernel)
      if (g.size() >= 2)
        groups.push_back(std::move(g));
    s = e;
  }
  std::sort(groups.begin(), groups.end());
  return groups;
}

MemoryExtentOf planMemoryExtents(const plan::Plan &plan) {
  std::vector<MemoryExtent> extents;
  // Tensors outside the arena each get a range of their own above every offset.
  uint64_t outside = uint64_t(1) << 62;
  for (const plan::Tensor *t : *plan.tensors()) {
    uint64_t bytes = uint64_t(dtypeBytes(t->dtype()));
    if (t->shape())
      for (int64_t d : *t->shape())
        bytes *= uint64_t(d);
    if (t->role() == plan::Role::Temp && t->offset() >= 0) {
      extents.push_back({uint64_t(t->offset()), uint64_t(t->offset()) + bytes});
    } else {
      extents.push_back({outside, outside + bytes});
      outside += bytes + 1;
    }
  }
  return [extents](int id) { return extents.at(size_t(id)); };
}

} // namespace cuda
} // namespace mantissa
