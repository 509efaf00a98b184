// A plan built with the FlatBuffers builder, run end to end, and the loader's
// verification rejecting broken plans with clear messages.
#include "common/Error.h"
#include "common/Float16.h"
#include "common/ScalarOp.h"
#include "plan/PlanIntegrity.h"
#include "runtime/cpu/CpuBackend.h"
#include "runtime/inspect/PlanPrinter.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

using namespace mantissa;
namespace fb = flatbuffers;

namespace {

struct PlanOptions {
  int gemmB = 1;                        // tensor index of the Gemm's b operand
  std::vector<int64_t> wShape = {3, 4}; // shape of the weight tensor
  uint32_t version = kPlanVersion;
  plan::DType labelType = plan::DType::F32;
  // Memory plan: arena offsets of h, logits, loss (-1: own storage) and the arena size.
  int64_t offH = -1, offLogits = -1, offLoss = -1;
  uint64_t arenaBytes = 0;
  int64_t offW = -1; // an (invalid) offset for the Param w
  plan::DType logitsType = plan::DType::F16;
  std::vector<int64_t> hStrides = {4, 1}; // how step 1 reads h
  // A tensor 7 'w:f16' of role copyRole and dtype copyType with this master (-2: none).
  int copyMaster = -2;
  plan::Role copyRole = plan::Role::WorkingCopy;
  plan::DType copyType = plan::DType::F16;
  // The Gemm's epilogue (bias tensor, relu) and beta.
  int gemmBias = -1;
  bool gemmRelu = false;
  float gemmBeta = 0.0f;
  // Plan.checksum as built; kChecksumPlaceholder: sealed (the true checksum); 0: absent.
  uint64_t checksum = plan::kChecksumPlaceholder;
};

// Tensors: 0 x [2,3] Input, 1 w [3,4] Param, 2 bias [4] Param, 3 h [2,4] Temp,
// 4 logits [2,4] F16 Temp, 5 labels [2] Input, 6 loss [] Temp.
// train_step: h = x @ w ('fc1.matmul'); logits = f16(h + bias); loss = CE(logits, labels).
std::vector<uint8_t> buildPlan(const PlanOptions &o = {}) {
  fb::FlatBufferBuilder b;
  std::vector<float> w = {0.5f,   -1.0f, 0.25f, 2.0f, 1.5f, 0.125f,
                          -0.75f, 1.0f,  -2.0f, 0.3f, 0.6f, 0.9f};
  std::vector<float> bias = {0.1f, 0.2f, 0.3f, 0.4f};
  w.resize(size_t(o.wShape[0] * o.wShape[1]));
  std::vector<int64_t> sx = {2, 3}, sb = {4}, sh = {2, 4}, sl = {2}, s0 = {};
  std::vector<fb::Offset<plan::Tensor>> tensors = {
      plan::CreateTensorDirect(b, "x", plan::DType::F32, &sx, plan::Role::Input),
      plan::CreateTensorDirect(b, "w", plan::DType::F32, &o.wShape, plan::Role::Param, &w,
                               plan::InitKind::Values, 0, 0, 0, o.offW),
      plan::CreateTensorDirect(b, "bias", plan::DType::F32, &sb, plan::Role::Param, &bias),
      plan::CreateTensorDirect(b, "h", plan::DType::F32, &sh, plan::Role::Temp, nullptr,
                               plan::InitKind::Values, 0, 0, 0, o.offH),
      plan::CreateTensorDirect(b, "logits", o.logitsType, &sh, plan::Role::Temp, nullptr,
                               plan::InitKind::Values, 0, 0, 0, o.offLogits),
      plan::CreateTensorDirect(b, "y", o.labelType, &sl, plan::Role::Input),
      plan::CreateTensorDirect(b, "loss", plan::DType::F32, &s0, plan::Role::Temp, nullptr,
                               plan::InitKind::Values, 0, 0, 0, o.offLoss),
  };
  if (o.copyMaster != -2)
    tensors.push_back(plan::CreateTensorDirect(b, "w:f16", o.copyType, &o.wShape, o.copyRole,
                                               nullptr, plan::InitKind::Values, 0, 0, 0, -1,
                                               o.copyMaster));
  auto gemm = plan::CreateGemm(b, 0, o.gemmB, 3, false, false, 2, 4, 3, 1, 1.0f, o.gemmBeta,
                               o.gemmBias, o.gemmRelu);
  std::vector<int64_t> biasStrides = {0, 1};
  std::vector<fb::Offset<plan::Operand>> inputs = {plan::CreateOperandDirect(b, 3, &o.hStrides),
                                                   plan::CreateOperandDirect(b, 2, &biasStrides)};
  std::vector<plan::Instr> program = {plan::Instr(uint8_t(ScalarOp::Load), 0, 0, 0, 0.0f),
                                      plan::Instr(uint8_t(ScalarOp::Load), 0, 0, 0, 1.0f),
                                      plan::Instr(uint8_t(ScalarOp::Add), 0, 1, 0, 0.0f)};
  std::vector<int32_t> outs = {4};
  std::vector<int16_t> regs = {2};
  auto ew = plan::CreateElementwiseDirect(b, &sh, &inputs, &program, &outs, &regs);
  auto ce = plan::CreateSoftmaxCrossEntropy(b, 4, 5, 6, 2, 4);
  std::vector<fb::Offset<plan::Step>> steps = {
      plan::CreateStepDirect(b, "fc1.matmul", "graph.matmul", plan::DType::F32, plan::Kernel::Gemm,
                             gemm.Union()),
      plan::CreateStepDirect(b, "fc1.bias", "graph.add", plan::DType::F16,
                             plan::Kernel::Elementwise, ew.Union()),
      plan::CreateStepDirect(b, "loss", "graph.cross_entropy", plan::DType::F32,
                             plan::Kernel::SoftmaxCrossEntropy, ce.Union())};
  std::vector<int32_t> fnOuts = {6};
  std::vector<fb::Offset<plan::Function>> functions = {
      plan::CreateFunctionDirect(b, "train_step", &steps, &fnOuts)};
  auto root = plan::CreatePlanDirect(b, o.version, 0, 0, 0, 0, &tensors, &functions, o.arenaBytes,
                                     0, 0, 0, 0, o.checksum);
  plan::FinishPlanBuffer(b, root);
  std::vector<uint8_t> bytes(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
  if (o.checksum == plan::kChecksumPlaceholder)
    plan::sealPlan(bytes.data(), bytes.size());
  return bytes;
}

/// h, logits and loss at these arena offsets, in an arena of `arenaBytes`.
PlanOptions inArena(int64_t offH, int64_t offLogits, int64_t offLoss, uint64_t arenaBytes) {
  PlanOptions o;
  o.offH = offH;
  o.offLogits = offLogits;
  o.offLoss = offLoss;
  o.arenaBytes = arenaBytes;
  return o;
}

std::string loadError(std::vector<uint8_t> bytes) {
  try {
    LoadedPlan::fromBytes(std::move(bytes), "model.plan");
  } catch (const Error &e) {
    return e.what();
  }
  return "";
}

template <class T>
double expectedLoss(const std::vector<double> &x, const std::vector<double> &lab,
                    bool f16Logits = true) {
  std::vector<double> w = {0.5, -1.0, 0.25, 2.0, 1.5, 0.125, -0.75, 1.0, -2.0, 0.3f, 0.6f, 0.9f};
  std::vector<double> bias = {0.1f, 0.2f, 0.3f, 0.4f};
  double total = 0;
  for (int i = 0; i < 2; ++i) {
    double logits[4], mx = -1e300;
    for (int j = 0; j < 4; ++j) {
      double h = 0;
      for (int k = 0; k < 3; ++k)
        h += x[i * 3 + k] * w[k * 4 + j];
      // h (fp32 tensor) + bias, stored as fp16
      logits[j] = double(T(h)) + bias[j];
      if (f16Logits)
        logits[j] = roundToF16(logits[j]);
      mx = std::max(mx, logits[j]);
    }
    double s = 0;
    for (double l : logits)
      s += std::exp(l - mx);
    total += std::log(s) + mx - logits[int(lab[i])];
  }
  return total / 2;
}

template <class T> void runEndToEnd() {
  LoadedPlan lp = LoadedPlan::fromBytes(buildPlan(), "tiny.plan");
  CpuExecutor<T> ex(lp, 2);
  int x = ex.findTensor("x"), y = ex.findTensor("y"), loss = ex.findTensor("loss");
  ASSERT_EQ(x, 0);
  ASSERT_EQ(y, 5);
  ASSERT_EQ(ex.findTensor("nope"), -1);
  // Params are initialised from the plan.
  EXPECT_EQ(ex.tensor(ex.findTensor("w"))[3], T(2.0));
  std::vector<double> xv = {1.0, 2.0, -1.0, 0.5, -0.25, 3.0}, lab = {3, 1};
  for (int i = 0; i < 6; ++i)
    ex.tensor(x)[i] = T(xv[i]);
  ex.tensor(y) = {T(3), T(1)};
  ex.run("train_step");
  // logits are fp16 values
  for (T v : ex.tensor(4))
    EXPECT_EQ(double(v), roundToF16(double(v)));
  const double tolerance = std::is_same<T, float>::value ? 1e-6 : 1e-13;
  EXPECT_NEAR(double(ex.tensor(loss)[0]), expectedLoss<T>(xv, lab), tolerance);
  // A label out of range is an error naming the step.
  ex.tensor(y)[1] = T(4);
  try {
    ex.run("train_step");
    FAIL() << "no error";
  } catch (const Error &e) {
    std::string m = e.what();
    EXPECT_NE(m.find("tiny.plan: train_step step 2 'loss' (SoftmaxCrossEntropy)"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("row 1"), std::string::npos) << m;
  }
  EXPECT_THROW(ex.run("eval_step"), Error);
}

} // namespace

TEST(Plan, EndToEndFloat) { runEndToEnd<float>(); }
TEST(Plan, EndToEndDouble) { runEndToEnd<double>(); }

TEST(Plan, LoadFromFileAndMissingFile) {
  std::string path = ::testing::TempDir() + "mantissa_tiny.plan";
  auto bytes = buildPlan();
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char *>(bytes.data()), std::streamsize(bytes.size()));
  }
  LoadedPlan lp = LoadedPlan::load(path);
  EXPECT_EQ(lp.numElements(1), 12);
  EXPECT_NE(lp.findFunction("train_step"), nullptr);
  std::remove(path.c_str());
  try {
    LoadedPlan::load(path);
    FAIL();
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()), path + ": cannot open: No such file or directory");
  }
}

TEST(Plan, RejectsTruncatedBuffer) {
  auto bytes = buildPlan();
  bytes.resize(bytes.size() / 2);
  std::string m = loadError(bytes);
  EXPECT_NE(m.find("model.plan: corrupt plan"), std::string::npos) << m;
  EXPECT_NE(loadError({}).find("model.plan: not a Mantissa plan"), std::string::npos);
}

TEST(Plan, RejectsFlippedIdentifierByte) {
  auto bytes = buildPlan();
  bytes[5] ^= 0x20; // "MNTP" -> "MnTP"
  EXPECT_EQ(loadError(bytes), "model.plan: not a Mantissa plan (file identifier is not \"MNTP\")");
}

TEST(Plan, EverySingleByteFlipIsRejected) {
  // Every byte flipped in turn (every bit pattern of the flip would do: FNV-1a's steps
  // are bijections). FlatBuffers verification catches a damaged offset; a damaged value
  // (a shape, an initialiser, a learning rate) passes it and only the checksum catches
  // it, with the message that says so.
  auto good = buildPlan();
  ASSERT_EQ(loadError(good), "");
  size_t byChecksum = 0;
  for (size_t i = 0; i < good.size(); ++i) {
    for (uint8_t mask : {uint8_t(0x01), uint8_t(0x80), uint8_t(0xFF)}) {
      auto bytes = good;
      bytes[i] ^= mask;
      std::string m = loadError(bytes);
      ASSERT_EQ(m.rfind("model.plan: ", 0), 0u) << "byte " << i << " ^ " << int(mask) << ": " << m;
      byChecksum += m.find("bytes hash to") != std::string::npos;
    }
  }
  // Most of a plan is values, not offsets (the old loader let such flips through).
  EXPECT_GT(byChecksum, good.size());
}

TEST(Plan, AnySingleByteFlipOfAResealedPlanIsRejectedOrHarmless) {
  // A damaged plan whose checksum was recomputed (a buggy writer): behind the checksum,
  // the semantic checks must either throw Error or give a plan that passes all of them
  // (e.g. a flipped init value) -- never crash.
  auto good = buildPlan();
  int rejected = 0, verified = 0;
  for (size_t i = 0; i < good.size(); ++i) {
    auto bytes = good;
    bytes[i] ^= 0xFF;
    flatbuffers::Verifier verifier(bytes.data(), bytes.size());
    if (flatbuffers::BufferHasIdentifier(bytes.data(), plan::PlanIdentifier()) &&
        plan::VerifyPlanBuffer(verifier)) {
      plan::sealPlan(bytes.data(), bytes.size()); // only a verified buffer can be sealed
      ++verified;
    }
    try {
      LoadedPlan lp = LoadedPlan::fromBytes(bytes, "model.plan");
      CpuExecutor<float> ex(lp, 1);
      (void)ex;
    } catch (const Error &) {
      ++rejected;
    }
  }
  EXPECT_GT(verified, int(good.size() / 3)); // 525 of 1080 bytes when written
  EXPECT_GT(rejected, int(good.size() / 4));
}

TEST(Plan, RejectsAPlanWithoutItsChecksum) {
  PlanOptions o;
  o.checksum = 0; // the field is not stored
  EXPECT_EQ(loadError(buildPlan(o)),
            "model.plan: corrupt plan (no checksum: every version " + std::to_string(kPlanVersion) +
                " plan has one; damaged file, or not written by `mantissa compile`)");
  o.checksum = 12345; // stored, not sealed
  EXPECT_NE(
      loadError(buildPlan(o)).find("but it records checksum 0000000000003039: damaged or modified"),
      std::string::npos);
}

TEST(Plan, AnOlderVersionIsReportedAsSuchAndNotAsDamage) {
  // A version-7 plan had no checksum: the message is the version's, alone.
  PlanOptions o;
  o.version = 7;
  o.checksum = 0;
  EXPECT_EQ(loadError(buildPlan(o)), "model.plan: plan version 7, but this runtime reads version " +
                                         std::to_string(kPlanVersion) + " (recompile the model)");
}

// inspect lists a plan whose bytes are whole but which the runtime refuses, and says so
// on its second line; a damaged one it refuses, as the runtime does.
TEST(Plan, InspectSaysWhenTheRuntimeRefusesAPlan) {
  PlanOptions o;
  o.gemmB = 99;
  std::vector<uint8_t> bytes = buildPlan(o);
  std::ostringstream listing;
  EXPECT_EQ(printPlan(bytes.data(), bytes.size(), listing, {}), "");
  EXPECT_NE(listing.str().find("\nruntime checks: FAIL, mantissa-run refuses this plan: the plan: "
                               "train_step step 0 'fc1.matmul' (Gemm): operand b is tensor 99"),
            std::string::npos)
      << listing.str();
  EXPECT_NE(listing.str().find("live temps per step: not shown"), std::string::npos);
  bytes = buildPlan();
  std::ostringstream good;
  EXPECT_EQ(printPlan(bytes.data(), bytes.size(), good, {}), "");
  EXPECT_EQ(good.str().find("runtime checks"), std::string::npos);
  bytes[bytes.size() / 2] ^= 1;
  std::ostringstream damaged;
  EXPECT_NE(printPlan(bytes.data(), bytes.size(), damaged, {}).find("corrupt plan"),
            std::string::npos);
  EXPECT_EQ(damaged.str(), "");
}

TEST(Plan, RejectsOutOfRangeTensorIndex) {
  PlanOptions o;
  o.gemmB = 99;
  EXPECT_EQ(loadError(buildPlan(o)), "model.plan: train_step step 0 'fc1.matmul' (Gemm): operand b "
                                     "is tensor 99, but the plan has 7 tensors");
}

TEST(Plan, RejectsWrongOperandSize) {
  PlanOptions o;
  o.wShape = {5, 4};
  EXPECT_EQ(loadError(buildPlan(o)), "model.plan: train_step step 0 'fc1.matmul' (Gemm): operand b "
                                     "(tensor 1 'w') has 20 elements, expected 12");
}

TEST(Plan, GemmEpilogueOperandsAreChecked) {
  PlanOptions o;
  o.gemmBias = 2; // bias [4] f32, as a, b and c
  o.gemmRelu = true;
  EXPECT_EQ(loadError(buildPlan(o)), "");
  o.gemmBias = 4; // logits: 8 elements
  EXPECT_EQ(loadError(buildPlan(o)), "model.plan: train_step step 0 'fc1.matmul' (Gemm): operand "
                                     "bias (tensor 4 'logits') has 8 elements, expected 4");
  o.gemmBias = 2;
  o.gemmBeta = 1.0f;
  EXPECT_EQ(loadError(buildPlan(o)), "model.plan: train_step step 0 'fc1.matmul' (Gemm): a bias "
                                     "epilogue needs batch 1 and beta 0, got batch 1 and beta 1");
  o.gemmBias = -1;
  o.gemmBeta = 0.0f;
  EXPECT_EQ(loadError(buildPlan(o)), "model.plan: train_step step 0 'fc1.matmul' (Gemm): relu "
                                     "without a bias (the epilogue is bias or bias + relu)");
}

TEST(Plan, RejectsOtherVersion) {
  PlanOptions o;
  o.version = kPlanVersion + 1;
  EXPECT_NE(loadError(buildPlan(o)).find("plan version " + std::to_string(kPlanVersion + 1) +
                                         ", but this runtime reads version " +
                                         std::to_string(kPlanVersion)),
            std::string::npos);
  // A damaged version number: the checksum does not hold, and the message says so too.
  auto bytes = buildPlan();
  const uint8_t *version =
      fb::GetRoot<fb::Table>(bytes.data())->GetAddressOf(plan::Plan::VT_VERSION);
  bytes[size_t(version - bytes.data())] ^= 0x04;
  EXPECT_EQ(loadError(bytes), "model.plan: plan version " + std::to_string(kPlanVersion ^ 4) +
                                  ", but this runtime reads version " +
                                  std::to_string(kPlanVersion) +
                                  " (recompile the model); its checksum does not hold either: the "
                                  "file may be damaged");
}

TEST(Plan, LabelsMayBeI32) {
  PlanOptions o;
  o.labelType = plan::DType::I32;
  LoadedPlan lp = LoadedPlan::fromBytes(buildPlan(o), "tiny.plan");
  CpuExecutor<double> ex(lp, 1);
  std::vector<double> xv = {1.0, 2.0, -1.0, 0.5, -0.25, 3.0};
  ex.tensor(0).assign(xv.begin(), xv.end());
  ex.indexTensor(5) = {3, 1};
  EXPECT_THROW(ex.tensor(5), Error);
  ex.run("train_step");
  EXPECT_NEAR(ex.tensor(6)[0], expectedLoss<double>(xv, {3, 1}), 1e-13);
}

/// Runs `lp`'s train_step on the CPU (its own storage per tensor, whatever the memory
/// plan) and returns the loss.
double tinyLoss(const LoadedPlan &lp) {
  CpuExecutor<double> ex(lp, 1);
  std::vector<double> xv = {1.0, 2.0, -1.0, 0.5, -0.25, 3.0};
  ex.tensor(0).assign(xv.begin(), xv.end());
  ex.tensor(5) = {3, 1};
  ex.run("train_step");
  return ex.tensor(6)[0];
}

// The memory plan: h (32 bytes, live at steps 0..1), logits (16 bytes, 1..2) and loss
// (4 bytes, 2..end, an output). h and loss may share bytes; logits may not overlap either.
TEST(Plan, MemoryPlanAcceptsReuseByLiveness) {
  PlanOptions o = inArena(0, 256, 0, 512);
  LoadedPlan lp = LoadedPlan::fromBytes(buildPlan(o), "tiny.plan");
  EXPECT_EQ(lp->arena_bytes(), 512u);
  EXPECT_NEAR(tinyLoss(lp), expectedLoss<double>({1.0, 2.0, -1.0, 0.5, -0.25, 3.0}, {3, 1}), 1e-13);
}

// A step's scratch may go where no temp live at that step is (the CUDA executor puts it
// there). The liveness is the one the memory plan is verified against: h (bytes
// [0, 32)) at steps 0..1, logits ([256, 272)) at 1..2, loss ([512, 516)) at 2..3 (an
// output: to the end).
TEST(Plan, FreeArenaBytesAtAStepAreThoseNoLiveTempHolds) {
  PlanOptions o = inArena(0, 256, 512, 1024);
  LoadedPlan lp = LoadedPlan::fromBytes(buildPlan(o), "tiny.plan");
  const std::vector<LoadedPlan::ArenaTemp> &temps = lp.arenaTemps(0);
  ASSERT_EQ(temps.size(), 3u);
  EXPECT_EQ(temps[0].id, 3);
  EXPECT_EQ(temps[0].start, 0);
  EXPECT_EQ(temps[0].end, 1);
  EXPECT_EQ(temps[2].id, 6);
  EXPECT_EQ(temps[2].end, 3);
  // Worked by hand from the liveness above.
  EXPECT_EQ(lp.freeArenaOffset(0, 0, 256, 256), 256); // after h
  EXPECT_EQ(lp.freeArenaOffset(0, 0, 768, 256), 256); // [256, 1024): logits not yet live
  EXPECT_EQ(lp.freeArenaOffset(0, 0, 1000, 256), -1); // h holds [0, 32)
  EXPECT_EQ(lp.freeArenaOffset(0, 1, 256, 256), 512); // h and logits live
  EXPECT_EQ(lp.freeArenaOffset(0, 1, 513, 256), -1);
  EXPECT_EQ(lp.freeArenaOffset(0, 1, 200, 16), 32);  // between h and logits, 16-aligned
  EXPECT_EQ(lp.freeArenaOffset(0, 2, 256, 256), 0);  // h is dead at step 2
  EXPECT_EQ(lp.freeArenaOffset(0, 2, 257, 256), -1); // [0, 256) and [768, 1024) are too small
  EXPECT_EQ(lp.freeArenaOffset(0, 2, 257, 16), 528); // after the loss, 16-aligned
  EXPECT_EQ(lp.freeArenaOffset(0, 3, 512, 256), 0);  // only the loss, to the end
  EXPECT_EQ(lp.largestFreeArenaSpan(0, 0, 256), 768u);
  EXPECT_EQ(lp.largestFreeArenaSpan(0, 1, 256), 512u);
  EXPECT_EQ(lp.largestFreeArenaSpan(0, 2, 256), 256u);
  using Spans = std::vector<std::pair<uint64_t, uint64_t>>;
  EXPECT_EQ(lp.freeArenaSpans(0, 1), (Spans{{32, 256}, {272, 1024}}));
  EXPECT_EQ(lp.freeArenaSpans(0, 2), (Spans{{0, 256}, {272, 512}, {516, 1024}}));
  // Against a brute-force search over every aligned offset, at every step and size.
  for (int64_t step = 0; step <= 3; ++step)
    for (uint64_t align : {1u, 16u, 256u})
      for (uint64_t bytes = 1; bytes <= 1024; bytes += 7) {
        int64_t want = -1;
        for (uint64_t at = 0; at + bytes <= 1024 && want < 0; at += align) {
          bool clear = true;
          for (const auto &t : temps)
            if (t.start <= step && step <= t.end && at < t.begin + t.bytes && t.begin < at + bytes)
              clear = false;
          if (clear)
            want = int64_t(at);
        }
        ASSERT_EQ(lp.freeArenaOffset(0, step, bytes, align), want)
            << "step " << step << " bytes " << bytes << " align " << align;
      }
  EXPECT_THROW(lp.arenaTemps(1), Error); // the plan has one function
}

// Adding into an arena temp at its first step would read bytes that other temps (and
// the CUDA executor's scratch) used while it was not live; outside the arena it is the
// temp's own storage.
TEST(Plan, MemoryPlanRejectsAccumulatingIntoAnArenaTempAtItsFirstStep) {
  PlanOptions o = inArena(0, 256, 512, 1024);
  o.gemmBeta = 1.0f; // step 0: h += x @ w
  EXPECT_EQ(loadError(buildPlan(o)),
            "model.plan: train_step: memory plan: step 0 adds into tensor 3 'h', an arena temp "
            "that holds no value before that step (its bytes are shared by liveness): write it "
            "first, or keep it outside the arena");
  o.offH = -1;
  EXPECT_EQ(loadError(buildPlan(o)), "");
}

TEST(Plan, MemoryPlanRejectsOverlapWhileLive) {
  // h and logits at 0: h is read and logits written by step 1, both live there.
  PlanOptions o = inArena(0, 0, 256, 512);
  EXPECT_EQ(loadError(buildPlan(o)),
            "model.plan: train_step: memory plan: tensor 3 'h' (bytes [0, 32), live at steps "
            "0..1) and tensor 4 'logits' (bytes [0, 16), live at steps 1..2) overlap in the "
            "arena while both are live");
  // The loss (an output) stays live to the end of the function.
  o.offLogits = 256;
  o.offLoss = 256;
  EXPECT_NE(loadError(buildPlan(o))
                .find("tensor 4 'logits' (bytes [256, 272), live at steps "
                      "1..2) and tensor 6 'loss' (bytes [256, 260), live at "
                      "steps 2..3) overlap"),
            std::string::npos);
}

// In place: step 1 writes logits over h, which dies there, when both have elements of
// one size and h is read at logits' own index. Any other overlap is rejected.
TEST(Plan, MemoryPlanAcceptsAnElementwiseResultInPlaceOfItsDyingInput) {
  PlanOptions o = inArena(0, 0, 256, 512);
  o.logitsType = plan::DType::F32;
  LoadedPlan lp = LoadedPlan::fromBytes(buildPlan(o), "inplace.plan");
  EXPECT_NEAR(tinyLoss(lp),
              expectedLoss<double>({1.0, 2.0, -1.0, 0.5, -0.25, 3.0}, {3, 1}, false), 1e-13);

  const std::string overlap = "(bytes [0, 32), live at steps 1..2) overlap in the arena";
  o.hStrides = {0, 1}; // every row reads h's first: another thread's element
  EXPECT_NE(loadError(buildPlan(o)).find(overlap), std::string::npos);
  o.hStrides = {1, 2}; // transposed
  EXPECT_NE(loadError(buildPlan(o)).find(overlap), std::string::npos);
}

// A WorkingCopy (version 6) holds its Param master rounded: that is its initial value
// (it has none of its own), it is written through the master only, and a plan that
// gives it anything but an F32 Param of its size as master, or a master to another
// role, is rejected.
TEST(Plan, WorkingCopyOfAParam) {
  PlanOptions o;
  o.copyMaster = 1;
  LoadedPlan lp = LoadedPlan::fromBytes(buildPlan(o), "copy.plan");
  EXPECT_EQ(lp.workingCopies(1), std::vector<int>{7});
  EXPECT_TRUE(lp.workingCopies(2).empty());
  CpuExecutor<float> exec(lp, 1);
  const std::vector<float> w = lp.initialValues(1);
  ASSERT_EQ(exec.tensor(7).size(), w.size());
  for (size_t i = 0; i < w.size(); ++i)
    EXPECT_EQ(exec.tensor(7)[i], roundToF16(w[i])) << i;
  EXPECT_NE(roundToF16(0.3f), 0.3f); // so the check above sees the rounding
  lp.checkWritable(1);
  try {
    lp.checkWritable(7);
    ADD_FAILURE() << "a working copy was writable";
  } catch (const Error &e) {
    EXPECT_EQ(std::string(e.what()), "copy.plan: tensor 7 'w:f16' is the working copy of 'w': "
                                     "write the parameter, and its copy follows");
  }

  const std::string noParam = "model.plan: tensor 7 'w:f16': a WorkingCopy needs a Param as "
                              "its master, got tensor ";
  o.copyMaster = 3; // h, a Temp
  EXPECT_EQ(loadError(buildPlan(o)), noParam + "3");
  o.copyMaster = -1;
  EXPECT_EQ(loadError(buildPlan(o)), noParam + "-1");
  o.copyMaster = 99;
  EXPECT_EQ(loadError(buildPlan(o)), noParam + "99");
  o.copyMaster = 2; // bias: a Param of another size
  EXPECT_EQ(loadError(buildPlan(o)), "model.plan: tensor 7 'w:f16': a WorkingCopy has the "
                                     "element count of its F32 master (tensor 2 'bias')");
  o.copyMaster = 1;
  o.copyType = plan::DType::F32;
  EXPECT_EQ(loadError(buildPlan(o)),
            "model.plan: tensor 7 'w:f16': a WorkingCopy is F16 or BF16, got F32");
  o.copyType = plan::DType::BF16;
  o.copyRole = plan::Role::Buffer;
  EXPECT_EQ(loadError(buildPlan(o)), "model.plan: tensor 7 'w:f16': only a WorkingCopy has a "
                                     "master (got tensor 1)");
}

TEST(Plan, MemoryPlanRejectsBadOffsets) {
  PlanOptions o;
  o.offH = 0;
  o.offLogits = 256;
  o.offLoss = 0;
  o.arenaBytes = 256; // logits would end at 272
  EXPECT_EQ(loadError(buildPlan(o)), "model.plan: tensor 4 'logits': memory plan: bytes [256, "
                                     "272) lie outside the arena of 256 bytes");
  o.arenaBytes = 512;
  o.offLogits = 128;
  EXPECT_EQ(loadError(buildPlan(o)), "model.plan: tensor 4 'logits': memory plan: offset 128 "
                                     "is not a non-negative multiple of 256");
  o.offLogits = 256;
  o.offW = 0;
  EXPECT_EQ(loadError(buildPlan(o)), "model.plan: tensor 1 'w': memory plan: a Param has an "
                                     "arena offset (0); only Temp tensors live in the arena");
}
