// The CUDA backend. Without a GPU (CI, the build machine): the elementwise code
// generator's output, NVRTC compilation of every generated and fixed kernel for
// sm_90 and sm_80 (NVRTC needs no driver), the host/device kernel signatures, and a
// clear error from makeCudaExecutor. With a GPU: every kernel kind against the CPU
// executor, the oracle (these skip with "no CUDA device" elsewhere).
#include "HostKernels.h"
#include "common/Error.h"
#include "common/Float16.h"
#include "common/ScalarOp.h"
#include "plan/DType.h"
#include "plan/PlanIntegrity.h"
#include "runtime/backend/Executor.h"
#include "runtime/cpu/CpuBackend.h"
#include "runtime/cuda/AotKernels.h"
#include "runtime/cuda/ConvKernels.h"
#include "runtime/cuda/CudaKernelSource.h"
#include "runtime/cuda/ElementwiseCodegen.h"
#include "runtime/cuda/FixedLaunch.h"
#include "runtime/cuda/KernelCache.h"
#include "runtime/cuda/KernelImage.h"
#include "runtime/cuda/Nvrtc.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <dirent.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <tuple>

using namespace mantissa;
namespace fb = flatbuffers;

namespace {

//===--- building small plans ----------------------------------------------------===//

struct TensorSpec {
  std::string name;
  plan::DType dtype;
  std::vector<int64_t> shape;
  plan::Role role;
  std::vector<float> init;
};

/// Builds a plan of one function, train_step, step by step.
class PlanMaker {
public:
  /// A tensor; persistent ones (the default) get deterministic pseudo-random values in
  /// [lo, hi) unless `init` is given.
  int tensor(const std::string &name, plan::DType dtype, std::vector<int64_t> shape,
             plan::Role role = plan::Role::Param, float lo = -1.0f, float hi = 1.0f,
             std::vector<float> init = {}) {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    if (init.empty() && role != plan::Role::Temp && role != plan::Role::Input)
      for (int64_t i = 0; i < n; ++i)
        init.push_back(lo + (hi - lo) * next());
    specs_.push_back({name, dtype, std::move(shape), role, std::move(init)});
    return int(specs_.size()) - 1;
  }
  /// Integer labels in [0, classes), stored as F32 (as the compiler emits them).
  int labels(const std::string &name, int64_t n, int64_t classes) {
    std::vector<float> v;
    for (int64_t i = 0; i < n; ++i)
      v.push_back(float(int64_t(next() * double(classes)) % classes));
    return tensor(name, plan::DType::F32, {n}, plan::Role::Param, 0, 0, v);
  }
  fb::FlatBufferBuilder &builder() { return b_; }
  void step(const std::string &name, plan::Kernel type, fb::Offset<void> kernel) {
    steps_.push_back(plan::CreateStepDirect(b_, name.c_str(), "test", plan::DType::F32, type, kernel));
  }
  std::vector<uint8_t> finish(std::vector<int32_t> outputs = {}) {
    // Tensors are created last: FlatBuffers needs children before parents, and the
    // kernel tables above reference tensors only by index.
    std::vector<fb::Offset<plan::Tensor>> tensors;
    for (const TensorSpec &t : specs_)
      tensors.push_back(plan::CreateTensorDirect(b_, t.name.c_str(), t.dtype, &t.shape, t.role,
                                                 t.init.empty() ? nullptr : &t.init));
    std::vector<fb::Offset<plan::Function>> functions = {
        plan::CreateFunctionDirect(b_, "train_step", &steps_, &outputs)};
    auto root = plan::CreatePlanDirect(b_, kPlanVersion, 0, 0, 0, 0, &tensors, &functions, 0, 0, 0,
                                       0, 0, plan::kChecksumPlaceholder);
    plan::FinishPlanBuffer(b_, root);
    return plan::sealedBytes(b_);
  }

  /// An elementwise step over `shape`: inputs (tensor, strides), program, outputs.
  void elementwise(const std::string &name, std::vector<int64_t> shape,
                   std::vector<std::pair<int, std::vector<int64_t>>> inputs,
                   std::vector<plan::Instr> program, std::vector<int32_t> outputs,
                   std::vector<int16_t> regs) {
    std::vector<fb::Offset<plan::Operand>> ops;
    for (auto &in : inputs)
      ops.push_back(plan::CreateOperandDirect(b_, in.first, &in.second));
    auto k = plan::CreateElementwiseDirect(b_, &shape, &ops, &program, &outputs, &regs);
    step(name, plan::Kernel::Elementwise, k.Union());
  }

private:
  double next() {
    state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
    return double(state_ >> 11) / double(1ull << 53);
  }
  fb::FlatBufferBuilder b_;
  std::vector<TensorSpec> specs_;
  std::vector<fb::Offset<plan::Step>> steps_;
  uint64_t state_ = 12345;
};

plan::Instr load(int input) { return plan::Instr(uint8_t(ScalarOp::Load), 0, 0, 0, float(input)); }
plan::Instr konst(float v) { return plan::Instr(uint8_t(ScalarOp::Const), 0, 0, 0, v); }
plan::Instr op(ScalarOp o, int a, int b = 0, int c = 0) {
  return plan::Instr(uint8_t(o), int16_t(a), int16_t(b), int16_t(c), 0.0f);
}

std::vector<int64_t> contiguousStrides(const std::vector<int64_t> &shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;)
    s[d - 1] = s[d] * shape[d];
  return s;
}

/// Plan exercising every scalar op (inputs kept inside every op's domain), strided
/// and broadcast reads, every dtype combination, and an in-place update.
std::vector<uint8_t> elementwisePlan(std::vector<int64_t> shape = {4, 5, 6}) {
  PlanMaker pm;
  const auto cs = contiguousStrides(shape);
  int x = pm.tensor("x", plan::DType::F32, shape, plan::Role::Param, 0.5f, 2.0f);
  int y = pm.tensor("y", plan::DType::F16, shape, plan::Role::Param, -2.0f, 2.0f);
  int z = pm.tensor("z", plan::DType::BF16, shape, plan::Role::Param, -1.0f, 1.0f);
  int bias = pm.tensor("bias", plan::DType::F32, {5}, plan::Role::Param);
  int sq = pm.tensor("square", plan::DType::F32, {6, 6}, plan::Role::Param);
  int scalar = pm.tensor("scalar", plan::DType::F16, {}, plan::Role::Param, 0.25f, 0.75f);
  for (int o = 0; o < kNumScalarOps; ++o) {
    ScalarOp sop = ScalarOp(o);
    if (sop == ScalarOp::Load || sop == ScalarOp::Const)
      continue;
    for (plan::DType outType : {plan::DType::F32, plan::DType::F16, plan::DType::BF16}) {
      int out = pm.tensor(std::string("out_") + scalarOpName(sop) + "_" +
                              plan::EnumNameDType(outType),
                          outType, shape, plan::Role::Temp);
      pm.elementwise(scalarOpName(sop), shape, {{x, cs}, {y, cs}, {z, cs}},
                     {load(0), load(1), load(2), op(sop, 0, 1, 2)}, {out}, {3});
    }
  }
  // Broadcast bias along dims 0 and 2, a scalar, constants (incl. inf), two outputs.
  int b1 = pm.tensor("bcast_f16", plan::DType::F16, shape, plan::Role::Temp);
  int b2 = pm.tensor("bcast_f32", plan::DType::F32, shape, plan::Role::Temp);
  pm.elementwise("broadcast", shape, {{x, cs}, {bias, {0, 1, 0}}, {scalar, {0, 0, 0}}},
                 {load(0), load(1), load(2), konst(1.5f), op(ScalarOp::Mul, 0, 3),
                  op(ScalarOp::Add, 4, 1), op(ScalarOp::Mul, 5, 2),
                  konst(-std::numeric_limits<float>::infinity()), op(ScalarOp::Max, 6, 7)},
                 {b1, b2}, {6, 8});
  // A transposed read (strides [1, 6]) of a square matrix.
  int tr = pm.tensor("transposed", plan::DType::BF16, {6, 6}, plan::Role::Temp);
  pm.elementwise("transposed_read", {6, 6}, {{sq, {1, 6}}, {sq, {6, 1}}},
                 {load(0), load(1), op(ScalarOp::Sub, 0, 1)}, {tr}, {2});
  // Rows of 8 read down the columns of an 8 x 8 matrix: a strided read on the vector
  // path (the innermost size is a multiple of the vector).
  int sq8 = pm.tensor("square8", plan::DType::F16, {8, 8}, plan::Role::Param);
  int tr8 = pm.tensor("transposed8", plan::DType::F32, {8, 8}, plan::Role::Temp);
  pm.elementwise("transposed_read8", {8, 8}, {{sq8, {1, 8}}, {x, {0, 0}}},
                 {load(0), op(ScalarOp::Exp, 0)}, {tr8}, {1});
  // In place: x = x * 0.5 + 1 (read and written contiguously).
  pm.elementwise("in_place", shape, {{x, cs}},
                 {load(0), konst(0.5f), op(ScalarOp::Mul, 0, 1), konst(1.0f),
                  op(ScalarOp::Add, 2, 3)},
                 {x}, {4});
  return pm.finish();
}

//===--- (a) the code generator's output -------------------------------------------===//

TEST(CudaCodegen, FloatLiteralsAreExact) {
  EXPECT_EQ(cuda::cudaFloatLiteral(1.5f), "0x1.8p+0f");
  EXPECT_EQ(cuda::cudaFloatLiteral(-0.1f), "(-0x1.99999ap-4f)");
  EXPECT_EQ(cuda::cudaFloatLiteral(0.0f), "0x0p+0f");
  EXPECT_EQ(cuda::cudaFloatLiteral(std::numeric_limits<float>::infinity()),
            "__int_as_float(0x7f800000)");
  EXPECT_EQ(cuda::cudaFloatLiteral(-std::numeric_limits<float>::infinity()),
            "__int_as_float(0xff800000)");
  EXPECT_EQ(cuda::cudaFloatLiteral(std::numeric_limits<float>::denorm_min()), "0x1p-149f");
}

const plan::Step *findStep(const plan::Plan &p, const std::string &name) {
  for (const plan::Step *s : *p.functions()->Get(0)->steps())
    if (s->name()->str() == name)
      return s;
  return nullptr;
}

TEST(CudaCodegen, BroadcastIndexingConstantsAndRoundingStores) {
  LoadedPlan lp = LoadedPlan::fromBytes(elementwisePlan(), "ew.plan");
  const plan::Step *s = findStep(lp.plan(), "broadcast");
  ASSERT_TRUE(s);
  cuda::ElementwiseKernel k = cuda::generateElementwise(lp.plan(), *s->kernel_as_Elementwise());
  const std::string &src = k.source;
  // The bias is read through the multi-index; x linearly; the scalar at element 0.
  EXPECT_NE(src.find("struct " + k.name + "_geo { long long v[6]; };"), std::string::npos) << src;
  EXPECT_NE(src.find("c = rem % (ix)g.v[2]; rem /= (ix)g.v[2];"), std::string::npos) << src;
  EXPECT_NE(src.find("off1 += c * (ix)g.v[4];"), std::string::npos) << src;
  EXPECT_NE(src.find("const float r0 = in0[i];"), std::string::npos) << src;
  EXPECT_NE(src.find("const float r1 = in1[off1];"), std::string::npos) << src;
  EXPECT_NE(src.find("const float r2 = __half2float(in2[0]);"), std::string::npos) << src;
  EXPECT_NE(src.find("const float r3 = 0x1.8p+0f; // 1.5"), std::string::npos) << src;
  EXPECT_NE(src.find("const float r7 = __int_as_float(0xff800000);"), std::string::npos) << src;
  EXPECT_NE(src.find("out0[i] = __float2half_rn(r6);"), std::string::npos) << src;
  EXPECT_NE(src.find("out1[i] = r8;"), std::string::npos) << src;
  EXPECT_NE(src.find("typedef int ix;"), std::string::npos) << src;
  // Collapsed shape [4, 5, 6] (no merge: the bias breaks it), the bias strides [0, 1, 0].
  EXPECT_EQ(k.geometry, (std::vector<int64_t>{4, 5, 6, 0, 1, 0}));
  EXPECT_EQ(k.total, 120);

  // Contiguous inputs collapse to one dimension and index linearly.
  const plan::Step *add = findStep(lp.plan(), "Add");
  cuda::ElementwiseKernel ka = cuda::generateElementwise(lp.plan(), *add->kernel_as_Elementwise());
  EXPECT_TRUE(ka.geometry.empty());
  EXPECT_EQ(ka.source.find("_geo"), std::string::npos) << ka.source;
  EXPECT_NE(ka.source.find("const float r1 = __half2float(in1[i]);"), std::string::npos);
  EXPECT_NE(ka.source.find("const float r2 = __bfloat162float(in2[i]);"), std::string::npos);
  EXPECT_NE(ka.source.find("const float r3 = (r0 + r1); // Add"), std::string::npos) << ka.source;

  // Same program and dtypes, different step: the same kernel (shared by name).
  const plan::Step *tr = findStep(lp.plan(), "transposed_read");
  cuda::ElementwiseKernel kt = cuda::generateElementwise(lp.plan(), *tr->kernel_as_Elementwise());
  EXPECT_EQ(kt.geometry, (std::vector<int64_t>{6, 6, 1, 6}));
  EXPECT_NE(kt.source.find("out0[i] = __float2bfloat16_rn(r2);"), std::string::npos);
}

TEST(CudaCodegen, IdenticalProgramsShareAKernel) {
  PlanMaker pm;
  int a = pm.tensor("a", plan::DType::F32, {8, 3});
  int b = pm.tensor("b", plan::DType::F32, {100});
  int oa = pm.tensor("oa", plan::DType::F16, {8, 3}, plan::Role::Temp);
  int ob = pm.tensor("ob", plan::DType::F16, {100}, plan::Role::Temp);
  pm.elementwise("relu_a", {8, 3}, {{a, {3, 1}}}, {load(0), op(ScalarOp::Relu, 0)}, {oa}, {1});
  pm.elementwise("relu_b", {100}, {{b, {1}}}, {load(0), op(ScalarOp::Relu, 0)}, {ob}, {1});
  LoadedPlan lp = LoadedPlan::fromBytes(pm.finish(), "share.plan");
  auto ka = cuda::generateElementwise(lp.plan(), *findStep(lp.plan(), "relu_a")->kernel_as_Elementwise());
  auto kb = cuda::generateElementwise(lp.plan(), *findStep(lp.plan(), "relu_b")->kernel_as_Elementwise());
  EXPECT_EQ(ka.name, kb.name);
  EXPECT_EQ(ka.source, kb.source);
  EXPECT_EQ(ka.total, 24);
  EXPECT_EQ(kb.total, 100);
}

/// Parameter updates as the optimizer's are, one elementwise step per parameter
/// (p -= 0.01 * g / scale, in place; sizes with tails and one below a vector), then:
/// a second update of p1 (it writes what the first run wrote: a new run), another
/// kernel, and two more updates.
std::vector<uint8_t> multiTensorPlan() {
  PlanMaker pm;
  const std::vector<int64_t> sizes = {37, 1000, 3, 64, 129, 8, 17};
  std::vector<int> p, g;
  for (size_t i = 0; i < sizes.size(); ++i) {
    p.push_back(pm.tensor("p" + std::to_string(i), plan::DType::F32, {sizes[i]}));
    g.push_back(pm.tensor("g" + std::to_string(i), plan::DType::F16, {sizes[i]}));
  }
  int scale = pm.tensor("scale", plan::DType::F32, {}, plan::Role::Param, 0.5f, 2.0f);
  auto update = [&](const std::string &name, int pi, int gi) {
    pm.elementwise(name, {sizes[size_t(pi)]}, {{p[size_t(pi)], {1}}, {g[size_t(gi)], {1}}, {scale, {0}}},
                   {load(0), load(1), load(2), op(ScalarOp::Div, 1, 2), konst(0.01f),
                    op(ScalarOp::Mul, 3, 4), op(ScalarOp::Sub, 0, 5)},
                   {p[size_t(pi)]}, {6});
  };
  update("u0", 0, 0);
  update("u1", 1, 1);
  update("u2", 2, 2);
  update("u1_again", 1, 1); // writes p1, which u1 wrote: ends the run
  update("u3", 3, 3);
  int r = pm.tensor("relu_out", plan::DType::F16, {17}, plan::Role::Temp);
  pm.elementwise("other_kernel", {17}, {{p[6], {1}}}, {load(0), op(ScalarOp::Relu, 0)}, {r}, {1});
  update("u4", 4, 4);
  update("u5", 5, 5);
  return pm.finish();
}

TEST(CudaCodegen, MultiTensorGroupsOfIndependentIdenticalSteps) {
  LoadedPlan lp = LoadedPlan::fromBytes(multiTensorPlan(), "multi.plan");
  std::vector<cuda::ElementwiseKernel> kernels;
  for (const plan::Step *step : *lp->functions()->Get(0)->steps())
    kernels.push_back(cuda::generateElementwise(lp.plan(), *step->kernel_as_Elementwise()));
  std::vector<const cuda::ElementwiseKernel *> steps;
  for (const auto &k : kernels)
    steps.push_back(&k);
  EXPECT_FALSE(kernels[0].multiName.empty());
  EXPECT_NE(kernels[0].source.find("extern \"C\" __global__ void __launch_bounds__(256) " +
                                   kernels[0].multiName + "(const mt_ew_item *items, int count)"),
            std::string::npos);
  using Groups = std::vector<std::vector<size_t>>;
  const cuda::MemoryExtentOf extents = cuda::planMemoryExtents(lp.plan());
  // u1_again writes p1, which u1 wrote: a new window, in which the updates gather
  // across other_kernel (step 5, alone of its kernel), which none of them touches.
  EXPECT_EQ(cuda::multiTensorGroups(steps, extents), (Groups{{0, 1, 2}, {3, 4, 6, 7}}));
  EXPECT_EQ(cuda::multiTensorGroups(steps, extents, 2), (Groups{{0, 1}, {3, 4}, {6, 7}}));

  // The bytes decide, not the ids: were p2 to lie where g0 does (as a memory plan
  // may put a result where an input that died earlier was), u2 would overwrite u0's
  // input in a shared launch, so the window ends before u2.
  auto idOf = [&](const std::string &name) {
    for (uint32_t i = 0; i < lp->tensors()->size(); ++i)
      if (lp->tensors()->Get(i)->name()->str() == name)
        return int(i);
    ADD_FAILURE() << "no tensor " << name;
    return -1;
  };
  const int g0 = idOf("g0"), p2 = idOf("p2");
  const cuda::MemoryExtentOf shared = [&](int id) { return extents(id == p2 ? g0 : id); };
  EXPECT_EQ(cuda::multiTensorGroups(steps, shared), (Groups{{0, 1}, {2, 3, 4, 6, 7}}));
  // Reading the same bytes is no conflict: g2 where g0 lies.
  const int g2 = idOf("g2");
  EXPECT_EQ(cuda::multiTensorGroups(steps, [&](int id) { return extents(id == g2 ? g0 : id); }),
            (Groups{{0, 1, 2}, {3, 4, 6, 7}}));

  steps[1] = nullptr; // not an eligible step: ends u0's window; u2 starts the next
  EXPECT_EQ(cuda::multiTensorGroups(steps, extents), (Groups{{2, 3, 4, 6, 7}}));
}

//===--- (b) NVRTC compiles every kernel (no GPU needed) ---------------------------===//

/// A fresh, empty folder for an NVRTC cache (removed by the caller).
std::string freshDir(const std::string &tag) {
  std::string tmpl = (std::getenv("TMPDIR") ? std::string(std::getenv("TMPDIR")) : "/tmp") +
                     "/mantissa-" + tag + "-XXXXXX";
  if (!mkdtemp(&tmpl[0]))
    throw Error("mkdtemp failed");
  return tmpl;
}

/// The kernels a plan carries (Plan.cuda) are what the CUDA executor needs: every
/// module the code generator derives from the plan's steps (planModules, what the
/// executor looks up), each with a CUBIN (an ELF image naming every entry point) for
/// each of `archs` and PTX (with an .entry for each) of the oldest.
void checkPlanKernels(const LoadedPlan &lp, const std::vector<std::string> &archs) {
  const plan::CudaCode *code = lp->cuda();
  ASSERT_NE(code, nullptr) << lp.name() << ": no compiled kernels";
  std::map<std::string, const plan::CudaKernel *> byName;
  for (const plan::CudaKernel *k : *code->kernels())
    byName[k->name()->str()] = k;
  std::vector<std::string> planArchs;
  for (const fb::String *a : *code->archs())
    planArchs.push_back(a->str());
  EXPECT_EQ(planArchs, archs) << lp.name();
  std::vector<cuda::ModuleSource> modules = cuda::planModules(lp.plan());
  EXPECT_EQ(byName.size(), modules.size()) << lp.name() << ": one module per distinct kernel";
  std::set<std::string> hashes;
  for (const cuda::ModuleSource &m : modules) {
    auto it = byName.find(m.name);
    ASSERT_NE(it, byName.end()) << lp.name() << ": no compiled module " << m.name;
    const plan::CudaKernel *k = it->second;
    EXPECT_EQ(k->source()->str(), m.source) << m.name;
    EXPECT_TRUE(hashes.insert(k->source_hash()->str()).second) << "duplicate source " << m.name;
    ASSERT_EQ(k->cubins()->size(), archs.size()) << m.name;
    for (size_t a = 0; a < archs.size(); ++a) {
      const plan::CudaCubin *c = k->cubins()->Get(fb::uoffset_t(a));
      EXPECT_EQ(c->arch()->str(), archs[a]) << m.name;
      std::string image(c->image()->begin(), c->image()->end());
      EXPECT_EQ(image.compare(0, 4, "\x7f" "ELF"), 0) << m.name << " " << archs[a];
      for (const std::string &entry : m.entries)
        EXPECT_NE(image.find(entry), std::string::npos) << entry << " not in the " << archs[a] << " CUBIN";
    }
    ASSERT_NE(k->ptx(), nullptr) << m.name;
    EXPECT_EQ(k->ptx_arch()->str(), "compute_" + archs.back().substr(3)) << m.name;
    for (const std::string &entry : m.entries)
      EXPECT_NE(k->ptx()->str().find(".entry " + entry), std::string::npos) << entry << " not in the PTX";
  }
}

std::vector<uint8_t> kernelZooPlan(); // every fixed kernel kind (defined below)

/// `planBytes` with Plan.cuda set to `code`, through FlatBuffers' object API: fine
/// for these test plans (mantissa compile emits the plan with its kernels instead,
/// as the object API drops empty vectors, which a compiled plan gives meaning).
std::vector<uint8_t> withCudaCode(const std::vector<uint8_t> &planBytes,
                                  std::unique_ptr<plan::CudaCodeT> code) {
  std::unique_ptr<plan::PlanT> p(plan::GetPlan(planBytes.data())->UnPack());
  p->cuda = std::move(code);
  p->checksum = plan::kChecksumPlaceholder;
  fb::FlatBufferBuilder b;
  b.Finish(plan::Plan::Pack(b, p.get()), plan::PlanIdentifier());
  return plan::sealedBytes(b);
}

/// `bytes` with kernels for sm_90 and sm_80 (the oldest, so PTX compute_80), through
/// a cache in `cacheDir` (CTest gives the build tree's: most modules then compile
/// once per build, not once per run).
std::vector<uint8_t> compileForTwoArchs(const std::vector<uint8_t> &bytes, const std::string &cacheDir,
                                        cuda::AotStats *stats) {
  cuda::KernelCache cache(cacheDir);
  return withCudaCode(bytes, cuda::compileModules(cuda::planModules(*plan::GetPlan(bytes.data())),
                                                  cuda::parseArchList("sm_90,sm_80"), &cache, stats));
}

TEST(CudaNvrtc, CompilesEveryKernelForSm90AndSm80) {
  for (auto [bytes, name] : {std::pair(elementwisePlan(), "ew.plan"), std::pair(kernelZooPlan(), "zoo.plan")}) {
    cuda::AotStats stats;
    LoadedPlan lp = LoadedPlan::fromBytes(compileForTwoArchs(bytes, cuda::KernelCache::defaultDir(), &stats), name);
    checkPlanKernels(lp, {"sm_90", "sm_80"});
    EXPECT_EQ(stats.compiles, 3 * stats.modules); // sm_90, sm_80, compute_80
  }
}

// Every implicit-GEMM convolution mode and dtype, both column tiles, at 3x3 stride 1
// and the transposed convolution's 2x2 stride 2 (the zoo's plans use only some).
TEST(CudaNvrtc, CompilesEveryConvolutionConfiguration) {
  std::vector<cuda::ConvGemmConfig> configs;
  for (auto mode : {cuda::ConvGemmMode::Forward, cuda::ConvGemmMode::BackwardInput,
                    cuda::ConvGemmMode::BackwardWeight})
    for (auto dt : {plan::DType::F16, plan::DType::BF16})
      for (int bn : {32, 64})
        for (int rs : {2, 3}) {
          cuda::ConvGemmConfig c;
          c.mode = mode;
          c.dtype = dt;
          c.bn = bn;
          c.r = c.s = rs;
          c.sh = c.sw = rs == 2 ? 2 : 1;
          configs.push_back(c);
          if (mode != cuda::ConvGemmMode::BackwardInput) {
            c.nhwc = true;
            configs.push_back(c);
          }
        }
  const cuda::CompileUnit unit{"conv.cu", std::string(cuda::cudaPrelude()) + cuda::convGemmSource(configs)};
  for (int arch : {90, 80}) {
    std::vector<cuda::CompiledModule> mods = cuda::compileCudaParallel({unit}, arch);
    ASSERT_EQ(mods.size(), 1u);
    std::string image(mods[0].image.begin(), mods[0].image.end());
    for (const cuda::ConvGemmConfig &c : configs)
      EXPECT_NE(image.find(c.kernelName()), std::string::npos) << c.kernelName() << " sm_" << arch;
  }
}

/// A small plan of two elementwise kernels, and its modules without the fixed kernels
/// (which take NVRTC seconds per target): what the cache and verifier tests compile.
std::pair<std::vector<uint8_t>, std::vector<cuda::ModuleSource>> smallPlanAndModules() {
  PlanMaker pm;
  int a = pm.tensor("a", plan::DType::F32, {8, 3});
  int oa = pm.tensor("oa", plan::DType::F16, {8, 3}, plan::Role::Temp);
  int ob = pm.tensor("ob", plan::DType::F32, {8, 3}, plan::Role::Temp);
  pm.elementwise("relu", {8, 3}, {{a, {3, 1}}}, {load(0), op(ScalarOp::Relu, 0)}, {oa}, {1});
  pm.elementwise("neg", {8, 3}, {{a, {3, 1}}}, {load(0), op(ScalarOp::Neg, 0)}, {ob}, {1});
  std::vector<uint8_t> bytes = pm.finish();
  std::vector<cuda::ModuleSource> modules = cuda::planModules(*plan::GetPlan(bytes.data()));
  EXPECT_EQ(modules.size(), 3u);
  EXPECT_EQ(modules[0].name, cuda::kFixedModuleName);
  EXPECT_EQ(modules[1].fuses, std::vector<std::string>{"Relu"});
  modules.erase(modules.begin());
  return {bytes, modules};
}

TEST(CudaNvrtc, ASecondCompileHitsTheCache) {
  const std::string dir = freshDir("nvrtc-cache");
  auto [bytes, modules] = smallPlanAndModules();
  const std::vector<int> archs = {90, 80};
  auto compile = [&](cuda::AotStats &stats) {
    cuda::KernelCache cache(dir);
    return withCudaCode(bytes, cuda::compileModules(modules, archs, &cache, &stats));
  };
  cuda::AotStats first, second, third;
  std::vector<uint8_t> a = compile(first);
  std::vector<uint8_t> b = compile(second);
  EXPECT_EQ(first.compiles, 6u);
  EXPECT_EQ(first.cacheHits, 0u);
  EXPECT_EQ(second.cacheHits, second.compiles);
  EXPECT_EQ(a, b) << "the cached images are the ones NVRTC wrote";
  // One file per (module, target); a damaged entry is ignored and rewritten.
  size_t files = 0;
  for (auto &e : std::filesystem::directory_iterator(dir))
    if (++files == 1)
      std::ofstream(e.path(), std::ios::trunc) << "garbage";
  EXPECT_EQ(files, first.compiles);
  EXPECT_EQ(compile(third), a);
  EXPECT_EQ(third.cacheHits, third.compiles - 1);
  std::filesystem::remove_all(dir);
}

/// The plan's loader rejects a damaged kernel table with a message naming the kernel.
TEST(CudaNvrtc, TheVerifierRejectsACorruptKernelTable) {
  auto [bytes, modules] = smallPlanAndModules();
  std::vector<uint8_t> good = withCudaCode(bytes, cuda::compileModules(modules, {90, 80}, nullptr, nullptr));
  auto damaged = [&](const std::function<void(plan::PlanT &)> &damage) {
    std::unique_ptr<plan::PlanT> p(plan::GetPlan(good.data())->UnPack());
    damage(*p);
    p->checksum = plan::kChecksumPlaceholder;
    fb::FlatBufferBuilder b;
    b.Finish(plan::Plan::Pack(b, p.get()), plan::PlanIdentifier());
    try {
      // Sealed: this checks the kernel table's own verification, behind the checksum.
      LoadedPlan::fromBytes(plan::sealedBytes(b), "bad.plan");
    } catch (const Error &e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NO_THROW(LoadedPlan::fromBytes(good, "good.plan"));
  EXPECT_EQ(damaged([](plan::PlanT &) {}), "no error");
  std::string m = damaged([](plan::PlanT &p) { p.cuda->kernels[1]->source += " "; });
  EXPECT_NE(m.find("bad.plan: cuda kernel 1 '"), std::string::npos) << m;
  EXPECT_NE(m.find("does not match its source"), std::string::npos) << m;
  m = damaged([](plan::PlanT &p) { p.cuda->prelude += " "; });
  EXPECT_NE(m.find("does not match its source"), std::string::npos) << m;
  m = damaged([](plan::PlanT &p) { p.cuda->kernels[0]->cubins[0]->image.resize(10); });
  EXPECT_NE(m.find("the CUBIN for sm_90 is not an ELF image (10 bytes)"), std::string::npos) << m;
  m = damaged([](plan::PlanT &p) { p.cuda->kernels[0]->cubins.pop_back(); });
  EXPECT_NE(m.find("CUBINs for 1 of the plan's 2 architectures"), std::string::npos) << m;
  m = damaged([](plan::PlanT &p) { p.cuda->kernels[0]->cubins[1]->arch = "sm_75"; });
  EXPECT_NE(m.find("CUBIN for 'sm_75', which is not one of the plan's architectures"), std::string::npos) << m;
  m = damaged([](plan::PlanT &p) { p.cuda->kernels[1]->name = p.cuda->kernels[0]->name; });
  EXPECT_NE(m.find("appears twice"), std::string::npos) << m;
  m = damaged([](plan::PlanT &p) { p.cuda->archs[1] = "sm80"; });
  EXPECT_NE(m.find("architecture 'sm80' is not like sm_90"), std::string::npos) << m;
  m = damaged([](plan::PlanT &p) { p.cuda->kernels[0]->ptx = "garbage"; });
  EXPECT_NE(m.find("the PTX has no .entry"), std::string::npos) << m;
  m = damaged([](plan::PlanT &p) { p.cuda->kernels[0]->ptx_arch = "sm_80"; });
  EXPECT_NE(m.find("ptx_arch 'sm_80' is not like compute_80"), std::string::npos) << m;
  m = damaged([](plan::PlanT &p) { p.cuda->kernels[0]->entries.clear(); });
  EXPECT_NE(m.find("'entries'"), std::string::npos) << m;
  m = damaged([](plan::PlanT &p) { p.cuda->nvrtc_version.clear(); });
  EXPECT_NE(m.find("nvrtc_version"), std::string::npos) << m;
}

/// What a GPU loads from a plan compiled for sm_90,sm_80 (PTX compute_80): its own
/// CUBIN, else the PTX when the GPU is at least compute_80, else one error.
TEST(CudaNvrtc, EachGpuLoadsItsCubinElseThePtx) {
  auto [bytes, modules] = smallPlanAndModules();
  std::unique_ptr<plan::CudaCodeT> code = cuda::compileModules(modules, {90, 80}, nullptr, nullptr);
  std::vector<uint8_t> both = withCudaCode(bytes, std::move(code));
  const plan::CudaKernel &k = *plan::GetPlan(both.data())->cuda()->kernels()->Get(0);
  for (auto [arch, ptx, target] : {std::tuple(90, false, "sm_90"), std::tuple(80, false, "sm_80"),
                                   std::tuple(89, true, "compute_80"), std::tuple(100, true, "compute_80")}) {
    cuda::KernelImage image = cuda::chooseKernelImage(k, arch, "p.plan");
    EXPECT_EQ(image.ptx, ptx) << arch;
    EXPECT_EQ(image.target, target) << arch;
    if (ptx)
      EXPECT_EQ(std::string(image.bytes, image.size - 1), k.ptx()->str()) << arch;
    else
      EXPECT_EQ(std::string(image.bytes, 4), "\x7f" "ELF") << arch;
  }
  try {
    cuda::chooseKernelImage(k, 75, "p.plan");
    ADD_FAILURE() << "an sm_75 GPU cannot run compute_80 PTX";
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()), "p.plan: kernel " + modules[0].name +
                                         " has no code this GPU (sm_75) can run: the plan has CUBIN "
                                         "sm_90, CUBIN sm_80, PTX compute_80; recompile with "
                                         "`mantissa compile --arch sm_75`");
  }
}

TEST(CudaNvrtc, ArchListsAreChecked) {
  EXPECT_EQ(cuda::parseArchList("sm_90,sm_80,sm_90"), (std::vector<int>{90, 80}));
  for (const char *bad : {"", "sm90", "sm_90,", "sm_9x", "compute_90", "sm_1"}) {
    try {
      cuda::parseArchList(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error &e) {
      EXPECT_NE(std::string(e.what()).find("--arch"), std::string::npos) << e.what();
    }
  }
}

// The zoo's plans, when the build has them (MANTISSA_TEST_PLAN_DIR: a folder of .plan
// files written by `mantissa compile --arch sm_90,sm_80`, as test/unit/cuda/zoo_kernels.sh
// does for every zoo model and precision): every plan carries all its kernels.
TEST(CudaNvrtc, ThePlansOfAFolderCarryTheirKernels) {
  const char *dir = std::getenv("MANTISSA_TEST_PLAN_DIR");
  if (!dir || !*dir)
    GTEST_SKIP() << "MANTISSA_TEST_PLAN_DIR not set";
  size_t count = 0;
  for (auto &e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".plan")
      continue;
    LoadedPlan lp = LoadedPlan::load(e.path().string());
    checkPlanKernels(lp, {"sm_90", "sm_80"});
    ++count;
    // The optimizer's updates (one elementwise step per parameter) go out as
    // multi-tensor launches: every update step is in a run.
    for (const plan::Function *fn : *lp->functions()) {
      if (fn->name()->str() != "train_step")
        continue;
      std::vector<cuda::ElementwiseKernel> kernels(fn->steps()->size());
      std::vector<const cuda::ElementwiseKernel *> steps(fn->steps()->size(), nullptr);
      // The optimizer's updates: the elementwise steps that write a parameter; the
      // weight casts: those that read only a parameter (emit-plan puts them first).
      std::vector<size_t> updates, casts;
      // Each working copy is written by its master's update, in the same kernel.
      std::map<int, int> copyWrites;
      for (flatbuffers::uoffset_t id = 0; id < lp->tensors()->size(); ++id)
        if (lp->tensors()->Get(id)->role() == plan::Role::WorkingCopy)
          copyWrites[int(id)] = 0;
      for (flatbuffers::uoffset_t i = 0; i < fn->steps()->size(); ++i) {
        const plan::Step *step = fn->steps()->Get(i);
        if (step->kernel_type() != plan::Kernel::Elementwise)
          continue;
        kernels[i] = cuda::generateElementwise(lp.plan(), *step->kernel_as_Elementwise());
        steps[i] = &kernels[i];
        for (int id : kernels[i].outputs)
          if (lp->tensors()->Get(uint32_t(id))->role() == plan::Role::Param) {
            updates.push_back(i);
            for (int out : kernels[i].outputs)
              if (copyWrites.count(out) && lp->tensors()->Get(uint32_t(out))->master() == id)
                ++copyWrites[out];
            break;
          }
        if (kernels[i].inputs.size() == 1 &&
            lp->tensors()->Get(uint32_t(kernels[i].inputs[0]))->role() == plan::Role::Param &&
            lp->tensors()->Get(uint32_t(kernels[i].outputs[0]))->role() == plan::Role::Temp)
          casts.push_back(i);
      }
      std::printf("%s: %zu working copies\n", e.path().filename().c_str(), copyWrites.size());
      for (const auto &[copy, writes] : copyWrites)
        EXPECT_EQ(writes, 1) << e.path() << ": working copy t" << copy
                             << " is not written once by its master's update";
      const auto groups = cuda::multiTensorGroups(steps, cuda::planMemoryExtents(lp.plan()));
      for (const auto &[what, list] : {std::pair{"optimizer updates", &updates},
                                      std::pair{"weight casts", &casts}}) {
        size_t covered = 0, shared = 0;
        std::set<size_t> launches;
        std::set<std::string> names;
        for (size_t u : *list) {
          names.insert(kernels[u].name);
          shared += std::count_if(list->begin(), list->end(), [&](size_t v) {
                      return v != u && kernels[v].name == kernels[u].name;
                    }) > 0;
          for (size_t g = 0; g < groups.size(); ++g)
            if (std::count(groups[g].begin(), groups[g].end(), u)) {
              ++covered;
              launches.insert(g);
            }
        }
        std::printf("%s: %zu %s (%zu kernels), %zu of them in %zu multi-tensor launches\n",
                    e.path().filename().c_str(), list->size(), what, names.size(), covered,
                    launches.size());
        // Every one that shares its kernel with another goes out with it.
        EXPECT_EQ(covered, shared) << e.path() << " " << what;
      }
    }
  }
  if (count == 0)
    GTEST_SKIP() << "no .plan files in " << dir;
  std::printf("checked the kernels of %zu plans\n", count);
}

TEST(CudaNvrtc, CompileErrorsQuoteTheSourceLine) {
  cuda::CompileUnit bad{"bad.cu", "extern \"C\" __global__ void k(float *p) {\n  p[0] = undefined_thing;\n}\n"};
  try {
    cuda::compileCuda(bad, 90);
    FAIL() << "no error";
  } catch (const Error &e) {
    std::string m = e.what();
    EXPECT_NE(m.find("failed to compile bad.cu for sm_90"), std::string::npos) << m;
    EXPECT_NE(m.find("undefined_thing"), std::string::npos) << m;
    EXPECT_NE(m.find("bad.cu:2:   p[0] = undefined_thing;"), std::string::npos) << m;
  }
}

// Host-side parameter types (FixedKernels.def) against the CUDA signatures: a width
// mismatch would be read silently by cudaLaunchKernel.
template <class... T> std::vector<size_t> sizesOf() { return {sizeof(T)...}; }

size_t cudaParamSize(std::string type) {
  type = std::regex_replace(type, std::regex("\\s+"), " ");
  type = std::regex_replace(type, std::regex("^ | $"), "");
  if (type.find('*') != std::string::npos)
    return sizeof(void *);
  static const std::map<std::string, size_t> sizes = {
      {"int", 4}, {"float", 4}, {"double", 8}, {"long long", 8},
      {"MtReduceGeo", sizeof(cuda::ReduceGeometry)}, {"MtPermGeo", sizeof(cuda::PermuteGeometry)}};
  auto it = sizes.find(type);
  return it == sizes.end() ? 0 : it->second;
}

TEST(CudaNvrtc, HostSignaturesMatchTheKernels) {
  const std::map<std::string, std::vector<size_t>> host = {
#define MANTISSA_FIXED_KERNEL(name, ...) {#name, sizesOf<__VA_ARGS__>()},
#include "runtime/cuda/FixedKernels.def"
  };
  const std::string src = std::string(cuda::cudaPrelude()) + cuda::fixedKernelSource();
  for (auto &[name, sizes] : host) {
    // The signature is either written out or in a macro instantiated as MACRO(name, ...).
    std::string text = src;
    size_t pos = text.find("void " + name + "(");
    if (pos == std::string::npos) {
      std::smatch m;
      ASSERT_TRUE(std::regex_search(src, m, std::regex("(MT_[A-Z0-9_]+)\\(" + name + ",")))
          << name << " not found in the CUDA source";
      size_t def = src.find("#define " + m[1].str() + "(");
      ASSERT_NE(def, std::string::npos) << m[1].str();
      pos = src.find("void NAME(", def);
      ASSERT_NE(pos, std::string::npos);
    }
    size_t open = text.find('(', pos), close = text.find(')', open);
    std::string params = text.substr(open + 1, close - open - 1);
    params.erase(std::remove(params.begin(), params.end(), '\\'), params.end());
    std::vector<size_t> device;
    std::stringstream ss(params);
    for (std::string p; std::getline(ss, p, ',');) {
      // Drop the parameter name (the last identifier).
      std::string type = std::regex_replace(p, std::regex("[A-Za-z_][A-Za-z0-9_]*\\s*$"), "");
      size_t size = cudaParamSize(type);
      EXPECT_NE(size, 0u) << name << ": unknown parameter type '" << type << "'";
      device.push_back(size);
    }
    EXPECT_EQ(device, sizes) << name << ": host and device parameter sizes differ";
  }
}

//===--- (c) the executor: a clear error without a GPU; CPU agreement with one ----===//

/// The CUDA executor for `plan`, or null with the reason when there is no GPU.
std::unique_ptr<Executor> cudaExecutorOrSkipReason(const LoadedPlan &plan, std::string &reason) {
  try {
    return makeCudaExecutor(plan);
  } catch (const Error &e) {
    reason = e.what();
    if (reason.find("no CUDA device") == std::string::npos)
      throw; // a real failure, not the absence of a GPU
    return nullptr;
  }
}

/// The CUDA executor for `plan`, or null with the error.
std::unique_ptr<Executor> cudaExecutorOrError(const LoadedPlan &plan, std::string &error) {
  try {
    return makeCudaExecutor(plan);
  } catch (const Error &e) {
    error = e.what();
    return nullptr;
  }
}

TEST(CudaExecutor, WithoutAGpuSaysSo) {
  LoadedPlan lp = LoadedPlan::fromBytes(elementwisePlan(), "ew.plan");
  std::string reason;
  std::unique_ptr<Executor> exec = cudaExecutorOrError(lp, reason);
  if (exec)
    GTEST_SKIP() << "a CUDA device is present: " << exec->deviceDescription();
  EXPECT_NE(reason.find("CUDA backend unavailable: no CUDA device: "), std::string::npos) << reason;
}

/// Normwise relative difference max|a - b| / max|b|, NaNs required in the same places.
/// The same bits, or both NaN.
bool sameBits(float x, float y) { return std::memcmp(&x, &y, 4) == 0 || (x != x && y != y); }

double relativeError(const std::vector<float> &a, const std::vector<float> &b, std::string &why) {
  double maxDiff = 0, maxRef = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i]) || std::isinf(a[i]) != std::isinf(b[i]) ||
        (std::isinf(a[i]) && a[i] != b[i])) {
      why = "element " + std::to_string(i) + ": " + std::to_string(a[i]) + " vs " +
            std::to_string(b[i]);
      return INFINITY;
    }
    if (!std::isfinite(b[i]))
      continue;
    maxDiff = std::max(maxDiff, std::fabs(double(a[i]) - double(b[i])));
    maxRef = std::max(maxRef, std::fabs(double(b[i])));
  }
  return maxRef > 0 ? maxDiff / maxRef : maxDiff;
}

/// Runs train_step `runs` times on both executors (graphs from the second run on) and
/// compares every floating-point tensor.
/// MANTISSA_CUDA_TEST_PLAN_OUT=dir writes the test plans there (for cuda_vs_cpu).
void savePlan(const std::vector<uint8_t> &bytes, const std::string &name) {
  if (const char *dir = std::getenv("MANTISSA_CUDA_TEST_PLAN_OUT"))
    std::ofstream(std::string(dir) + "/" + name, std::ios::binary)
        .write(reinterpret_cast<const char *>(bytes.data()), std::streamsize(bytes.size()));
}

/// Every tensor of `lp` as `read` gives it against the CPU executor's, L2-normwise:
/// within tolF32 for fp32 tensors and tolLow for the others (I32 ones left out with
/// skipI32).
void expectTensorsClose(const LoadedPlan &lp, const CpuExecutor<float> &cpu,
                        const std::function<std::vector<float>(int)> &read, double tolF32,
                        double tolLow, const std::string &context, bool skipI32 = false) {
  const auto &tensors = *lp->tensors();
  for (flatbuffers::uoffset_t id = 0; id < tensors.size(); ++id) {
    const plan::Tensor *t = tensors.Get(id);
    if (skipI32 && t->dtype() == plan::DType::I32)
      continue;
    std::string why;
    const double err = relativeError(read(int(id)), cpu.tensor(int(id)), why);
    EXPECT_LE(err, t->dtype() == plan::DType::F32 ? tolF32 : tolLow)
        << context << ": tensor " << id << " '" << t->name()->str() << "' ("
        << plan::EnumNameDType(t->dtype()) << ") " << why;
  }
}

void compareWithCpu(const std::vector<uint8_t> &bytes, const std::string &name, int runs,
                    double tolF32, double tolLow) {
  savePlan(bytes, name);
  LoadedPlan lp = LoadedPlan::fromBytes(bytes, name);
  // The CPU side runs everywhere: the test plans themselves are checked without a GPU.
  CpuExecutor<float> cpu(lp, 2);
  for (int r = 0; r < runs; ++r)
    cpu.run("train_step");
  std::string reason;
  std::unique_ptr<Executor> gpu = cudaExecutorOrSkipReason(lp, reason);
  if (!gpu)
    GTEST_SKIP() << reason;
  for (int r = 0; r < runs; ++r)
    gpu->run("train_step");
  expectTensorsClose(
      lp, cpu,
      [&](int id) {
        std::vector<float> g(size_t(lp.numElements(id)));
        gpu->read(id, g.data(), g.size());
        return g;
      },
      tolF32, tolLow, name, /*skipI32=*/true);
}

TEST(CudaExecutor, ElementwiseMatchesCpu) {
  // fp32 transcendental functions differ by a few ulps; fp16/bf16 outputs by one ulp.
  compareWithCpu(elementwisePlan(), "ew.plan", 3, 2e-6, 8e-3);
}

//===--- kernels run on the CPU (HostKernels.h): CI checks what they compute --------===//

/// The plan's tensors as device-format bytes on the host, each at `misalign` bytes
/// past a 64-byte boundary (4 keeps every element naturally aligned but no tensor
/// 16-byte aligned: the kernels' scalar paths).
class HostTensors {
public:
  HostTensors(const LoadedPlan &lp, const CpuExecutor<float> &cpu, size_t misalign) : lp_(lp) {
    for (flatbuffers::uoffset_t id = 0; id < lp->tensors()->size(); ++id) {
      const size_t n = size_t(lp.numElements(int(id)));
      storage_.emplace_back((n + 1) * 4 + 64 + misalign, 0);
      uint8_t *base = storage_.back().data();
      base += (64 - reinterpret_cast<uintptr_t>(base) % 64) % 64 + misalign;
      ptrs_.push_back(base);
      set(int(id), cpu.tensor(int(id)));
    }
  }
  void *ptr(int id) { return id < 0 ? nullptr : ptrs_[size_t(id)]; }
  plan::DType dtype(int id) const { return lp_->tensors()->Get(uint32_t(id))->dtype(); }
  void set(int id, const std::vector<float> &v) {
    for (size_t i = 0; i < v.size(); ++i)
      switch (dtype(id)) {
      case plan::DType::F16:
        reinterpret_cast<uint16_t *>(ptrs_[size_t(id)])[i] = floatToHalfBits(v[i]);
        break;
      case plan::DType::BF16:
        reinterpret_cast<uint16_t *>(ptrs_[size_t(id)])[i] = floatToBF16Bits(v[i]);
        break;
      case plan::DType::I32:
        reinterpret_cast<int32_t *>(ptrs_[size_t(id)])[i] = int32_t(v[i]);
        break;
      default:
        reinterpret_cast<float *>(ptrs_[size_t(id)])[i] = v[i];
      }
  }
  std::vector<float> get(int id) const {
    std::vector<float> v(size_t(lp_.numElements(id)));
    for (size_t i = 0; i < v.size(); ++i)
      switch (dtype(id)) {
      case plan::DType::F16:
        v[i] = halfBitsToFloat(reinterpret_cast<const uint16_t *>(ptrs_[size_t(id)])[i]);
        break;
      case plan::DType::BF16:
        v[i] = bf16BitsToFloat(reinterpret_cast<const uint16_t *>(ptrs_[size_t(id)])[i]);
        break;
      case plan::DType::I32:
        v[i] = float(reinterpret_cast<const int32_t *>(ptrs_[size_t(id)])[i]);
        break;
      default:
        v[i] = reinterpret_cast<const float *>(ptrs_[size_t(id)])[i];
      }
    return v;
  }

private:
  const LoadedPlan &lp_;
  std::vector<std::vector<uint8_t>> storage_;
  std::vector<uint8_t *> ptrs_;
};

/// The prelude and each distinct kernel's source, for HostKernels, and the kernels'
/// names (each once).
std::pair<std::string, std::vector<std::string>>
hostElementwiseSource(const std::vector<cuda::ElementwiseKernel> &kernels) {
  std::map<std::string, std::string> bodies;
  for (const cuda::ElementwiseKernel &k : kernels)
    bodies.emplace(k.name, k.source);
  std::string source = cuda::cudaPrelude();
  std::vector<std::string> names;
  for (const auto &[n, body] : bodies) {
    source += body;
    names.push_back(n);
  }
  return {source, names};
}

/// One elementwise step's kernel on the CPU, as the executor launches it (its inputs'
/// and outputs' data, the count, the geometry), on a small grid so that the
/// grid-stride loops turn.
void launchHostElementwise(test::HostKernels &hk, HostTensors &ht,
                           const cuda::ElementwiseKernel &k) {
  std::vector<void *> ptrs;
  for (int id : k.inputs)
    ptrs.push_back(ht.ptr(id));
  for (int id : k.outputs)
    ptrs.push_back(ht.ptr(id));
  long long n = k.total;
  std::vector<int64_t> geometry = k.geometry;
  std::vector<void *> params;
  for (void *&p : ptrs)
    params.push_back(&p);
  params.push_back(&n);
  if (!geometry.empty())
    params.push_back(geometry.data());
  hk.launch(k.name, 2, 1, 1, 32, params.data());
}

/// Runs train_step's elementwise steps with the generated kernels on the CPU
/// (HostKernels.h), from the plan's initial values, and expects every tensor to equal
/// the CPU executor's bit for bit (the same program, the same float operations, the
/// same rounding): once with 16-byte-aligned tensors (the vector path) and once
/// misaligned (the scalar path). A small grid, so that the grid-stride loops turn.
void expectHostElementwiseMatchesCpu(const std::vector<uint8_t> &bytes, const std::string &name) {
  LoadedPlan lp = LoadedPlan::fromBytes(bytes, name);
  const plan::Function *fn = nullptr;
  for (const plan::Function *f : *lp->functions())
    if (f->name()->str() == "train_step")
      fn = f;
  ASSERT_NE(fn, nullptr);
  std::vector<cuda::ElementwiseKernel> kernels;
  for (const plan::Step *step : *fn->steps()) {
    ASSERT_EQ(step->kernel_type(), plan::Kernel::Elementwise) << "elementwise steps only";
    kernels.push_back(cuda::generateElementwise(lp.plan(), *step->kernel_as_Elementwise()));
  }
  const auto [source, names] = hostElementwiseSource(kernels);
  test::HostKernels hk(source, names);
  for (size_t misalign : {size_t(0), size_t(4)}) {
    CpuExecutor<float> cpu(lp, 1);
    HostTensors ht(lp, cpu, misalign);
    cpu.run("train_step");
    for (const cuda::ElementwiseKernel &k : kernels)
      launchHostElementwise(hk, ht, k);
    for (flatbuffers::uoffset_t id = 0; id < lp->tensors()->size(); ++id) {
      const std::vector<float> h = ht.get(int(id)), &c = cpu.tensor(int(id));
      size_t bad = 0, first = 0;
      for (size_t i = 0; i < h.size(); ++i)
        if (!sameBits(h[i], c[i]) && bad++ == 0)
          first = i;
      EXPECT_EQ(bad, 0u) << name << " misaligned by " << misalign << ": tensor '"
                         << lp->tensors()->Get(id)->name()->str() << "': " << bad
                         << " elements differ, the first at " << first << " (host "
                         << (bad ? h[first] : 0) << ", CPU " << (bad ? c[first] : 0) << ")";
    }
  }
}

TEST(CudaHostEmulation, ElementwiseKernelsMatchTheCpuBitForBit) {
  // 740 elements: 92 vectors of 8 and a tail of 4.
  expectHostElementwiseMatchesCpu(elementwisePlan({4, 5, 37}), "ew-host.plan");
  // Rows of 16: the broadcast of `bias` along the rows also takes the vector path.
  expectHostElementwiseMatchesCpu(elementwisePlan({3, 5, 16}), "ew-host-rows.plan");
  // Fewer elements than one vector: the tail only.
  expectHostElementwiseMatchesCpu(elementwisePlan({1, 5, 1}), "ew-host-small.plan");
}

/// The multi-tensor entry of multiTensorPlan's update kernel, one launch per run, on
/// the CPU: every tensor equals the CPU executor's bit for bit, with the tensors
/// aligned (vector path) and 4 bytes off (scalar path).
TEST(CudaHostEmulation, MultiTensorElementwiseMatchesTheCpuBitForBit) {
  LoadedPlan lp = LoadedPlan::fromBytes(multiTensorPlan(), "multi-host.plan");
  std::vector<cuda::ElementwiseKernel> kernels;
  for (const plan::Step *step : *lp->functions()->Get(0)->steps())
    kernels.push_back(cuda::generateElementwise(lp.plan(), *step->kernel_as_Elementwise()));
  auto [source, names] = hostElementwiseSource(kernels);
  names.push_back(kernels[0].multiName);
  test::HostKernels hk(source, names);
  std::vector<const cuda::ElementwiseKernel *> steps;
  for (const auto &k : kernels)
    steps.push_back(&k);
  const auto groups = cuda::multiTensorGroups(steps, cuda::planMemoryExtents(lp.plan()));
  ASSERT_EQ(groups.size(), 2u);
  for (size_t misalign : {size_t(0), size_t(4)}) {
    CpuExecutor<float> cpu(lp, 1);
    HostTensors ht(lp, cpu, misalign);
    cpu.run("train_step");
    for (size_t s = 0; s < kernels.size(); ++s) {
      auto group = std::find_if(groups.begin(), groups.end(), [&](const auto &g) {
        return std::count(g.begin(), g.end(), s) > 0;
      });
      if (group == groups.end()) {
        launchHostElementwise(hk, ht, kernels[s]);
        continue;
      }
      if (group->front() != s)
        continue; // launched with its group's first step
      std::vector<cuda::ElementwiseItem> items;
      for (size_t i : *group) {
        cuda::ElementwiseItem item{};
        size_t q = 0;
        for (int id : kernels[i].inputs)
          item.p[q++] = ht.ptr(id);
        for (int id : kernels[i].outputs)
          item.p[q++] = ht.ptr(id);
        item.n = kernels[i].total;
        items.push_back(item);
      }
      const cuda::ElementwiseItem *table = items.data();
      int count = int(items.size());
      void *params[] = {&table, &count};
      // Fewer blocks in y than items: the entry's loop over items turns.
      hk.launch(kernels[s].multiName, 2, 2, 1, 32, params);
    }
    for (flatbuffers::uoffset_t id = 0; id < lp->tensors()->size(); ++id) {
      const std::vector<float> h = ht.get(int(id)), &c = cpu.tensor(int(id));
      EXPECT_EQ(std::memcmp(h.data(), c.data(), h.size() * 4), 0)
          << "misaligned by " << misalign << ": tensor '"
          << lp->tensors()->Get(id)->name()->str() << "'";
    }
  }
}

TEST(CudaExecutor, MultiTensorLaunchesMatchCpu) {
  // Batched (the default) and one launch per step.
  compareWithCpu(multiTensorPlan(), "multi.plan", 3, 1e-6, 1e-3);
  setenv("MANTISSA_CUDA_MULTI_TENSOR", "0", 1);
  compareWithCpu(multiTensorPlan(), "multi-off.plan", 3, 1e-6, 1e-3);
  unsetenv("MANTISSA_CUDA_MULTI_TENSOR");
}

/// FixedLaunch.h's launcher over HostKernels: each argument converted to exactly the
/// kernel's parameter type, as the executor's launcher does.
struct HostLauncher {
  test::HostKernels &hk;
  template <class H, class... P, class... A>
  void operator()(const cuda::TypedKernel<H, P...> &k, cuda::Grid g, unsigned threads,
                  A &&...args) const {
    static_assert(sizeof...(P) == sizeof...(A), "wrong number of kernel arguments");
    std::tuple<P...> values{static_cast<P>(std::forward<A>(args))...};
    std::array<void *, sizeof...(P)> params{};
    std::apply(
        [&](auto &...v) {
          size_t i = 0;
          ((params[i++] = static_cast<void *>(&v)), ...);
        },
        values);
    hk.launch(k.name, g.x, g.y, g.z, threads, params.data());
  }
};

cuda::FixedKernelTable<int> fixedHostTable(std::vector<std::string> &names) {
  cuda::FixedKernelTable<int> t;
#define MANTISSA_FIXED_KERNEL(kernel, ...)                                                         \
  t.kernel.name = #kernel;                                                                         \
  names.push_back(#kernel);
#include "runtime/cuda/FixedKernels.def"
  return t;
}

/// Batch norm (training and eval), its gradient and reductions, on the 16-byte
/// path (hw % 8 == 0) and past one chunk (2 x 16384 values per channel).
std::vector<uint8_t> normReducePlan(int64_t N, int64_t C, int64_t H, int64_t W) {
  PlanMaker pm;
  auto &b = pm.builder();
  const int64_t hw = H * W;
  int x = pm.tensor("x", plan::DType::F16, {N, C, H, W}, plan::Role::Param, -1.0f, 3.0f);
  int gamma = pm.tensor("gamma", plan::DType::F32, {C}, plan::Role::Param, 0.5f, 1.5f);
  int beta = pm.tensor("beta", plan::DType::F32, {C});
  int y = pm.tensor("bn_y", plan::DType::F16, {N, C, H, W}, plan::Role::Temp);
  int sm = pm.tensor("saved_mean", plan::DType::F32, {C}, plan::Role::Temp);
  int si = pm.tensor("saved_invstd", plan::DType::F32, {C}, plan::Role::Temp);
  int rm = pm.tensor("running_mean", plan::DType::F32, {C}, plan::Role::Buffer, 0.0f, 0.1f);
  int rv = pm.tensor("running_var", plan::DType::F32, {C}, plan::Role::Buffer, 0.9f, 1.1f);
  pm.step("bn", plan::Kernel::BatchNorm,
          plan::CreateBatchNorm(b, x, gamma, beta, y, sm, si, rm, rv, N, C, hw, 1e-5f, 0.1f, true)
              .Union());
  // With the relu folded in (fuse-elementwise): training into f16, eval into f32.
  int yRelu = pm.tensor("bn_relu_y", plan::DType::F16, {N, C, H, W}, plan::Role::Temp);
  int sm2 = pm.tensor("saved_mean2", plan::DType::F32, {C}, plan::Role::Temp);
  int si2 = pm.tensor("saved_invstd2", plan::DType::F32, {C}, plan::Role::Temp);
  pm.step("bn_relu", plan::Kernel::BatchNorm,
          plan::CreateBatchNorm(b, x, gamma, beta, yRelu, sm2, si2, rm, rv, N, C, hw, 1e-5f, 0.1f,
                                true, true)
              .Union());
  int yEval = pm.tensor("bn_y_eval", plan::DType::F32, {N, C, H, W}, plan::Role::Temp);
  pm.step("bn_eval", plan::Kernel::BatchNorm,
          plan::CreateBatchNorm(b, x, gamma, beta, yEval, -1, -1, rm, rv, N, C, hw, 1e-5f, 0.1f,
                                false, true)
              .Union());
  int dy = pm.tensor("bn_dy", plan::DType::BF16, {N, C, H, W});
  int dx = pm.tensor("bn_dx", plan::DType::F16, {N, C, H, W}, plan::Role::Temp);
  int dg = pm.tensor("dgamma", plan::DType::F32, {C}, plan::Role::Temp);
  int db = pm.tensor("dbeta", plan::DType::F32, {C}, plan::Role::Temp);
  pm.step("bn_bwd", plan::Kernel::BatchNormBackward,
          plan::CreateBatchNormBackward(b, dy, x, gamma, sm, si, dx, dg, db, N, C, hw).Union());
  // With a folded relu_grad: the gradient counts where the mask (a relu's f16 result,
  // here bn_relu_y: about half zeros) is > 0.
  int dxm = pm.tensor("bn_dx_masked", plan::DType::F16, {N, C, H, W}, plan::Role::Temp);
  int dgm = pm.tensor("dgamma_masked", plan::DType::F32, {C}, plan::Role::Temp);
  int dbm = pm.tensor("dbeta_masked", plan::DType::F32, {C}, plan::Role::Temp);
  pm.step("bn_bwd_masked", plan::Kernel::BatchNormBackward,
          plan::CreateBatchNormBackward(b, dy, x, gamma, sm, si, dxm, dgm, dbm, N, C, hw, yRelu)
              .Union());
  // With an input bias (the folded bias add of the convolution that wrote x): the
  // batch norm, its eval form and its masked gradient read x + xb, rounded to f16.
  int xb = pm.tensor("input_bias", plan::DType::F16, {C}, plan::Role::Param, -2.0f, 2.0f);
  int yb = pm.tensor("bn_biased_y", plan::DType::F16, {N, C, H, W}, plan::Role::Temp);
  int smb = pm.tensor("saved_mean_biased", plan::DType::F32, {C}, plan::Role::Temp);
  int sib = pm.tensor("saved_invstd_biased", plan::DType::F32, {C}, plan::Role::Temp);
  pm.step("bn_biased", plan::Kernel::BatchNorm,
          plan::CreateBatchNorm(b, x, gamma, beta, yb, smb, sib, rm, rv, N, C, hw, 1e-5f, 0.1f,
                                true, true, xb)
              .Union());
  int ybEval = pm.tensor("bn_biased_y_eval", plan::DType::F32, {N, C, H, W}, plan::Role::Temp);
  pm.step("bn_eval_biased", plan::Kernel::BatchNorm,
          plan::CreateBatchNorm(b, x, gamma, beta, ybEval, -1, -1, rm, rv, N, C, hw, 1e-5f, 0.1f,
                                false, false, xb)
              .Union());
  int dxb = pm.tensor("bn_dx_biased", plan::DType::F16, {N, C, H, W}, plan::Role::Temp);
  int dgb = pm.tensor("dgamma_biased", plan::DType::F32, {C}, plan::Role::Temp);
  int dbb = pm.tensor("dbeta_biased", plan::DType::F32, {C}, plan::Role::Temp);
  pm.step("bn_bwd_biased", plan::Kernel::BatchNormBackward,
          plan::CreateBatchNormBackward(b, dy, x, gamma, smb, sib, dxb, dgb, dbb, N, C, hw, yb, xb)
              .Union());
  auto reduce = [&](const std::string &name, int in, std::vector<int64_t> inShape,
                    std::vector<int64_t> outShape, bool mean) {
    int out = pm.tensor(name, plan::DType::F32, outShape, plan::Role::Temp);
    pm.step(name, plan::Kernel::Reduce,
            plan::CreateReduceDirect(b, in, out, &inShape, &outShape, mean).Union());
  };
  // A bias gradient (sum over N, H, W), a mean over the pixels, and one whose inner
  // reduced dimension is strided (the scalar kernels).
  reduce("bias_grad", dy, {N, C, H, W}, {1, C, 1, 1}, false);
  reduce("pixel_mean", x, {N, C, H, W}, {N, C, 1, 1}, true);
  reduce("rows", x, {N * C * H, W}, {1, W}, false);
  return pm.finish();
}

/// Max pooling (f16, values on a coarse grid so that windows tie; a few NaNs) and its
/// gradient, which finds the argmax again from x and y (no indices).
std::vector<uint8_t> poolPlan(int64_t kernel, int64_t stride) {
  PlanMaker pm;
  auto &b = pm.builder();
  const int64_t N = 2, C = 3, H = 9, W = 10, OH = (H - kernel) / stride + 1,
                OW = (W - kernel) / stride + 1;
  std::vector<float> xv(size_t(N * C * H * W));
  for (size_t i = 0; i < xv.size(); ++i)
    xv[i] = i % 37 == 5 ? NAN : float(int((i * 7919) % 5) - 2);
  int x = pm.tensor("x", plan::DType::F16, {N, C, H, W}, plan::Role::Param, 0, 0, xv);
  int y = pm.tensor("pool_y", plan::DType::F16, {N, C, OH, OW}, plan::Role::Temp);
  int dy = pm.tensor("pool_dy", plan::DType::F16, {N, C, OH, OW});
  int dx = pm.tensor("pool_dx", plan::DType::F32, {N, C, H, W}, plan::Role::Temp);
  pm.step("pool", plan::Kernel::MaxPool2d,
          plan::CreateMaxPool2d(b, x, y, -1, N, C, H, W, kernel, stride).Union());
  pm.step("pool_bwd", plan::Kernel::MaxPool2dBackward,
          plan::CreateMaxPool2dBackward(b, dy, x, y, dx, N, C, H, W, kernel, stride).Union());
  return pm.finish();
}

/// Runs the plan's batch-norm and reduce steps with FixedLaunch.h's sequences and the
/// fixed kernels compiled for the CPU; compares every tensor with the CPU executor.
/// Returns how many steps took a 16-byte kernel.
int expectHostNormReduceMatchesCpu(const std::vector<uint8_t> &bytes, size_t misalign,
                                   bool vectorAllowed, test::HostKernels &hk,
                                   const cuda::FixedKernelTable<int> &table) {
  LoadedPlan lp = LoadedPlan::fromBytes(bytes, "normreduce.plan");
  CpuExecutor<float> cpu(lp, 1);
  HostTensors ht(lp, cpu, misalign);
  cpu.run("train_step");
  auto ref = [&](int id) {
    return cuda::TensorRef{ht.ptr(id), id < 0 ? cuda::kF32 : int(ht.dtype(id))};
  };
  HostLauncher launch{hk};
  auto blocks = [](long long n) { return unsigned(std::clamp((n + 255) / 256, 1LL, 2LL)); };
  int vectorSteps = 0;
  for (const plan::Function *fn : *lp->functions()) {
    if (fn->name()->str() != "train_step")
      continue;
    for (const plan::Step *step : *fn->steps()) {
      if (step->kernel_type() == plan::Kernel::BatchNorm) {
        const cuda::BatchNormArgs a = cuda::batchNormArgs(*step->kernel_as_BatchNorm(), ref);
        const cuda::ChannelSplit s =
            cuda::channelSplit(a.n, a.hw, vectorAllowed && cuda::batchNormVectorOk(a));
        std::vector<double> part(cuda::batchNormPartialBytes(s, a.c, false) / 8), bm(size_t(a.c)),
            mean(size_t(a.c)), inv(size_t(a.c));
        cuda::launchBatchNorm(
            table, launch, blocks, a, s,
            cuda::BatchNormScratch{part.data(), bm.data(), mean.data(), inv.data()});
        vectorSteps += s.vector;
      } else if (step->kernel_type() == plan::Kernel::BatchNormBackward) {
        const cuda::BatchNormBackwardArgs a =
            cuda::batchNormBackwardArgs(*step->kernel_as_BatchNormBackward(), ref);
        const cuda::ChannelSplit s =
            cuda::channelSplit(a.n, a.hw, vectorAllowed && cuda::batchNormVectorOk(a));
        std::vector<double> part(cuda::batchNormPartialBytes(s, a.c, true) / 8), m1(size_t(a.c)),
            m2(size_t(a.c));
        cuda::launchBatchNormBackward(
            table, launch, blocks, a, s,
            cuda::BatchNormBackwardScratch{part.data(), m1.data(), m2.data()});
        vectorSteps += s.vector;
      } else if (step->kernel_type() == plan::Kernel::Reduce) {
        const cuda::ReduceArgs a = cuda::reduceArgs(*step->kernel_as_Reduce(), ref);
        const cuda::ReduceSplit s = cuda::reduceSplit(a.g, a.rcount, a.it, a.in, vectorAllowed);
        std::vector<double> part(size_t(std::max(1LL, a.outCount * s.chunks)));
        cuda::launchReduce(table, launch, blocks, a, s, part.data());
        vectorSteps += s.vector;
      } else if (const plan::MaxPool2d *k = step->kernel_as_MaxPool2d()) {
        const long long planes = k->n() * k->c(), OH = (k->h() - k->kernel()) / k->stride() + 1,
                        OW = (k->w() - k->kernel()) / k->stride() + 1;
        launch(table.mt_maxpool_fwd, cuda::Grid{blocks(planes * OH * OW)}, 256, ref(k->x()).data,
               ref(k->x()).dtype, ref(k->y()).data, ref(k->y()).dtype,
               static_cast<int *>(k->indices() >= 0 ? ht.ptr(k->indices()) : nullptr), planes,
               k->h(), k->w(), OH, OW, k->kernel(), k->stride());
      } else if (const plan::MaxPool2dBackward *k = step->kernel_as_MaxPool2dBackward()) {
        cuda::launchMaxPoolBackward(table, launch, blocks, cuda::maxPoolBackwardArgs(*k, ref));
      } else {
        ADD_FAILURE() << "unexpected step kind";
      }
    }
  }
  expectTensorsClose(
      lp, cpu, [&](int id) { return ht.get(id); }, 2e-6, 2e-3,
      "misaligned by " + std::to_string(misalign) + ", vector kernels " +
          (vectorAllowed ? "on" : "off"));
  return vectorSteps;
}

TEST(CudaHostEmulation, BatchNormAndReduceKernelsMatchTheCpu) {
  std::vector<std::string> names;
  const cuda::FixedKernelTable<int> table = fixedHostTable(names);
  test::HostKernels hk(std::string(cuda::cudaPrelude()) + cuda::fixedKernelSource(), names);
  const std::vector<uint8_t> bytes = normReducePlan(3, 2, 64, 96);
  // Aligned: the 16-byte kernels for bn, bn_relu, bn_eval, bn_bwd, bn_bwd_masked, the
  // three with an input bias and bias_grad (pixel_mean has 6144 values per output: also
  // one; rows is strided).
  EXPECT_EQ(expectHostNormReduceMatchesCpu(bytes, 0, true, hk, table), 10);
  // The scalar kernels: turned off, and for tensors that are not 16-byte aligned.
  EXPECT_EQ(expectHostNormReduceMatchesCpu(bytes, 0, false, hk, table), 0);
  EXPECT_EQ(expectHostNormReduceMatchesCpu(bytes, 4, true, hk, table), 0);
  // hw not a multiple of 8: scalar batch norm even when aligned.
  EXPECT_EQ(expectHostNormReduceMatchesCpu(normReducePlan(2, 3, 5, 7), 0, true, hk, table), 0);
  // Max pooling and its gradient from x and y: overlapping 3x3 windows (stride 2),
  // and 2x2 windows (f16, where ties are frequent).
  expectHostNormReduceMatchesCpu(poolPlan(3, 2), 0, true, hk, table);
  expectHostNormReduceMatchesCpu(poolPlan(2, 2), 0, true, hk, table);
}

/// All-finite checks, plain and times a multiplier (loss scaling's unscale, inside the
/// check), with the flags they must give: 1, 1, 0 (f16 60000 x 1e35 overflows fp32),
/// 0 (3e38 x 2), 0 (a NaN).
std::vector<uint8_t> allFinitePlan(std::vector<float> &expected) {
  PlanMaker pm;
  auto &b = pm.builder();
  int h16 = pm.tensor("h16", plan::DType::F16, {300}, plan::Role::Param, -60000.0f, 60000.0f);
  int h32 = pm.tensor("h32", plan::DType::F32, {5}, plan::Role::Param, 0, 0,
                      {3e38f, -1.0f, 0.5f, -3e38f, 7.0f});
  int nan16 = pm.tensor("nan16", plan::DType::F16, {3}, plan::Role::Param, 0, 0, {1.0f, NAN, 2.0f});
  auto scalar = [&](const char *name, float v) {
    return pm.tensor(name, plan::DType::F32, {}, plan::Role::Param, 0, 0, {v});
  };
  int unscale = scalar("unscale", 1.0f / 65536), blowup = scalar("blowup", 1e35f),
      two = scalar("two", 2.0f);
  auto check = [&](const char *name, std::vector<int32_t> inputs, int multiplier, float want) {
    int out = pm.tensor(name, plan::DType::F32, {}, plan::Role::Temp);
    pm.step(name, plan::Kernel::AllFinite,
            plan::CreateAllFiniteDirect(b, &inputs, out, multiplier).Union());
    expected.push_back(want);
  };
  check("plain", {h16, h32}, -1, 1.0f);
  check("unscaled", {h16}, unscale, 1.0f);
  check("f16_times_1e35", {h16}, blowup, 0.0f);
  check("f32_times_2", {h32}, two, 0.0f);
  check("nan_unscaled", {h16, nan16}, unscale, 0.0f);
  return pm.finish();
}

/// Concatenations and slices: f16 rows whose lengths and offsets are whole 16-byte
/// vectors (the vector path when the tensors are aligned), a slice at an offset that
/// is not, and a concatenation that converts (bf16 and f32 into f32).
std::vector<uint8_t> copyRowsPlan() {
  PlanMaker pm;
  auto &b = pm.builder();
  int a = pm.tensor("a", plan::DType::F16, {2, 16, 3});
  int c = pm.tensor("c", plan::DType::F16, {2, 8, 3});
  int cat = pm.tensor("cat", plan::DType::F16, {2, 24, 3}, plan::Role::Temp);
  std::vector<int32_t> ins = {a, c};
  std::vector<int64_t> rows = {48, 24};
  pm.step("cat", plan::Kernel::Concat, plan::CreateConcatDirect(b, &ins, cat, 2, &rows).Union());
  int sl = pm.tensor("slice", plan::DType::F16, {2, 8, 3}, plan::Role::Temp);
  pm.step("slice", plan::Kernel::Slice, plan::CreateSlice(b, cat, sl, 2, 72, 48, 24).Union());
  int odd = pm.tensor("odd_slice", plan::DType::F16, {2, 8, 3}, plan::Role::Temp);
  pm.step("odd_slice", plan::Kernel::Slice, plan::CreateSlice(b, cat, odd, 2, 72, 3, 24).Union());
  int x = pm.tensor("x", plan::DType::BF16, {2, 5});
  int y = pm.tensor("y", plan::DType::F32, {2, 4});
  int mixed = pm.tensor("mixed", plan::DType::F32, {2, 9}, plan::Role::Temp);
  std::vector<int32_t> mixIn = {x, y};
  std::vector<int64_t> mixRows = {5, 4};
  pm.step("mixed", plan::Kernel::Concat,
          plan::CreateConcatDirect(b, &mixIn, mixed, 2, &mixRows).Union());
  return pm.finish();
}

// The executor's launches for Concat and Slice (FixedLaunch.h launchCopyRows) on the
// CPU: the same bits as the CPU executor, through the 16-byte kernel where it applies
// (aligned) and the scalar one otherwise (misaligned by 4 bytes: never).
TEST(CudaHostEmulation, ConcatAndSliceMatchTheCpu) {
  std::vector<std::string> names;
  const cuda::FixedKernelTable<int> table = fixedHostTable(names);
  test::HostKernels hk(std::string(cuda::cudaPrelude()) + cuda::fixedKernelSource(), names);
  LoadedPlan lp = LoadedPlan::fromBytes(copyRowsPlan(), "copyrows.plan");
  for (size_t misalign : {size_t(0), size_t(4)}) {
    CpuExecutor<float> cpu(lp, 1);
    HostTensors ht(lp, cpu, misalign);
    cpu.run("train_step");
    int vectorLaunches = 0;
    HostLauncher host{hk};
    auto launch = [&](const auto &kernel, cuda::Grid g, unsigned threads, auto &&...args) {
      vectorLaunches += std::string(kernel.name) == "mt_copy_rows16";
      host(kernel, g, threads, std::forward<decltype(args)>(args)...);
    };
    auto ref = [&](int id) { return cuda::TensorRef{ht.ptr(id), int(ht.dtype(id))}; };
    auto blocks = [](long long n) { return unsigned(std::min<long long>((n + 31) / 32, 2)); };
    for (const plan::Step *step : *lp.findFunction("train_step")->steps()) {
      if (step->kernel_type() == plan::Kernel::Concat)
        for (const cuda::CopyRowsArgs &p : cuda::concatArgs(*step->kernel_as_Concat(), ref))
          cuda::launchCopyRows(table, launch, blocks, p);
      else
        cuda::launchCopyRows(table, launch, blocks, cuda::sliceArgs(*step->kernel_as_Slice(), ref));
    }
    // Aligned: both pieces of "cat" and "slice"; "odd_slice" starts mid-vector and
    // "mixed" converts.
    EXPECT_EQ(vectorLaunches, misalign == 0 ? 3 : 0) << "misaligned by " << misalign;
    for (flatbuffers::uoffset_t id = 0; id < lp->tensors()->size(); ++id) {
      const std::vector<float> h = ht.get(int(id)), &c = cpu.tensor(int(id));
      for (size_t i = 0; i < h.size(); ++i)
        ASSERT_TRUE(sameBits(h[i], c[i]))
            << lp->tensors()->Get(id)->name()->str() << " misaligned by " << misalign
            << ": element " << i << " is " << h[i] << ", the CPU's " << c[i];
    }
  }
}

TEST(CudaHostEmulation, AllFiniteMatchesTheCpu) {
  std::vector<std::string> names;
  const cuda::FixedKernelTable<int> table = fixedHostTable(names);
  test::HostKernels hk(std::string(cuda::cudaPrelude()) + cuda::fixedKernelSource(), names);
  std::vector<float> expected;
  LoadedPlan lp = LoadedPlan::fromBytes(allFinitePlan(expected), "allfinite.plan");
  CpuExecutor<float> cpu(lp, 1);
  HostTensors ht(lp, cpu, 0);
  cpu.run("train_step");
  HostLauncher launch{hk};
  size_t i = 0;
  for (const plan::Step *step : *lp.findFunction("train_step")->steps()) {
    const plan::AllFinite &k = *step->kernel_as_AllFinite();
    // The executor's launches (prepareAllFinite): one block row per tensor, then the flag.
    std::vector<cuda::FiniteItem> items;
    long long maxCount = 0;
    for (int id : *k.inputs()) {
      items.push_back({ht.ptr(id), lp.numElements(id), int64_t(ht.dtype(id))});
      maxCount = std::max<long long>(maxCount, lp.numElements(id));
    }
    int flag = 0;
    const int m = k.multiplier();
    cuda::launchAllFinite(table, launch, items.data(), (long long)items.size(), maxCount, &flag,
                          ht.ptr(m), m < 0 ? 0 : int(ht.dtype(m)), ht.ptr(k.output()),
                          int(ht.dtype(k.output())));
    const std::string name = step->name()->str();
    EXPECT_EQ(cpu.tensor(k.output())[0], expected[i]) << name << " on the CPU";
    EXPECT_EQ(ht.get(k.output())[0], expected[i]) << name << " in the CUDA kernel";
    ++i;
  }
  EXPECT_EQ(i, expected.size());
}

// A batch norm's input bias is the folded bias add: x + bias rounded to x's type, not
// the unrounded sum. An eval batch norm with mean 0, variance 1, eps 0 and no affine
// parameters is the identity, so its f32 output must equal round_f16(x + bias), computed
// here independently, bit for bit: on the CPU, and in the scalar and 16-byte kernels.
TEST(CudaHostEmulation, BatchNormInputBiasIsTheRoundedBiasAdd) {
  std::vector<std::string> names;
  const cuda::FixedKernelTable<int> table = fixedHostTable(names);
  test::HostKernels hk(std::string(cuda::cudaPrelude()) + cuda::fixedKernelSource(), names);
  const int64_t N = 2, C = 3, H = 4, W = 8, hw = H * W;
  PlanMaker pm;
  int x = pm.tensor("x", plan::DType::F16, {N, C, H, W}, plan::Role::Param, -300.0f, 300.0f);
  // Biases that are not multiples of the ulps of x, so most sums round.
  int xb = pm.tensor("bias", plan::DType::F16, {C}, plan::Role::Param, 0, 0, {0.3f, -0.7f, 0.05f});
  int rm = pm.tensor("mean0", plan::DType::F32, {C}, plan::Role::Buffer, 0, 0, {0, 0, 0});
  int rv = pm.tensor("var1", plan::DType::F32, {C}, plan::Role::Buffer, 0, 0, {1, 1, 1});
  int y = pm.tensor("y", plan::DType::F32, {N, C, H, W}, plan::Role::Temp);
  pm.step("identity", plan::Kernel::BatchNorm,
          plan::CreateBatchNorm(pm.builder(), x, -1, -1, y, -1, -1, rm, rv, N, C, hw, 0.0f, 0.1f,
                                false, false, xb)
              .Union());
  LoadedPlan lp = LoadedPlan::fromBytes(pm.finish(), "input-bias.plan");
  CpuExecutor<float> cpu(lp, 1);
  cpu.run("train_step");
  const std::vector<float> &xv = cpu.tensor(x), &bv = cpu.tensor(xb);
  std::vector<float> want(xv.size());
  int rounded = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    want[i] = roundToF16(xv[i] + bv[(i / size_t(hw)) % size_t(C)]);
    rounded += want[i] != xv[i] + bv[(i / size_t(hw)) % size_t(C)];
  }
  EXPECT_GT(rounded, int(xv.size()) / 2) << "the sums must mostly need rounding";
  EXPECT_EQ(cpu.tensor(y), want) << "CPU";
  for (bool vector : {true, false}) {
    HostTensors ht(lp, cpu, 0);
    ht.set(y, std::vector<float>(want.size(), 0.0f));
    auto ref = [&](int id) {
      return cuda::TensorRef{ht.ptr(id), id < 0 ? cuda::kF32 : int(ht.dtype(id))};
    };
    const plan::Step *step = lp.findFunction("train_step")->steps()->Get(0);
    const cuda::BatchNormArgs a = cuda::batchNormArgs(*step->kernel_as_BatchNorm(), ref);
    const cuda::ChannelSplit sp = cuda::channelSplit(a.n, a.hw, vector);
    ASSERT_EQ(sp.vector, vector);
    const size_t c = static_cast<size_t>(C);
    std::vector<double> part(cuda::batchNormPartialBytes(sp, a.c, false) / 8), bm(c), mean(c),
        inv(c);
    cuda::launchBatchNorm(
        table, HostLauncher{hk}, [](long long) { return 2u; }, a, sp,
        cuda::BatchNormScratch{part.data(), bm.data(), mean.data(), inv.data()});
    EXPECT_EQ(ht.get(y), want) << (vector ? "16-byte kernel" : "scalar kernel");
  }
}

// Kernels compiled ahead of time (Plan.cuda): CUBIN of the device's architecture,
// and PTX JIT-compiled by the driver for a plan that has no CUBIN for it.
TEST(CudaExecutor, KernelsFromThePlanMatchCpu) {
  std::vector<uint8_t> bytes = elementwisePlan();
  cuda::KernelCache cache(cuda::KernelCache::defaultDir());
  const std::vector<cuda::ModuleSource> modules = cuda::planModules(*plan::GetPlan(bytes.data()));
  compareWithCpu(withCudaCode(bytes, cuda::compileModules(modules, {90, 80}, &cache, nullptr)),
                 "ew-aot.plan", 3, 2e-6, 8e-3);
  // sm_80 only: on any other GPU the PTX (compute_80) is JIT-compiled.
  compareWithCpu(withCudaCode(bytes, cuda::compileModules(modules, {80}, &cache, nullptr)),
                 "ew-aot-sm80.plan", 3, 2e-6, 8e-3);
}

TEST(CudaExecutor, APlanWithNoKernelTheGpuCanRunIsOneError) {
  std::vector<uint8_t> bytes = elementwisePlan();
  cuda::KernelCache cache(cuda::KernelCache::defaultDir());
  // A CUBIN for sm_80 only and no PTX: no use to any GPU but an sm_80 one.
  std::unique_ptr<plan::CudaCodeT> code =
      cuda::compileModules(cuda::planModules(*plan::GetPlan(bytes.data())), {80}, &cache, nullptr);
  for (auto &k : code->kernels) {
    k->ptx.clear();
    k->ptx_arch.clear();
  }
  LoadedPlan lp = LoadedPlan::fromBytes(withCudaCode(bytes, std::move(code)), "sm80-only.plan");
  std::string reason;
  std::unique_ptr<Executor> exec = cudaExecutorOrError(lp, reason);
  if (reason.find("no CUDA device") != std::string::npos)
    GTEST_SKIP() << reason;
  if (exec && exec->deviceDescription().find("compute capability 8.0") != std::string::npos)
    GTEST_SKIP() << "the GPU is an sm_80: the plan runs";
  EXPECT_EQ(exec, nullptr);
  EXPECT_NE(reason.find("sm80-only.plan: kernel mantissa_fixed has no code this GPU (sm_"),
            std::string::npos) << reason;
  EXPECT_NE(reason.find("can run: the plan has CUBIN sm_80; recompile with `mantissa compile --arch sm_"),
            std::string::npos) << reason;
}

std::vector<uint8_t> gemmPlan() {
  PlanMaker pm;
  auto &b = pm.builder();
  int a16 = pm.tensor("a16", plan::DType::F16, {2, 3, 40});
  int b16 = pm.tensor("b16", plan::DType::F16, {2, 40, 5});
  int c16 = pm.tensor("c16", plan::DType::F16, {2, 3, 5}, plan::Role::Temp);
  pm.step("f16_batched", plan::Kernel::Gemm,
          plan::CreateGemm(b, a16, b16, c16, false, false, 3, 5, 40, 2).Union());
  int a32 = pm.tensor("a32", plan::DType::F32, {33, 17});   // [k, m] with trans_a
  int b32 = pm.tensor("b32", plan::DType::F32, {9, 33});    // [n, k] with trans_b
  int c32 = pm.tensor("c32", plan::DType::F32, {17, 9});    // accumulated into
  pm.step("f32_trans", plan::Kernel::Gemm,
          plan::CreateGemm(b, a32, b32, c32, true, true, 17, 9, 33, 1, 0.5f, 1.0f).Union());
  int abf = pm.tensor("abf", plan::DType::BF16, {6, 20});
  int bbf = pm.tensor("bbf", plan::DType::BF16, {20, 7});
  int cbf = pm.tensor("cbf_out_f32", plan::DType::F32, {6, 7}, plan::Role::Temp);
  pm.step("bf16_to_f32", plan::Kernel::Gemm,
          plan::CreateGemm(b, abf, bbf, cbf, false, false, 6, 7, 20).Union());
  int cmix = pm.tensor("mixed_out_bf16", plan::DType::BF16, {6, 7}, plan::Role::Temp);
  int bmix = pm.tensor("bmix", plan::DType::F32, {20, 7});
  pm.step("mixed", plan::Kernel::Gemm,
          plan::CreateGemm(b, abf, bmix, cmix, false, false, 6, 7, 20).Union());
  int f32to16 = pm.tensor("f32_out_f16", plan::DType::F16, {17, 9});
  pm.step("f32_to_f16_accumulate", plan::Kernel::Gemm,
          plan::CreateGemm(b, a32, b32, f32to16, true, true, 17, 9, 33, 1, 1.0f, 1.0f).Union());
  int e0 = pm.tensor("empty_a", plan::DType::F32, {4, 0});
  int e1 = pm.tensor("empty_b", plan::DType::F32, {0, 3});
  int ec = pm.tensor("k0_scaled", plan::DType::F32, {4, 3});
  pm.step("k0", plan::Kernel::Gemm, plan::CreateGemm(b, e0, e1, ec, false, false, 4, 3, 0, 1, 1.0f, 0.5f).Union());
  return pm.finish();
}

TEST(CudaExecutor, GemmMatchesCpu) { compareWithCpu(gemmPlan(), "gemm.plan", 2, 1e-5, 4e-3); }

//===--- GEMM epilogues (Gemm.bias, Gemm.relu) -------------------------------------===//

/// One epilogue GEMM c = relu?(a · bᵀ + bias), a linear's layout (b is [n, k]).
struct EpilogueCase {
  std::string name;
  plan::DType dt;
  bool relu;
  int a = -1, b = -1, bias = -1, c = -1;
  std::vector<float> av, bv, biasv;
};

constexpr int64_t kEpiM = 5, kEpiN = 8, kEpiK = 12;

/// Every value a multiple of 1/4 below 8 in magnitude and k = 12, so every product
/// and sum is exact in fp32 (and in any order): the one rounding to c's type is the
/// only one. Row 0 holds a planted sum where rounding the product first (the unfused
/// plan) gives another value: f16 2049 + 1 is 2050, but round(2049) + 1 = 2049 rounds
/// to 2048; bf16 257 + 1 is 258 against 256. "f32_nan" has a NaN in row 1 of a.
std::vector<uint8_t> gemmEpiloguePlan(std::vector<EpilogueCase> &cases) {
  PlanMaker pm;
  auto &b = pm.builder();
  uint64_t state = 7;
  auto quarter = [&](double range) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return float(std::floor((double(state >> 11) / double(1ull << 53) * 2 - 1) * range * 4) / 4);
  };
  cases = {{"f16_bias_relu", plan::DType::F16, true},
           {"bf16_bias", plan::DType::BF16, false},
           {"f32_bias_relu", plan::DType::F32, true},
           {"f32_nan", plan::DType::F32, true}};
  for (EpilogueCase &e : cases) {
    for (int64_t i = 0; i < kEpiM * kEpiK; ++i)
      e.av.push_back(quarter(4));
    for (int64_t i = 0; i < kEpiN * kEpiK; ++i)
      e.bv.push_back(quarter(4));
    for (int64_t i = 0; i < kEpiN; ++i)
      e.biasv.push_back(quarter(8));
    const float big = e.dt == plan::DType::F16 ? 2048.0f : 256.0f; // the first non-integer step
    if (e.dt != plan::DType::F32) {
      for (int64_t k = 0; k < kEpiK; ++k)
        e.av[size_t(k)] = k == 0 ? big : k == 1 ? 1.0f : 0.0f;
      e.bv[0] = e.bv[1] = 1.0f;
      e.biasv[0] = 1.0f;
    }
    if (e.name == "f32_nan") {
      e.av[size_t(kEpiK + 2)] = std::numeric_limits<float>::quiet_NaN();
      for (int64_t j = 0; j < kEpiN; ++j)
        e.bv[size_t(j * kEpiK + 2)] = 0.5f; // nonzero: no BLAS may skip the NaN's product
    }
    e.a = pm.tensor(e.name + ".a", e.dt, {kEpiM, kEpiK}, plan::Role::Param, 0, 0, e.av);
    e.b = pm.tensor(e.name + ".b", e.dt, {kEpiN, kEpiK}, plan::Role::Param, 0, 0, e.bv);
    e.bias = pm.tensor(e.name + ".bias", e.dt, {kEpiN}, plan::Role::Param, 0, 0, e.biasv);
    e.c = pm.tensor(e.name + ".c", e.dt, {kEpiM, kEpiN}, plan::Role::Temp);
    pm.step(e.name, plan::Kernel::Gemm,
            plan::CreateGemm(b, e.a, e.b, e.c, false, true, kEpiM, kEpiN, kEpiK, 1, 1.0f, 0.0f,
                             e.bias, e.relu)
                .Union());
  }
  return pm.finish();
}

float roundTo(plan::DType dt, float v) {
  if (dt == plan::DType::F16)
    return halfBitsToFloat(floatToHalfBits(v));
  if (dt == plan::DType::BF16)
    return bf16BitsToFloat(floatToBF16Bits(v));
  return v;
}

/// The exact product (in double: every term and sum is exact, see gemmEpiloguePlan).
std::vector<float> epilogueProduct(const EpilogueCase &e) {
  std::vector<float> acc(size_t(kEpiM * kEpiN));
  for (int64_t i = 0; i < kEpiM; ++i)
    for (int64_t j = 0; j < kEpiN; ++j) {
      double s = 0;
      for (int64_t k = 0; k < kEpiK; ++k)
        s += double(roundTo(e.dt, e.av[size_t(i * kEpiK + k)])) *
             double(roundTo(e.dt, e.bv[size_t(j * kEpiK + k)]));
      acc[size_t(i * kEpiN + j)] = float(s);
    }
  return acc;
}

// The CPU backend's epilogue against an independent reference: the bias added to the
// exact product, relu (NaN stays, the elementwise Relu's rule), one rounding.
TEST(CpuGemmEpilogue, RoundsOnceAfterTheBiasAndTheRelu) {
  std::vector<EpilogueCase> cases;
  const std::vector<uint8_t> bytes = gemmEpiloguePlan(cases);
  LoadedPlan lp = LoadedPlan::fromBytes(bytes, "epilogue.plan");
  CpuExecutor<float> cpu(lp, 1);
  cpu.run("train_step");
  for (const EpilogueCase &e : cases) {
    const std::vector<float> acc = epilogueProduct(e), &c = cpu.tensor(e.c);
    int negatives = 0, nans = 0;
    for (int64_t i = 0; i < kEpiM; ++i)
      for (int64_t j = 0; j < kEpiN; ++j) {
        const size_t at = size_t(i * kEpiN + j);
        const float bias = roundTo(e.dt, e.biasv[size_t(j)]), v = acc[at] + bias;
        negatives += v < 0;
        nans += v != v;
        const float want = roundTo(e.dt, !e.relu || v > 0 || v != v ? v : 0.0f);
        EXPECT_TRUE(sameBits(c[at], want))
            << e.name << " [" << i << ", " << j << "]: " << c[at] << ", expected " << want;
      }
    EXPECT_GT(negatives, 0) << e.name << ": the relu is not exercised";
    EXPECT_EQ(nans, e.name == "f32_nan" ? int(kEpiN) : 0) << e.name;
    if (e.dt != plan::DType::F32) { // the planted element tells one rounding from two
      const float once = roundTo(e.dt, acc[0] + 1.0f);
      const float twice = roundTo(e.dt, roundTo(e.dt, acc[0]) + 1.0f);
      EXPECT_NE(once, twice) << e.name;
      EXPECT_EQ(c[0], once) << e.name;
    }
  }
}

// The fallback's mt_bias_act (no cuBLASLt algorithm, or MANTISSA_CUDA_EPILOGUE=0) on
// the CPU: from the fp32 product, the same bits as the CPU backend.
TEST(CudaHostEmulation, BiasActKernelMatchesTheCpu) {
  std::vector<std::string> names;
  const cuda::FixedKernelTable<int> table = fixedHostTable(names);
  test::HostKernels hk(std::string(cuda::cudaPrelude()) + cuda::fixedKernelSource(), names);
  std::vector<EpilogueCase> cases;
  const std::vector<uint8_t> bytes = gemmEpiloguePlan(cases);
  LoadedPlan lp = LoadedPlan::fromBytes(bytes, "epilogue.plan");
  CpuExecutor<float> cpu(lp, 1);
  HostTensors ht(lp, cpu, 0);
  cpu.run("train_step");
  HostLauncher launch{hk};
  for (const EpilogueCase &e : cases) {
    std::vector<float> acc = epilogueProduct(e);
    // One block of 32 threads over 30 elements and more: the grid-stride loop turns.
    launch(table.mt_bias_act, cuda::Grid{1, 1, 1}, 32, acc.data(), ht.ptr(e.c), int(e.dt),
           ht.ptr(e.bias), int(e.dt), (long long)kEpiM, (long long)kEpiN, e.relu ? 1 : 0);
    const std::vector<float> h = ht.get(e.c), &c = cpu.tensor(e.c);
    for (size_t i = 0; i < h.size(); ++i)
      EXPECT_TRUE(sameBits(h[i], c[i]))
          << e.name << " element " << i << ": kernel " << h[i] << ", CPU " << c[i];
  }
}

// On a GPU: cuBLASLt's BIAS / RELU_BIAS epilogues, and the fallback, against the CPU.
// The products are exact in any order (gemmEpiloguePlan), so the outputs must agree
// bit for bit; f32_nan checks that a NaN stays NaN through cuBLASLt's relu, as through
// ours and PyTorch's.
TEST(CudaExecutor, GemmEpilogueMatchesCpu) {
  std::vector<EpilogueCase> cases;
  testing::internal::CaptureStderr();
  compareWithCpu(gemmEpiloguePlan(cases), "epilogue.plan", 1, 0.0, 0.0);
  const std::string notices = testing::internal::GetCapturedStderr();
  if (IsSkipped())
    return;
  EXPECT_EQ(notices.find("not through cuBLASLt"), std::string::npos)
      << "the epilogues fell back: " << notices;
  setenv("MANTISSA_CUDA_EPILOGUE", "0", 1);
  compareWithCpu(gemmEpiloguePlan(cases), "epilogue-fallback.plan", 1, 0.0, 0.0);
  unsetenv("MANTISSA_CUDA_EPILOGUE");
}

struct ConvShape {
  int64_t N = 3, C = 3, H = 9, W = 7, K = 4, R = 3, S = 2, sh = 2, sw = 1, ph = 1, pw = 0;
};

std::vector<uint8_t> convPlan(plan::DType dt, ConvShape shape = {}) {
  PlanMaker pm;
  auto &b = pm.builder();
  const auto [N, C, H, W, K, R, S, sh, sw, ph, pw] = shape;
  const int64_t P = (H + 2 * ph - R) / sh + 1, Q = (W + 2 * pw - S) / sw + 1;
  int x = pm.tensor("x", dt, {N, C, H, W});
  int w = pm.tensor("w", dt, {K, C, R, S});
  int y = pm.tensor("y", dt, {N, K, P, Q}, plan::Role::Temp);
  int yacc = pm.tensor("y_acc", dt, {N, K, P, Q});
  int dy = pm.tensor("dy", dt, {N, K, P, Q});
  int dx = pm.tensor("dx", dt, {N, C, H, W}, plan::Role::Temp);
  int dxacc = pm.tensor("dx_acc", dt, {N, C, H, W});
  int dw = pm.tensor("dw", dt, {K, C, R, S}, plan::Role::Temp);
  int dwacc = pm.tensor("dw_acc", plan::DType::F32, {K, C, R, S});
  auto conv = [&](plan::ConvKind kind, int in0, int in1, int out, bool acc) {
    return plan::CreateConv2d(b, kind, in0, in1, out, N, C, H, W, K, R, S, sh, sw, ph, pw, acc).Union();
  };
  pm.step("fwd", plan::Kernel::Conv2d, conv(plan::ConvKind::Forward, x, w, y, false));
  pm.step("fwd_acc", plan::Kernel::Conv2d, conv(plan::ConvKind::Forward, x, w, yacc, true));
  pm.step("bwd_in", plan::Kernel::Conv2d, conv(plan::ConvKind::BackwardInput, dy, w, dx, false));
  pm.step("bwd_in_acc", plan::Kernel::Conv2d, conv(plan::ConvKind::BackwardInput, dy, w, dxacc, true));
  pm.step("bwd_w", plan::Kernel::Conv2d, conv(plan::ConvKind::BackwardWeight, x, dy, dw, false));
  pm.step("bwd_w_acc", plan::Kernel::Conv2d, conv(plan::ConvKind::BackwardWeight, x, dy, dwacc, true));
  return pm.finish();
}

// Which convolutions take the implicit-GEMM kernels, and with which instantiation
// (no GPU needed): fp16/bf16 operands of one type, the column tile from the GEMM's
// column count (K, or C for the input gradient), kernel size and stride as compiled.
TEST(CudaCodegen, ConvolutionKernelChoice) {
  auto config = [](const std::vector<uint8_t> &bytes, const char *step) {
    const plan::Plan &p = *plan::GetPlan(bytes.data());
    return cuda::convGemmConfigFor(p, *findStep(p, step)->kernel_as_Conv2d());
  };
  EXPECT_FALSE(config(convPlan(plan::DType::F32), "fwd")) << "fp32 stays on im2col + cuBLAS";
  const auto f16 = convPlan(plan::DType::F16, {2, 40, 13, 11, 70, 3, 3, 1, 1, 1, 1});
  auto fwd = config(f16, "fwd");
  ASSERT_TRUE(fwd);
  EXPECT_EQ(fwd->kernelName(), "mt_conv_fwd_f16_n64_r3s3_u1x1"); // K = 70 > 32
  auto bwdIn = config(f16, "bwd_in");
  ASSERT_TRUE(bwdIn);
  EXPECT_EQ(bwdIn->kernelName(), "mt_conv_bwdin_f16_n64_r3s3_u1x1"); // C = 40 > 32
  // The weight gradient accumulated into fp32 from fp16 operands still qualifies.
  auto bwdW = config(f16, "bwd_w_acc");
  ASSERT_TRUE(bwdW);
  EXPECT_EQ(bwdW->mode, cuda::ConvGemmMode::BackwardWeight);
  const auto up = convPlan(plan::DType::BF16, {3, 48, 16, 10, 20, 2, 2, 2, 2, 0, 0});
  EXPECT_EQ(config(up, "bwd_in")->kernelName(), "mt_conv_bwdin_bf16_n64_r2s2_u2x2"); // C = 48
  EXPECT_EQ(config(up, "fwd")->kernelName(), "mt_conv_fwd_bf16_n32_r2s2_u2x2");      // K = 20
  // Past the index tables' range (H + 2 pad >= 16384) it falls back.
  EXPECT_FALSE(config(convPlan(plan::DType::F16, {1, 1, 16384, 3, 1, 3, 3, 1, 1, 1, 1}), "fwd"));
  // The NHWC kernels, in their 8- and 4-warp forms: not for C = 40 (the forward's
  // reduction channels are not a multiple of 32) nor K = 70 (the weight gradient's
  // output channels are not a multiple of 8); for C = 64, K = 32.
  const plan::Plan &p = *plan::GetPlan(f16.data());
  EXPECT_FALSE(cuda::convNhwcConfigFor(p, *findStep(p, "fwd")->kernel_as_Conv2d()));
  EXPECT_FALSE(cuda::convNhwcWideConfigFor(p, *findStep(p, "bwd_w")->kernel_as_Conv2d()));
  const auto nhwcPlan = convPlan(plan::DType::F16, {2, 64, 13, 11, 32, 3, 3, 1, 1, 1, 1});
  const plan::Plan &q = *plan::GetPlan(nhwcPlan.data());
  const plan::Conv2d &w = *findStep(q, "bwd_w")->kernel_as_Conv2d();
  ASSERT_TRUE(cuda::convNhwcConfigFor(q, w) && cuda::convNhwcWideConfigFor(q, w));
  EXPECT_EQ(cuda::convNhwcConfigFor(q, w)->kernelName(), "mt_conv_nhwcw_f16_n32_r3s3_u1x1");
  EXPECT_EQ(cuda::convNhwcConfigFor(q, w)->threads(), 256);
  EXPECT_EQ(cuda::convNhwcWideConfigFor(q, w)->kernelName(), "mt_conv_nhwcw_f16_n32_r3s3_u1x1_w4");
  EXPECT_EQ(cuda::convNhwcWideConfigFor(q, w)->threads(), 128);
  EXPECT_EQ(cuda::convGemmConfigsFor(q, w).size(), 3u); // NCHW, NHWC, NHWC 4-warp
}

TEST(CudaExecutor, ConvMatchesCpu) {
  compareWithCpu(convPlan(plan::DType::F32), "conv32.plan", 1, 1e-5, 1e-5);
  compareWithCpu(convPlan(plan::DType::F16), "conv16.plan", 1, 1e-5, 4e-3);
}

// Shapes past one tile of the implicit-GEMM kernels (128 pixels x 32/64 channels x 32
// of the reduction), with ragged edges, strides, a transposed convolution's 2x2 stride
// 2, and a backward weight split over many blocks; the tiny shape above checks the
// edges of a single tile (MANTISSA_CUDA_CONV=gemm: the NCHW kernel, not the default
// NHWC one). MANTISSA_CUDA_CONV=im2col runs the same through cuBLAS.
TEST(CudaExecutor, ConvImplicitGemmMatchesCpu) {
  setenv("MANTISSA_CUDA_CONV", "gemm", 1);
  compareWithCpu(convPlan(plan::DType::F16, {2, 40, 13, 11, 70, 3, 3, 1, 1, 1, 1}),
                 "conv_igemm_f16.plan", 1, 1e-5, 4e-3);
  compareWithCpu(convPlan(plan::DType::BF16, {3, 48, 16, 10, 20, 2, 2, 2, 2, 0, 0}),
                 "conv_igemm_bf16_s2.plan", 1, 1e-5, 1.6e-2);
  compareWithCpu(convPlan(plan::DType::F16, {4, 8, 64, 48, 16, 3, 3, 1, 1, 1, 1}),
                 "conv_igemm_f16_split.plan", 1, 1e-5, 4e-3);
  compareWithCpu(convPlan(plan::DType::BF16, {2, 5, 12, 9, 33, 1, 1, 1, 1, 0, 0}),
                 "conv_igemm_bf16_1x1.plan", 1, 1e-5, 1.6e-2);
  unsetenv("MANTISSA_CUDA_CONV");
}

struct alignas(16) mt_u4_host {
  uint32_t v[4];
};

/// The implicit-GEMM convolutions of a plan's Conv2d steps (all of them must take
/// one) run on the CPU (HostKernels.h emulates mma.sync and ldmatrix) through the
/// executor's launch sequence, against the CPU executor. `nhwcWarps`: 0, the NCHW
/// kernels; 8 or 4, the NHWC kernels of that form where they apply. `results`, when
/// given, receives every tensor after the run.
void expectHostConvMatchesCpu(const std::vector<uint8_t> &bytes, const std::string &name,
                              double tolLow, int nhwcWarps = 0, size_t nhwcBudget = SIZE_MAX,
                              std::array<int, 3> wantChunks = {1, 1, 1},
                              std::vector<std::vector<float>> *results = nullptr) {
  const bool nhwc = nhwcWarps != 0;
  LoadedPlan lp = LoadedPlan::fromBytes(bytes, name);
  std::vector<std::string> names;
  const cuda::FixedKernelTable<int> table = fixedHostTable(names);
  std::map<std::string, cuda::ConvGemmConfig> configs;
  std::vector<std::pair<const plan::Conv2d *, cuda::ConvGemmConfig>> steps;
  for (const plan::Function *fn : *lp->functions())
    if (fn->name()->str() == "train_step")
      for (const plan::Step *step : *fn->steps()) {
        ASSERT_EQ(step->kernel_type(), plan::Kernel::Conv2d);
        auto cfg = cuda::convGemmConfigFor(lp.plan(), *step->kernel_as_Conv2d());
        ASSERT_TRUE(cfg.has_value()) << "a convolution without an implicit-GEMM kernel";
        if (nhwc)
          if (auto n = nhwcWarps == 4
                           ? cuda::convNhwcWideConfigFor(lp.plan(), *step->kernel_as_Conv2d())
                           : cuda::convNhwcConfigFor(lp.plan(), *step->kernel_as_Conv2d()))
            cfg = n;
        configs.emplace(cfg->kernelName(), *cfg);
        steps.emplace_back(step->kernel_as_Conv2d(), *cfg);
      }
  std::vector<cuda::ConvGemmConfig> list;
  for (const auto &[n, c] : configs) {
    list.push_back(c);
    names.push_back(n);
  }
  test::HostKernels hk(std::string(cuda::cudaPrelude()) + cuda::fixedKernelSource() +
                           cuda::convGemmSource(list),
                       names);
  CpuExecutor<float> cpu(lp, 1);
  HostTensors ht(lp, cpu, 0);
  cpu.run("train_step");
  auto ref = [&](int id) {
    return cuda::TensorRef{ht.ptr(id), id < 0 ? cuda::kF32 : int(ht.dtype(id))};
  };
  HostLauncher launch{hk};
  auto blocks = [](long long n) { return unsigned(std::clamp((n + 255) / 256, 1LL, 2LL)); };
  int nhwcSteps = 0;
  for (const auto &[k, cfg] : steps) {
    const cuda::ConvGemmArgs a = cuda::convGemmArgs(*k, cfg, ref);
    const std::string kernelName = cfg.kernelName();
    if (cfg.nhwc) {
      const cuda::ConvNhwcScratch need =
          cuda::convNhwcScratch(a, cfg.bn, 2, size_t(1) << 20, nhwcBudget);
      EXPECT_EQ(need.chunks, wantChunks[size_t(a.mode)]) << name << ": " << kernelName;
      // 16-byte aligned, as the executor's scratch is (256).
      std::vector<mt_u4_host> in0(need.in0Bytes / 16 + 1), in1(need.in1Bytes / 16 + 1),
          ws(need.split.workspaceBytes / 16 + 1);
      cuda::launchConvNhwc(table, cuda::ConvGemmKernel<int>{0, kernelName.c_str()}, launch, blocks,
                           a, cfg, need, in0.data(), in1.data(), ws.data());
      ++nhwcSteps;
      continue;
    }
    const cuda::ConvGemmSplit split = cuda::convGemmSplit(a, cfg.bn, 2, size_t(1) << 20);
    std::vector<float> ws(split.workspaceBytes / 4 + 1);
    cuda::launchConvGemm(table, cuda::ConvGemmKernel<int>{0, kernelName.c_str()}, launch, blocks, a,
                         split, ws.data());
  }
  expectTensorsClose(lp, cpu, [&](int id) { return ht.get(id); }, 1e-5, tolLow, name);
  if (nhwc)
    EXPECT_GT(nhwcSteps, 0) << name << ": no convolution took the NHWC kernel";
  if (results)
    for (flatbuffers::uoffset_t id = 0; id < lp->tensors()->size(); ++id)
      results->push_back(ht.get(int(id)));
}

TEST(CudaHostEmulation, ImplicitGemmConvolutionsMatchTheCpu) {
  // Past one tile with ragged edges (a split weight gradient), and 2 x 2 stride 2.
  expectHostConvMatchesCpu(convPlan(plan::DType::F16, {2, 40, 13, 11, 70, 3, 3, 1, 1, 1, 1}),
                           "conv_igemm_f16.plan", 4e-3);
  expectHostConvMatchesCpu(convPlan(plan::DType::BF16, {3, 48, 16, 10, 20, 2, 2, 2, 2, 0, 0}),
                           "conv_igemm_bf16_s2.plan", 1.6e-2);
}

TEST(CudaHostEmulation, NhwcConvolutionsMatchTheCpu) {
  // Forward (C = 64: 18 tiles through the three stages), the input gradient (K = 32,
  // stride 1) and the weight gradient (rows (r, s, c) across (r, s) boundaries, a
  // ragged last pixel tile, split in two), ragged pixel tiles.
  expectHostConvMatchesCpu(convPlan(plan::DType::F16, {2, 64, 13, 11, 32, 3, 3, 1, 1, 1, 1}),
                           "conv_nhwc_f16.plan", 4e-3, 8);
  // Stride 2 forward and weight gradient (its input gradient is not NHWC), two column
  // tiles (96 = 64 + 32).
  expectHostConvMatchesCpu(convPlan(plan::DType::BF16, {1, 32, 9, 20, 96, 3, 3, 2, 2, 1, 1}),
                           "conv_nhwc_bf16_s2.plan", 1.6e-2, 8);
}

// The 4-warp form (ldmatrix fragments, 64-row warp tiles) runs the same mma in the same
// order per output as the 8-warp form: the same bits, on the shapes above, on one with
// both column tiles of 64 and a 1 x 1 kernel (the (r, s) walk of the forward loader
// without a spatial step), and on samples smaller than a tile (the weight gradient's
// pixel walk carrying into the sample), besides matching the CPU.
TEST(CudaHostEmulation, NhwcFourWarpKernelsMatchTheEightWarpOnesBitForBit) {
  struct Case {
    std::vector<uint8_t> plan;
    const char *name;
    double tol;
  };
  const Case cases[] = {
      {convPlan(plan::DType::F16, {2, 64, 13, 11, 32, 3, 3, 1, 1, 1, 1}), "conv_nhwc_f16.plan",
       4e-3},
      {convPlan(plan::DType::BF16, {1, 32, 9, 20, 96, 3, 3, 2, 2, 1, 1}), "conv_nhwc_bf16_s2.plan",
       1.6e-2},
      {convPlan(plan::DType::F16, {2, 96, 7, 10, 128, 1, 1, 1, 1, 0, 0}), "conv_nhwc_f16_1x1.plan",
       4e-3},
      // 3 x 5 pixels a sample: a tile of 32 pixels spans more than two samples (and the
      // weight gradient's split takes 7 tiles each, so the walk advances).
      {convPlan(plan::DType::F16, {40, 32, 3, 5, 32, 3, 3, 1, 1, 1, 1}), "conv_nhwc_f16_tiny.plan",
       4e-3},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<std::vector<float>> eight, four;
    expectHostConvMatchesCpu(c.plan, c.name, c.tol, 8, SIZE_MAX, {1, 1, 1}, &eight);
    expectHostConvMatchesCpu(c.plan, c.name, c.tol, 4, SIZE_MAX, {1, 1, 1}, &four);
    ASSERT_EQ(eight.size(), four.size());
    const plan::Plan &p = *plan::GetPlan(c.plan.data());
    for (size_t id = 0; id < eight.size(); ++id) {
      ASSERT_EQ(eight[id].size(), four[id].size());
      EXPECT_EQ(0, std::memcmp(eight[id].data(), four[id].data(), eight[id].size() * sizeof(float)))
          << "tensor " << p.tensors()->Get(uint32_t(id))->name()->str();
    }
  }
}

TEST(CudaHostEmulation, NhwcConvolutionsInChunksOfSamplesMatchTheCpu) {
  // 3 samples, x [64][13][11] (18304 bytes each in fp16) and dy [32][13][11] (9152).
  // Chunks per mode (forward: x; input gradient: dy; weight gradient: x + dy) for a
  // budget: 10000 bytes, one sample each; 40000, 2 + 1 samples of x, the whole batch of
  // dy, 1 + 1 + 1 of x + dy; 60000, the whole batch of x, 2 + 1 of x + dy. Outputs are
  // written per chunk (also where they accumulate); the weight gradient's partials of
  // all chunks are summed once.
  const auto plan = convPlan(plan::DType::F16, {3, 64, 13, 11, 32, 3, 3, 1, 1, 1, 1});
  for (auto [budget, chunks] : {std::pair<size_t, std::array<int, 3>>{10000, {3, 3, 3}},
                                {40000, {2, 1, 3}},
                                {60000, {1, 1, 2}}}) {
    SCOPED_TRACE(budget);
    expectHostConvMatchesCpu(plan, "conv_nhwc_chunks.plan", 4e-3, 8, budget, chunks);
    if (budget == 10000) // the 4-warp kernels through the same chunked launches
      expectHostConvMatchesCpu(plan, "conv_nhwc_chunks.plan", 4e-3, 4, budget, chunks);
  }
}

TEST(CudaExecutor, ConvNhwcMatchesCpu) {
  setenv("MANTISSA_CUDA_CONV", "nhwc", 1);
  compareWithCpu(convPlan(plan::DType::F16, {2, 64, 13, 11, 32, 3, 3, 1, 1, 1, 1}),
                 "conv_nhwc_f16.plan", 1, 1e-5, 4e-3);
  compareWithCpu(convPlan(plan::DType::BF16, {1, 32, 9, 20, 96, 3, 3, 2, 2, 1, 1}),
                 "conv_nhwc_bf16_s2.plan", 1, 1e-5, 1.6e-2);
  compareWithCpu(convPlan(plan::DType::F16, {4, 32, 64, 48, 32, 3, 3, 1, 1, 1, 1}),
                 "conv_nhwc_f16_large.plan", 1, 1e-5, 4e-3);
  // Copies of one sample at a time (x: 196608 bytes a sample): the chunks of samples.
  setenv("MANTISSA_CUDA_NHWC_MB", "0.2", 1);
  compareWithCpu(convPlan(plan::DType::F16, {4, 32, 64, 48, 32, 3, 3, 1, 1, 1, 1}),
                 "conv_nhwc_f16_chunks.plan", 1, 1e-5, 4e-3);
  unsetenv("MANTISSA_CUDA_NHWC_MB");
  // The 4-warp ldmatrix form on the same shapes, and 64-channel tiles of a 1 x 1 kernel.
  setenv("MANTISSA_CUDA_CONV", "nhwc-w4", 1);
  compareWithCpu(convPlan(plan::DType::F16, {2, 64, 13, 11, 32, 3, 3, 1, 1, 1, 1}),
                 "conv_nhwc_w4_f16.plan", 1, 1e-5, 4e-3);
  compareWithCpu(convPlan(plan::DType::BF16, {1, 32, 9, 20, 96, 3, 3, 2, 2, 1, 1}),
                 "conv_nhwc_w4_bf16_s2.plan", 1, 1e-5, 1.6e-2);
  compareWithCpu(convPlan(plan::DType::F16, {4, 32, 64, 48, 32, 3, 3, 1, 1, 1, 1}),
                 "conv_nhwc_w4_f16_large.plan", 1, 1e-5, 4e-3);
  compareWithCpu(convPlan(plan::DType::F16, {2, 96, 7, 10, 128, 1, 1, 1, 1, 0, 0}),
                 "conv_nhwc_w4_f16_1x1.plan", 1, 1e-5, 4e-3);
  unsetenv("MANTISSA_CUDA_CONV");
}

// MANTISSA_CUDA_CONV=auto: each convolution step (forward, input and weight gradient)
// timed each way it may run (implicit GEMM, NHWC, im2col) before the first step; the
// chosen ones must compute what the CPU does. A value it does not know is one error,
// with or without a GPU.
TEST(CudaExecutor, ConvAutoMatchesCpu) {
  setenv("MANTISSA_CUDA_CONV", "fastest", 1);
  try {
    LoadedPlan lp = LoadedPlan::fromBytes(convPlan(plan::DType::F16), "conv_bad_env.plan");
    auto exec = makeCudaExecutor(lp);
    ADD_FAILURE() << "accepted MANTISSA_CUDA_CONV=fastest";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("MANTISSA_CUDA_CONV=fastest: expected nhwc (the "
                                         "default), nhwc-w4, gemm, im2col or auto"),
              std::string::npos)
        << e.what();
  }
  setenv("MANTISSA_CUDA_CONV", "auto", 1);
  compareWithCpu(convPlan(plan::DType::F16, {2, 64, 13, 11, 32, 3, 3, 1, 1, 1, 1}),
                 "conv_auto_f16.plan", 1, 1e-5, 4e-3);
  compareWithCpu(convPlan(plan::DType::F32), "conv_auto_f32.plan", 1, 1e-5, 1e-5);
  unsetenv("MANTISSA_CUDA_CONV");
}

TEST(CudaExecutor, ConvInSmallGroupsMatchesCpu) {
  // A workspace of a few bytes forces one sample per group.
  setenv("MANTISSA_CUDA_CONV_WORKSPACE_MB", "0.000001", 1);
  compareWithCpu(convPlan(plan::DType::BF16), "conv_bf16.plan", 1, 1e-5, 1.6e-2);
  unsetenv("MANTISSA_CUDA_CONV_WORKSPACE_MB");
}

std::vector<uint8_t> poolNormPlan() {
  PlanMaker pm;
  auto &b = pm.builder();
  const int64_t N = 2, C = 3, H = 9, W = 8, KK = 3, S = 2;
  const int64_t OH = (H - KK) / S + 1, OW = (W - KK) / S + 1;
  int x = pm.tensor("x", plan::DType::F16, {N, C, H, W});
  int y = pm.tensor("pool_y", plan::DType::F16, {N, C, OH, OW}, plan::Role::Temp);
  int ind = pm.tensor("pool_idx", plan::DType::I32, {N, C, OH, OW}, plan::Role::Temp);
  int dy = pm.tensor("pool_dy", plan::DType::F32, {N, C, OH, OW});
  int dx = pm.tensor("pool_dx", plan::DType::F32, {N, C, H, W}, plan::Role::Temp);
  pm.step("pool", plan::Kernel::MaxPool2d, plan::CreateMaxPool2d(b, x, y, ind, N, C, H, W, KK, S).Union());
  pm.step("pool_bwd", plan::Kernel::MaxPool2dBackward,
          plan::CreateMaxPool2dBackward(b, dy, x, y, dx, N, C, H, W, KK, S).Union());
  const int64_t hw = H * W;
  int gamma = pm.tensor("gamma", plan::DType::F32, {C}, plan::Role::Param, 0.5f, 1.5f);
  int beta = pm.tensor("beta", plan::DType::F32, {C});
  int bny = pm.tensor("bn_y", plan::DType::F16, {N, C, H, W}, plan::Role::Temp);
  int sm = pm.tensor("saved_mean", plan::DType::F32, {C}, plan::Role::Temp);
  int si = pm.tensor("saved_invstd", plan::DType::F32, {C}, plan::Role::Temp);
  int rm = pm.tensor("running_mean", plan::DType::F32, {C}, plan::Role::Buffer, 0.0f, 0.1f);
  int rv = pm.tensor("running_var", plan::DType::F32, {C}, plan::Role::Buffer, 0.9f, 1.1f);
  pm.step("bn", plan::Kernel::BatchNorm,
          plan::CreateBatchNorm(b, x, gamma, beta, bny, sm, si, rm, rv, N, C, hw, 1e-5f, 0.1f, true).Union());
  int bnyEval = pm.tensor("bn_y_eval", plan::DType::F32, {N, C, H, W}, plan::Role::Temp);
  pm.step("bn_eval", plan::Kernel::BatchNorm,
          plan::CreateBatchNorm(b, x, gamma, -1, bnyEval, -1, -1, rm, rv, N, C, hw, 1e-5f, 0.1f, false).Union());
  int bdy = pm.tensor("bn_dy", plan::DType::F16, {N, C, H, W});
  int bdx = pm.tensor("bn_dx", plan::DType::F16, {N, C, H, W}, plan::Role::Temp);
  int dg = pm.tensor("dgamma", plan::DType::F32, {C}, plan::Role::Temp);
  int db = pm.tensor("dbeta", plan::DType::F32, {C}, plan::Role::Temp);
  pm.step("bn_bwd", plan::Kernel::BatchNormBackward,
          plan::CreateBatchNormBackward(b, bdy, x, gamma, sm, si, bdx, dg, db, N, C, hw).Union());
  // Batch norm over features (hw = 1), more values per channel than one chunk.
  int f = pm.tensor("features", plan::DType::F32, {9000, 2});
  int fy = pm.tensor("features_y", plan::DType::F32, {9000, 2}, plan::Role::Temp);
  int frm = pm.tensor("features_rm", plan::DType::F32, {2}, plan::Role::Buffer);
  int frv = pm.tensor("features_rv", plan::DType::F32, {2}, plan::Role::Buffer, 0.5f, 1.0f);
  pm.step("bn1d", plan::Kernel::BatchNorm,
          plan::CreateBatchNorm(b, f, -1, -1, fy, -1, -1, frm, frv, 9000, 2, 1, 1e-5f, 0.1f, true).Union());
  return pm.finish();
}

TEST(CudaExecutor, VectorBatchNormAndReduceMatchCpu) {
  // normReducePlan: the 16-byte kernels past one chunk, and the scalar ones.
  compareWithCpu(normReducePlan(3, 2, 64, 96), "normreduce.plan", 2, 2e-6, 2e-3);
  compareWithCpu(normReducePlan(2, 3, 5, 7), "normreduce-odd.plan", 2, 2e-6, 2e-3);
}

TEST(CudaExecutor, PoolingAndBatchNormMatchCpu) {
  compareWithCpu(poolNormPlan(), "poolnorm.plan", 3, 2e-6, 2e-3);
}

std::vector<uint8_t> lossPlan(float badLabel = -1) {
  PlanMaker pm;
  auto &b = pm.builder();
  const int64_t n = 37, c = 11;
  int logits = pm.tensor("logits", plan::DType::F16, {n, c}, plan::Role::Param, -4.0f, 4.0f);
  int labels = pm.labels("labels", n, c);
  int loss = pm.tensor("loss", plan::DType::F32, {}, plan::Role::Temp);
  int dloss = pm.tensor("dloss", plan::DType::F32, {}, plan::Role::Param, 0.5f, 2.0f);
  int dlogits = pm.tensor("dlogits", plan::DType::F16, {n, c}, plan::Role::Temp);
  pm.step("ce", plan::Kernel::SoftmaxCrossEntropy,
          plan::CreateSoftmaxCrossEntropy(b, logits, labels, loss, n, c).Union());
  pm.step("ce_bwd", plan::Kernel::SoftmaxCrossEntropyBackward,
          plan::CreateSoftmaxCrossEntropyBackward(b, logits, labels, dloss, dlogits, n, c).Union());
  const int64_t count = 10007;
  int a = pm.tensor("a", plan::DType::F32, {count});
  int t = pm.tensor("target", plan::DType::BF16, {count});
  int mse = pm.tensor("mse", plan::DType::F32, {}, plan::Role::Temp);
  int da = pm.tensor("da", plan::DType::F32, {count}, plan::Role::Temp);
  pm.step("mse", plan::Kernel::MseLoss, plan::CreateMseLoss(b, a, t, mse, count).Union());
  pm.step("mse_bwd", plan::Kernel::MseLossBackward, plan::CreateMseLossBackward(b, a, t, dloss, da, count).Union());
  if (badLabel >= 0) {
    int small = pm.tensor("small_logits", plan::DType::F32, {2, c});
    int bad = pm.tensor("bad_labels", plan::DType::F32, {2}, plan::Role::Param, 0, 0, {1.0f, badLabel});
    int l2 = pm.tensor("loss2", plan::DType::F32, {}, plan::Role::Temp);
    pm.step("bad_ce", plan::Kernel::SoftmaxCrossEntropy,
            plan::CreateSoftmaxCrossEntropy(b, small, bad, l2, 2, c).Union());
  }
  return pm.finish();
}

TEST(CudaExecutor, LossesMatchCpu) { compareWithCpu(lossPlan(), "loss.plan", 2, 1e-6, 2e-3); }

TEST(CudaExecutor, BadLabelIsAnErrorNamingTheStep) {
  LoadedPlan lp = LoadedPlan::fromBytes(lossPlan(11.0f), "bad.plan");
  std::string reason;
  std::unique_ptr<Executor> gpu = cudaExecutorOrSkipReason(lp, reason);
  if (!gpu)
    GTEST_SKIP() << reason;
  gpu->run("train_step");
  std::vector<float> v(size_t(lp.numElements(2)));
  try {
    gpu->read(2, v.data(), v.size());
    FAIL() << "no error";
  } catch (const Error &e) {
    std::string m = e.what();
    EXPECT_NE(m.find("step 4 'bad_ce' (SoftmaxCrossEntropy)"), std::string::npos) << m;
    EXPECT_NE(m.find("label 11.000000 in row 1 is not a class index in [0, 11)"), std::string::npos) << m;
  }
}

std::vector<uint8_t> movementPlan() {
  PlanMaker pm;
  auto &b = pm.builder();
  int x = pm.tensor("x", plan::DType::F32, {4, 5, 6});
  auto reduce = [&](const std::string &name, int in, std::vector<int64_t> inShape,
                    std::vector<int64_t> outShape, bool mean, plan::DType dt) {
    int out = pm.tensor(name, dt, outShape, plan::Role::Temp);
    pm.step(name, plan::Kernel::Reduce,
            plan::CreateReduceDirect(b, in, out, &inShape, &outShape, mean).Union());
  };
  reduce("sum_0_2", x, {4, 5, 6}, {1, 5, 1}, false, plan::DType::F32);
  reduce("mean_1", x, {4, 5, 6}, {4, 1, 6}, true, plan::DType::F16);
  reduce("sum_all", x, {4, 5, 6}, {1, 1, 1}, false, plan::DType::F32);
  reduce("none", x, {4, 5, 6}, {4, 5, 6}, false, plan::DType::BF16);
  int big = pm.tensor("big", plan::DType::F16, {3000, 3});
  reduce("big_rows", big, {3000, 3}, {1, 3}, true, plan::DType::F32);
  int x2 = pm.tensor("x2", plan::DType::F16, {4, 3, 6});
  int cat = pm.tensor("concat", plan::DType::F32, {4, 8, 6}, plan::Role::Temp);
  std::vector<int32_t> catIn = {x, x2};
  std::vector<int64_t> rows = {30, 18};
  pm.step("concat", plan::Kernel::Concat, plan::CreateConcatDirect(b, &catIn, cat, 4, &rows).Union());
  int sl = pm.tensor("slice", plan::DType::BF16, {4, 2, 6}, plan::Role::Temp);
  pm.step("slice", plan::Kernel::Slice, plan::CreateSlice(b, cat, sl, 4, 48, 18, 12).Union());
  int tr = pm.tensor("transpose", plan::DType::F16, {6, 4, 5}, plan::Role::Temp);
  std::vector<int64_t> inShape = {4, 5, 6}, perm = {2, 0, 1};
  pm.step("transpose", plan::Kernel::Transpose,
          plan::CreateTransposeDirect(b, x, tr, &inShape, &perm).Union());
  int cp = pm.tensor("copy_f16", plan::DType::F16, {120}, plan::Role::Temp);
  pm.step("copy_cast", plan::Kernel::Copy, plan::CreateCopy(b, x, cp, 120).Union());
  int cp2 = pm.tensor("copy_same", plan::DType::F32, {4, 30}, plan::Role::Temp);
  pm.step("copy_same", plan::Kernel::Copy, plan::CreateCopy(b, x, cp2, 120).Union());
  int inf = pm.tensor("has_inf", plan::DType::F16, {3}, plan::Role::Param, 0, 0, {1.0f, 70000.0f, 2.0f});
  int ok1 = pm.tensor("finite_yes", plan::DType::F32, {}, plan::Role::Temp);
  int ok0 = pm.tensor("finite_no", plan::DType::F32, {}, plan::Role::Temp);
  std::vector<int32_t> fin1 = {x, x2, big}, fin0 = {x, inf};
  pm.step("finite_yes", plan::Kernel::AllFinite, plan::CreateAllFiniteDirect(b, &fin1, ok1).Union());
  pm.step("finite_no", plan::Kernel::AllFinite, plan::CreateAllFiniteDirect(b, &fin0, ok0).Union());
  return pm.finish();
}

TEST(CudaExecutor, DataMovementAndReductionsMatchCpu) {
  compareWithCpu(movementPlan(), "movement.plan", 2, 1e-6, 2e-3);
  std::vector<float> expected;
  compareWithCpu(allFinitePlan(expected), "allfinite.plan", 2, 0, 0);
}

std::vector<uint8_t> kernelZooPlan() {
  // For the compile test: more ops, other dtypes (the fixed kernels compile regardless).
  PlanMaker pm;
  int a = pm.tensor("a", plan::DType::F16, {8});
  int o = pm.tensor("o", plan::DType::BF16, {8}, plan::Role::Temp);
  pm.elementwise("gelu", {8}, {{a, {1}}}, {load(0), op(ScalarOp::Gelu, 0), op(ScalarOp::GeluDeriv, 1),
                                            op(ScalarOp::RoundF16, 2), op(ScalarOp::RoundBF16, 3)},
                 {o}, {4});
  return pm.finish();
}

TEST(CudaExecutor, IoChecksAndDeviceDescription) {
  LoadedPlan lp = LoadedPlan::fromBytes(movementPlan(), "io.plan");
  std::string reason;
  std::unique_ptr<Executor> gpu = cudaExecutorOrSkipReason(lp, reason);
  if (!gpu)
    GTEST_SKIP() << reason;
  EXPECT_EQ(gpu->backendName(), "cuda");
  EXPECT_NE(gpu->deviceDescription().find("SMs"), std::string::npos) << gpu->deviceDescription();
  // deviceBytes() counts at least every tensor outside the temp arena and the 32 MiB
  // cuBLAS workspace (what gpu_bench compares with PyTorch's allocator maximum).
  int64_t outside = 32 << 20;
  for (flatbuffers::uoffset_t id = 0; id < lp->tensors()->size(); ++id) {
    const plan::Tensor *t = lp->tensors()->Get(id);
    if (!(t->role() == plan::Role::Temp && t->offset() >= 0))
      outside += lp.numElements(int(id)) * int64_t(dtypeBytes(t->dtype()));
  }
  EXPECT_GE(gpu->deviceBytes(), outside);
  std::vector<float> v(120);
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = float(i) * 0.1f;
  gpu->write(0, v.data(), v.size());
  std::vector<float> back(120);
  gpu->read(0, back.data(), back.size());
  EXPECT_EQ(v, back);
  EXPECT_THROW(gpu->write(0, v.data(), 7), Error);
  EXPECT_THROW(gpu->read(12345, v.data(), 1), Error);
  EXPECT_THROW(gpu->run("eval_step"), Error);
}


/// A small fp16 AMP MLP train step with inputs x and y fed every step: casts, GEMMs
/// with transposes, a broadcast bias, relu and its mask, cross-entropy, a bias
/// reduction and in-place SGD updates.
std::vector<uint8_t> mlpPlan() {
  PlanMaker pm;
  auto &b = pm.builder();
  const int64_t B = 8, I = 16, Hd = 32, O = 10;
  const plan::DType F32 = plan::DType::F32, F16 = plan::DType::F16;
  int x = pm.tensor("x", F32, {B, I}, plan::Role::Input);
  int y = pm.tensor("y", F32, {B}, plan::Role::Input);
  int w1 = pm.tensor("fc1.weight", F32, {I, Hd}, plan::Role::Param, -0.25f, 0.25f);
  int b1 = pm.tensor("fc1.bias", F32, {Hd}, plan::Role::Param, -0.1f, 0.1f);
  int w2 = pm.tensor("fc2.weight", F32, {Hd, O}, plan::Role::Param, -0.25f, 0.25f);
  int dloss = pm.tensor("dloss", F32, {}, plan::Role::ScalerState, 0, 0, {1.0f});
  auto temp = [&](const char *n, plan::DType t, std::vector<int64_t> s) {
    return pm.tensor(n, t, std::move(s), plan::Role::Temp);
  };
  int x16 = temp("x16", F16, {B, I}), w1h = temp("w1h", F16, {I, Hd}), w2h = temp("w2h", F16, {Hd, O});
  int h = temp("h", F16, {B, Hd}), a = temp("a", F16, {B, Hd}), logits = temp("logits", F32, {B, O});
  int loss = temp("loss", F32, {}), dlogits = temp("dlogits", F32, {B, O});
  int dl16 = temp("dlogits16", F16, {B, O}), dw2 = temp("dw2", F32, {Hd, O});
  int da = temp("da", F16, {B, Hd}), dh = temp("dh", F16, {B, Hd}), db1 = temp("db1", F32, {1, Hd});
  int dw1 = temp("dw1", F32, {I, Hd});
  auto cast = [&](const char *n, int in, int out, std::vector<int64_t> shape) {
    pm.elementwise(n, shape, {{in, contiguousStrides(shape)}}, {load(0)}, {out}, {0});
  };
  cast("cast_x", x, x16, {B, I});
  cast("cast_w1", w1, w1h, {I, Hd});
  cast("cast_w2", w2, w2h, {Hd, O});
  pm.step("fc1", plan::Kernel::Gemm, plan::CreateGemm(b, x16, w1h, h, false, false, B, Hd, I).Union());
  pm.elementwise("fc1.bias_relu", {B, Hd}, {{h, {Hd, 1}}, {b1, {0, 1}}},
                 {load(0), load(1), op(ScalarOp::Add, 0, 1), op(ScalarOp::Relu, 2)}, {a}, {3});
  pm.step("fc2", plan::Kernel::Gemm, plan::CreateGemm(b, a, w2h, logits, false, false, B, O, Hd).Union());
  pm.step("loss", plan::Kernel::SoftmaxCrossEntropy, plan::CreateSoftmaxCrossEntropy(b, logits, y, loss, B, O).Union());
  pm.step("loss_bwd", plan::Kernel::SoftmaxCrossEntropyBackward,
          plan::CreateSoftmaxCrossEntropyBackward(b, logits, y, dloss, dlogits, B, O).Union());
  cast("cast_dlogits", dlogits, dl16, {B, O});
  pm.step("fc2.dw", plan::Kernel::Gemm, plan::CreateGemm(b, a, dl16, dw2, true, false, Hd, O, B).Union());
  pm.step("fc2.dx", plan::Kernel::Gemm, plan::CreateGemm(b, dl16, w2h, da, false, true, B, Hd, O).Union());
  pm.elementwise("relu_bwd", {B, Hd}, {{a, {Hd, 1}}, {da, {Hd, 1}}},
                 {load(0), load(1), konst(0.0f), op(ScalarOp::CmpGt, 0, 2), op(ScalarOp::Select, 3, 1, 2)},
                 {dh}, {4});
  std::vector<int64_t> inShape = {B, Hd}, outShape = {1, Hd};
  pm.step("fc1.db", plan::Kernel::Reduce, plan::CreateReduceDirect(b, dh, db1, &inShape, &outShape, false).Union());
  pm.step("fc1.dw", plan::Kernel::Gemm, plan::CreateGemm(b, x16, dh, dw1, true, false, I, Hd, B).Union());
  auto sgd = [&](const char *n, int p, int g, std::vector<int64_t> shape) {
    auto s = contiguousStrides(shape);
    pm.elementwise(n, shape, {{p, s}, {g, s}},
                   {load(0), load(1), konst(0.1f), op(ScalarOp::Mul, 1, 2), op(ScalarOp::Sub, 0, 3)},
                   {p}, {4});
  };
  sgd("sgd.w1", w1, dw1, {I, Hd});
  sgd("sgd.b1", b1, db1, {Hd});
  sgd("sgd.w2", w2, dw2, {Hd, O});
  return pm.finish({loss});
}

TEST(CudaExecutor, TrainStepWithFreshInputsMatchesCpu) {
  std::vector<uint8_t> bytes = mlpPlan();
  savePlan(bytes, "mlp.plan");
  LoadedPlan lp = LoadedPlan::fromBytes(bytes, "mlp.plan");
  CpuExecutor<float> cpu(lp, 2);
  std::string reason;
  std::unique_ptr<Executor> gpu = cudaExecutorOrSkipReason(lp, reason);
  const int x = cpu.findTensor("x"), y = cpu.findTensor("y"), loss = cpu.findTensor("loss");
  std::vector<float> xv(size_t(lp.numElements(x))), yv(size_t(lp.numElements(y)));
  uint64_t state = 7;
  auto uniform = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return double(state >> 11) / double(1ull << 53);
  };
  std::vector<float> cpuLoss, gpuLoss;
  for (int step = 0; step < 6; ++step) {
    for (float &v : xv)
      v = float(uniform() * 4 - 2);
    for (float &v : yv)
      v = float(int(uniform() * 10) % 10);
    std::copy(xv.begin(), xv.end(), cpu.tensor(x).begin());
    std::copy(yv.begin(), yv.end(), cpu.tensor(y).begin());
    cpu.run("train_step");
    cpuLoss.push_back(cpu.tensor(loss)[0]);
    if (gpu) {
      gpu->write(x, xv.data(), xv.size());
      gpu->write(y, yv.data(), yv.size());
      gpu->run("train_step"); // step by step, then captured, then replayed
      if (step % 2 == 1) {    // reads between some steps only: the host runs ahead
        float l;
        gpu->read(loss, &l, 1);
        gpuLoss.push_back(l);
        EXPECT_NEAR(l, cpuLoss.back(), 1e-5 * std::fabs(cpuLoss.back())) << "step " << step;
      }
    }
  }
  EXPECT_GT(cpuLoss.front(), cpuLoss.back()); // it learns (same batch statistics aside)
  if (!gpu)
    GTEST_SKIP() << reason;
  for (const char *name : {"fc1.weight", "fc1.bias", "fc2.weight"}) {
    int id = cpu.findTensor(name);
    std::vector<float> g(size_t(lp.numElements(id)));
    gpu->read(id, g.data(), g.size());
    std::string why;
    EXPECT_LE(relativeError(g, cpu.tensor(id), why), 1e-5) << name << " " << why;
  }
}


/// The energy timelines (runtime/cuda/CuptiTimeline.h, CudaStepTimer.h) on one plan:
/// CUPTI's records inside the graph replays against the events of the eager runs.
/// Needs a GPU and a CUPTI that starts; skips with the reason otherwise.
TEST(CudaExecutor, CuptiTimelineAgreesWithEvents) {
  LoadedPlan lp = LoadedPlan::fromBytes(mlpPlan(), "mlp.plan");
  std::string reason;
  std::unique_ptr<Executor> gpu = cudaExecutorOrSkipReason(lp, reason);
  if (!gpu)
    GTEST_SKIP() << reason;
  const uint32_t steps = lp.findFunction("train_step")->steps()->size();
  const int runs = 30;
  gpu->run("train_step"); // lazy initialisation, outside both timelines
  gpu->synchronize();
  struct Timed {
    std::string name, method;
    std::vector<StepSpan> spans;
    std::vector<std::vector<std::string>> kernels; // [step]
    double begin = 0, end = 0;                   // the host clock around the runs
  };
  auto timed = [&](const char *mode) {
    setenv("MANTISSA_TIMELINE", mode, 1);
    Timed t;
    t.begin = timelineClock();
    EXPECT_TRUE(gpu->enableTimeline(true));
    unsetenv("MANTISSA_TIMELINE");
    t.name = gpu->timelineName();
    t.method = gpu->timelineMethod();
    for (int r = 0; r < runs; ++r) {
      gpu->setTimelineTag(r);
      gpu->run("train_step");
    }
    gpu->drainTimeline(t.spans);
    t.end = timelineClock();
    for (uint32_t s = 0; s < steps; ++s)
      t.kernels.push_back(gpu->timelineDeviceKernels(0, s));
    gpu->enableTimeline(false);
    return t;
  };
  Timed events = timed("events");
  EXPECT_EQ(events.name, "events");
  Timed cupti;
  try {
    cupti = timed("cupti");
  } catch (const Error &e) {
    unsetenv("MANTISSA_TIMELINE");
    GTEST_SKIP() << "CUPTI cannot be used here: " << e.what();
  }
  ASSERT_EQ(cupti.name, "cupti") << cupti.method;
  EXPECT_NE(cupti.method.find("CUPTI 13."), std::string::npos) << cupti.method;

  // Every step of every run has exactly one span, on the host clock, in step order
  // (a wrong node -> step map would scramble the order).
  for (const Timed *t : {&events, &cupti}) {
    std::map<std::pair<int64_t, uint32_t>, StepSpan> by;
    for (const StepSpan &sp : t->spans) {
      EXPECT_EQ(sp.function, 0u);
      EXPECT_TRUE(by.insert({{sp.tag, sp.step}, sp}).second)
          << t->name << ": two spans for run " << sp.tag << " step " << sp.step;
      EXPECT_LE(sp.start, sp.end) << t->name;
      EXPECT_GE(sp.start, t->begin - 1e-3) << t->name << ": before the runs began";
      EXPECT_LE(sp.end, t->end + 1e-3) << t->name << ": after the runs ended";
    }
    EXPECT_EQ(by.size(), size_t(runs) * steps) << t->name << ": a step of a run has no span";
    for (int r = 0; r < runs; ++r)
      for (uint32_t s = 1; s < steps; ++s) {
        auto now = by.find({r, s}), before = by.find({r, s - 1});
        // Starts only: with programmatic dependent launch (cuBLAS on sm_90) a kernel
        // may begin before the previous one has ended.
        if (now != by.end() && before != by.end())
          EXPECT_GE(now->second.start, before->second.start)
              << t->name << ": run " << r << " step " << s << " starts before step " << s - 1;
      }
  }
  // Per step, the median over the runs (the first two left out): a step's kernels
  // lie inside its events, so CUPTI's span is at most the events' (loosely: the
  // graph and the eager launch may run the same kernel a little differently).
  auto medians = [&](const Timed &t) {
    std::vector<std::vector<double>> d(steps);
    for (const StepSpan &sp : t.spans)
      if (sp.tag >= 2)
        d[sp.step].push_back(sp.end - sp.start);
    std::vector<double> m;
    for (auto &v : d) {
      std::sort(v.begin(), v.end());
      m.push_back(v.empty() ? 0.0 : v[v.size() / 2]);
    }
    return m;
  };
  std::vector<double> me = medians(events), mc = medians(cupti);
  double sumE = 0, sumC = 0;
  for (uint32_t s = 0; s < steps; ++s) {
    EXPECT_GT(mc[s], 0.0) << "step " << s;
    EXPECT_LE(mc[s], 1.25 * me[s] + 10e-6)
        << "step " << s << ": CUPTI " << mc[s] * 1e6 << " us, events " << me[s] * 1e6 << " us";
    sumE += me[s];
    sumC += mc[s];
  }
  EXPECT_GE(sumC, 0.1 * sumE) << "CUPTI " << sumC * 1e6 << " us per run, events " << sumE * 1e6;
  // Every step launched at least one device kernel that CUPTI named; the events see none.
  for (uint32_t s = 0; s < steps; ++s) {
    EXPECT_FALSE(cupti.kernels[s].empty()) << "step " << s << " has no device kernel";
    EXPECT_TRUE(events.kernels[s].empty());
  }
}

/// Layer sizes of a U-Net's upper level (fp16 activations): the im2col groups, the
/// chunked batch-norm and reduce paths, and graph replay at a realistic scale. Every
/// step reads parameters (identical on both sides), not the previous step's output:
/// max pooling's argmax is discontinuous, so a one-ulp difference upstream could send a
/// gradient to another element and the comparison would test nothing.
std::vector<uint8_t> largePlan() {
  PlanMaker pm;
  auto &b = pm.builder();
  const int64_t N = 8, C = 32, H = 96, W = 96, K = 32;
  const plan::DType F16 = plan::DType::F16, F32 = plan::DType::F32;
  auto param = [&](const char *n, plan::DType t, std::vector<int64_t> s, float lo = -1, float hi = 1) {
    return pm.tensor(n, t, std::move(s), plan::Role::Param, lo, hi);
  };
  auto temp = [&](const char *n, plan::DType t, std::vector<int64_t> s) {
    return pm.tensor(n, t, std::move(s), plan::Role::Temp);
  };
  const std::vector<int64_t> act = {N, K, H, W};
  const auto cs = contiguousStrides(act);
  int x = param("x", F16, {N, C, H, W});
  int w = param("w", F16, {K, C, 3, 3}, -0.1f, 0.1f);
  int y = temp("conv_y", F16, act);
  pm.step("conv", plan::Kernel::Conv2d,
          plan::CreateConv2d(b, plan::ConvKind::Forward, x, w, y, N, C, H, W, K, 3, 3, 1, 1, 1, 1).Union());
  int y0 = param("bn_x", F16, act, -2, 3);
  int gamma = param("bn.weight", F32, {K}, 0.5f, 1.5f);
  int beta = param("bn.bias", F32, {K});
  int z = temp("bn_y", F16, act);
  int sm = temp("saved_mean", F32, {K}), si = temp("saved_invstd", F32, {K});
  int rm = pm.tensor("bn.running_mean", F32, {K}, plan::Role::Buffer, 0, 0.1f);
  int rv = pm.tensor("bn.running_var", F32, {K}, plan::Role::Buffer, 0.9f, 1.1f);
  pm.step("bn", plan::Kernel::BatchNorm,
          plan::CreateBatchNorm(b, y0, gamma, beta, z, sm, si, rm, rv, N, K, H * W, 1e-5f, 0.1f, true).Union());
  int r = temp("relu", F16, act);
  pm.elementwise("relu", act, {{y0, cs}}, {load(0), op(ScalarOp::Relu, 0)}, {r}, {1});
  int p = temp("pool", F16, {N, K, H / 2, W / 2});
  // No indices: the gradient finds the argmax in x and y.
  pm.step("pool", plan::Kernel::MaxPool2d,
          plan::CreateMaxPool2d(b, y0, p, -1, N, K, H, W, 2, 2).Union());
  int dp = param("dpool", F16, {N, K, H / 2, W / 2});
  int dr = temp("dpool_x", F16, act);
  pm.step("pool_bwd", plan::Kernel::MaxPool2dBackward,
          plan::CreateMaxPool2dBackward(b, dp, y0, p, dr, N, K, H, W, 2, 2).Union());
  int g0 = param("grad_in", F16, act);
  int dz = temp("drelu", F16, act);
  pm.elementwise("relu_bwd", act, {{y0, cs}, {g0, cs}},
                 {load(0), load(1), konst(0.0f), op(ScalarOp::CmpGt, 0, 2), op(ScalarOp::Select, 3, 1, 2)},
                 {dz}, {4});
  int dy = temp("bn_dx", F16, act);
  int dg = temp("dgamma", F32, {K}), db = temp("dbeta", F32, {K});
  pm.step("bn_bwd", plan::Kernel::BatchNormBackward,
          plan::CreateBatchNormBackward(b, g0, y0, gamma, sm, si, dy, dg, db, N, K, H * W).Union());
  int dbias = temp("dbias", F32, {1, K, 1, 1});
  std::vector<int64_t> inShape = act, outShape = {1, K, 1, 1};
  pm.step("bias_grad", plan::Kernel::Reduce, plan::CreateReduceDirect(b, g0, dbias, &inShape, &outShape, false).Union());
  int dx = temp("conv_dx", F16, {N, C, H, W});
  pm.step("conv_dx", plan::Kernel::Conv2d,
          plan::CreateConv2d(b, plan::ConvKind::BackwardInput, g0, w, dx, N, C, H, W, K, 3, 3, 1, 1, 1, 1).Union());
  int dw = temp("conv_dw", F32, {K, C, 3, 3});
  pm.step("conv_dw", plan::Kernel::Conv2d,
          plan::CreateConv2d(b, plan::ConvKind::BackwardWeight, x, g0, dw, N, C, H, W, K, 3, 3, 1, 1, 1, 1).Union());
  int fin = temp("finite", F32, {});
  std::vector<int32_t> grads = {dw, dg, db, dbias};
  pm.step("all_finite", plan::Kernel::AllFinite, plan::CreateAllFiniteDirect(b, &grads, fin).Union());
  int master = param("w_master", F32, {K, C, 3, 3}, -0.1f, 0.1f);
  auto ws = contiguousStrides({K, C, 3, 3});
  pm.elementwise("sgd", {K, C, 3, 3}, {{master, ws}, {dw, ws}, {fin, {0, 0, 0, 0}}},
                 {load(0), load(1), load(2), konst(1e-4f), op(ScalarOp::Mul, 1, 3),
                  op(ScalarOp::Mul, 4, 2), op(ScalarOp::Sub, 0, 5)},
                 {master}, {6});
  return pm.finish({fin});
}

TEST(CudaExecutor, LargeLayersMatchCpu) {
  std::vector<uint8_t> bytes = largePlan();
  savePlan(bytes, "large.plan");
  LoadedPlan probe = LoadedPlan::fromBytes(bytes, "large.plan");
  std::string reason;
  if (!cudaExecutorOrSkipReason(probe, reason))
    GTEST_SKIP() << reason; // the CPU side alone would take long on a small machine
  compareWithCpu(bytes, "large.plan", 2, 1e-5, 2e-3);
}

} // namespace
