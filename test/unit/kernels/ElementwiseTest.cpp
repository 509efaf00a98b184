// The elementwise program interpreter: broadcasting, multiple outputs, rounding on
// store, register reuse, and the ScalarOp tables generated from ScalarOps.def.
#include "runtime/kernels/Elementwise.h"
#include "common/Error.h"
#include "runtime/kernels/Parallel.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

using namespace mantissa;
using namespace mantissa::kernels;
using plan::Instr;

namespace {
Instr load(int input) { return Instr(uint8_t(ScalarOp::Load), 0, 0, 0, float(input)); }
Instr cnst(float v) { return Instr(uint8_t(ScalarOp::Const), 0, 0, 0, v); }
Instr op(ScalarOp o, int a, int b = 0, int c = 0) {
  return Instr(uint8_t(o), int16_t(a), int16_t(b), int16_t(c), 0.0f);
}
} // namespace

TEST(ScalarOp, TablesComeFromTheDef) {
  EXPECT_EQ(int(ScalarOp::Const), 0);
  EXPECT_EQ(int(ScalarOp::Load), 1);
  EXPECT_STREQ(scalarOpName(ScalarOp::Gelu), "Gelu");
  EXPECT_EQ(scalarOpArity(ScalarOp::Select), 3);
  EXPECT_EQ(scalarOpArity(ScalarOp::Sqrt), 1);
  EXPECT_EQ(scalarOpArity(ScalarOp::Add), 2);
  EXPECT_EQ(int(ScalarOp::RoundF32) + 1, kNumScalarOps);
}

TEST(Elementwise, BroadcastBiasReluTwoOutputs) {
  // x: [2, 3, 4] contiguous; bias: [3] broadcast over dims 0 and 2.
  // out0 = relu(x + bias) (F32), out1 = (x + bias) * 2 rounded to F16.
  std::vector<int64_t> shape = {2, 3, 4};
  std::vector<double> x(24), bias = {0.1, -100.0, 1.0 / 3};
  for (int i = 0; i < 24; ++i)
    x[i] = i - 10.5;
  ElementwiseProgram prog({load(0), load(1), op(ScalarOp::Add, 0, 1), op(ScalarOp::Relu, 2),
                           cnst(2.0f), op(ScalarOp::Mul, 2, 4)},
                          {3, 5}, 2);
  std::vector<double> out0(24), out1(24);
  runElementwise<double>(prog, shape, {{x.data(), {12, 4, 1}}, {bias.data(), {0, 1, 0}}},
                         {{out0.data(), plan::DType::F32}, {out1.data(), plan::DType::F16}});
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 3; ++c)
      for (int j = 0; j < 4; ++j) {
        int i = (n * 3 + c) * 4 + j;
        double s = x[i] + bias[c];
        EXPECT_EQ(out0[i], s > 0 ? s : 0.0);
        EXPECT_EQ(out1[i], roundToF16(s * 2));
      }
  // A specific value: x[23] + 1/3 = 12.5 + 0.333.. ; * 2 = 25.666..; fp16 ulp at 16..32
  // is 2^-6, so 25.666.. -> 25.671875 (1643/64).
  EXPECT_EQ(out1[23], 25.671875);
}

TEST(Elementwise, ScalarAndOuterProductBroadcast) {
  // out[i][j] = a[i] * b[j] + s with s a scalar tensor read with strides (0, 0).
  std::vector<float> a = {1, 2, 3}, b = {10, 20}, s = {0.5f}, out(6);
  ElementwiseProgram prog(
      {load(0), load(1), load(2), op(ScalarOp::Mul, 0, 1), op(ScalarOp::Add, 3, 2)}, {4}, 3);
  runElementwise<float>(prog, {3, 2}, {{a.data(), {1, 0}}, {b.data(), {0, 1}}, {s.data(), {0, 0}}},
                        {{out.data(), plan::DType::F32}});
  EXPECT_EQ(out, (std::vector<float>{10.5f, 20.5f, 20.5f, 40.5f, 30.5f, 60.5f}));
  // Rank 0: a single element.
  std::vector<float> one(1);
  runElementwise<float>(prog, {}, {{a.data(), {}}, {b.data(), {}}, {s.data(), {}}},
                        {{one.data(), plan::DType::F32}});
  EXPECT_EQ(one[0], 10.5f);
}

TEST(Elementwise, TransposedInputAcrossManyBlocks) {
  // out[i][j] = in[j][i] for a 300x70 shape (several blocks, runs that wrap rows).
  const int R = 300, C = 70;
  std::vector<float> in(R * C), out(R * C);
  for (int i = 0; i < R * C; ++i)
    in[i] = float(i);
  ElementwiseProgram prog({load(0)}, {0}, 1);
  ThreadPool pool(3);
  ThreadPoolScope scope(pool);
  runElementwise<float>(prog, {R, C}, {{in.data(), {1, R}}}, {{out.data(), plan::DType::BF16}});
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < C; ++j)
      ASSERT_EQ(out[i * C + j], roundToBF16(in[j * R + i]));
}

TEST(Elementwise, AllOpsAgreeWithTheirDefinitions) {
  std::vector<double> a = {-2.5, -0.0, 0.5, 3.0, NAN, 70000.0}, b = {1.5, 2.0, 0.5, -1.0, 1.0, 2.0};
  std::vector<double> c = {1, 0, 1, 0, 1, 0};
  auto run1 = [&](ScalarOp o) {
    int arity = scalarOpArity(o);
    ElementwiseProgram prog({load(0), load(1), load(2), op(o, 0, 1, 2)}, {3}, 3);
    (void)arity;
    std::vector<double> out(6);
    // Select reads its condition from a: feed c as a for it.
    const double *first = o == ScalarOp::Select ? c.data() : a.data();
    const double *second = o == ScalarOp::Select ? a.data() : b.data();
    const double *third = b.data();
    runElementwise<double>(prog, {6}, {{first, {1}}, {second, {1}}, {third, {1}}},
                           {{out.data(), plan::DType::F32}});
    return out;
  };
  auto same = [](double x, double y) { return (std::isnan(x) && std::isnan(y)) || x == y; };
  auto add = run1(ScalarOp::Add);
  auto mx = run1(ScalarOp::Max);
  auto relu = run1(ScalarOp::Relu);
  auto sel = run1(ScalarOp::Select);
  auto r16 = run1(ScalarOp::RoundF16);
  auto r32 = run1(ScalarOp::RoundF32);
  auto gt = run1(ScalarOp::CmpGt);
  auto fin = run1(ScalarOp::IsFinite);
  auto gelu = run1(ScalarOp::Gelu);
  for (int i = 0; i < 6; ++i) {
    EXPECT_TRUE(same(add[i], a[i] + b[i]));
    EXPECT_TRUE(same(mx[i], std::isnan(a[i]) ? a[i] : std::max(a[i], b[i])));
    EXPECT_TRUE(same(relu[i], std::isnan(a[i]) ? a[i] : std::max(a[i], 0.0)));
    EXPECT_TRUE(same(sel[i], c[i] != 0 ? a[i] : b[i]));
    EXPECT_TRUE(same(r16[i], roundToF16(a[i])));
    EXPECT_TRUE(same(r32[i], double(float(a[i]))));
    EXPECT_EQ(gt[i], a[i] > b[i] ? 1.0 : 0.0);
    EXPECT_EQ(fin[i], std::isfinite(a[i]) ? 1.0 : 0.0);
  }
  EXPECT_TRUE(std::isinf(r16[5])); // 70000 overflows fp16
  EXPECT_NEAR(gelu[3], 3.0 * 0.5 * (1 + std::erf(3.0 / std::sqrt(2.0))), 1e-15);
}

TEST(Elementwise, InPlaceUpdateAndLongProgramReusesRegisters) {
  // p = p - lr * g, written into p itself (the optimizer pattern), with a chain of
  // 100 adds of 1 in between to exercise column reuse: p_new = p - 0.5 g + 100.
  std::vector<float> p(1000), g(1000);
  for (int i = 0; i < 1000; ++i) {
    p[i] = float(i);
    g[i] = 2.0f;
  }
  std::vector<Instr> prog = {
      load(0), load(1), cnst(0.5f), op(ScalarOp::Mul, 1, 2), op(ScalarOp::Sub, 0, 3), cnst(1.0f)};
  int last = 4;
  for (int k = 0; k < 100; ++k) {
    prog.push_back(op(ScalarOp::Add, last, 5));
    last = int(prog.size()) - 1;
  }
  ElementwiseProgram program(prog, {last}, 2);
  EXPECT_LE(program.numSlots(), 5); // 106 registers in a handful of columns
  runElementwise<float>(program, {1000}, {{p.data(), {1}}, {g.data(), {1}}},
                        {{p.data(), plan::DType::F32}});
  for (int i = 0; i < 1000; ++i)
    ASSERT_EQ(p[i], float(i) - 1.0f + 100.0f);
}

TEST(Elementwise, RejectsMalformedPrograms) {
  EXPECT_THROW(ElementwiseProgram({op(ScalarOp::Add, 0, 1)}, {0}, 0), Error); // forward ref
  EXPECT_THROW(ElementwiseProgram({load(3)}, {0}, 1), Error);                 // input 3 of 1
  EXPECT_THROW(ElementwiseProgram({Instr(200, 0, 0, 0, 0)}, {0}, 0), Error);  // op index
  EXPECT_THROW(ElementwiseProgram({load(0)}, {1}, 1), Error);                 // output reg
  EXPECT_EQ(ElementwiseProgram::check(nullptr, 0, {}, 0), "");
}
