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

// Every scalar op against values worked out independently of ScalarOps.def: by hand
// (exact), or from Python's math module (the transcendental ones; results stored as F32),
// with NaN, infinities and rounding ties where the op has a rule for them. The table
// must name every op but Const and Load, so that a new op needs its row.
TEST(Elementwise, EveryScalarOpMatchesAHandWorkedTable) {
  const double inf = INFINITY, nan = NAN;
  struct Row {
    ScalarOp op;
    std::vector<double> a, b, c, want;
    bool exact = true;
  };
  const double e = 2.718281828459045;
  const std::vector<Row> rows = {
      {ScalarOp::Add, {1, -2.5, 1e308}, {2, 2.5, 1e308}, {}, {3, 0, inf}},
      {ScalarOp::Sub, {5, 1, inf}, {3, 1.5, inf}, {}, {2, -0.5, nan}},
      {ScalarOp::Mul, {3, 0, inf}, {-2, 5, 0}, {}, {-6, 0, nan}},
      {ScalarOp::Div, {1, 1, 0}, {4, 0, 0}, {}, {0.25, inf, nan}},
      {ScalarOp::Neg, {2, -0.5, inf}, {}, {}, {-2, 0.5, -inf}},
      {ScalarOp::Max, {1, nan, 1, -3}, {2, 1, nan, -4}, {}, {2, nan, nan, -3}},
      {ScalarOp::Min, {1, nan, 1, -3}, {2, 1, nan, -4}, {}, {1, nan, nan, -4}},
      {ScalarOp::Square, {-3, 0.5, 1e200}, {}, {}, {9, 0.25, inf}},
      {ScalarOp::Sqrt, {16, 2.25, -1}, {}, {}, {4, 1.5, nan}},
      {ScalarOp::Rsqrt, {4, 0.25, 0}, {}, {}, {0.5, 2, inf}},
      {ScalarOp::Recip, {8, -0.5, 0}, {}, {}, {0.125, -2, inf}},
      {ScalarOp::Pow, {2, 9, 0.5, -8}, {10, 0.5, -2, 1.0 / 3}, {}, {1024, 3, 4, nan}},
      {ScalarOp::Abs, {-2.5, 3, -inf}, {}, {}, {2.5, 3, inf}},
      {ScalarOp::Relu, {-1, 2, nan}, {}, {}, {0, 2, nan}},
      {ScalarOp::Exp, {0, 1, -inf}, {}, {}, {1, e, 0}, false},
      {ScalarOp::Log, {1, 8, 0, -1}, {}, {}, {0, 2.0794415416798357, -inf, nan}, false},
      {ScalarOp::Tanh, {0, 0.5, inf}, {}, {}, {0, 0.46211715726000974, 1}, false},
      {ScalarOp::Sigmoid, {0, 2, -inf}, {}, {}, {0.5, 0.8807970779778823, 0}, false},
      {ScalarOp::Gelu, {0, 1, -1}, {}, {}, {0, 0.8413447460685429, -0.15865525393145707}, false},
      // Phi(x) + x phi(x): Phi(1) = 0.8413447460685429, phi(1) = 0.24197072451914337.
      {ScalarOp::GeluDeriv, {0, 1}, {}, {}, {0.5, 1.0833154705876864}, false},
      {ScalarOp::CmpGt, {2, 1, nan}, {1, 1, 0}, {}, {1, 0, 0}},
      {ScalarOp::CmpGe, {2, 1, nan}, {2, 2, nan}, {}, {1, 0, 0}},
      {ScalarOp::CmpEq, {2, 1, nan}, {2, 2, nan}, {}, {1, 0, 0}},
      {ScalarOp::IsFinite, {1, inf, nan}, {}, {}, {1, 0, 0}},
      {ScalarOp::Select, {1, 0, nan}, {10, 10, 10}, {20, 20, 20}, {10, 20, 10}},
      // fp16: 1 + 2^-11 is a tie, to even (1); 70000 is beyond 65504 (inf).
      {ScalarOp::RoundF16, {1 + 0x1p-11, 1 + 3 * 0x1p-11, 70000}, {}, {}, {1, 1 + 0x1p-9, inf}},
      // bf16: 1 + 2^-8 is a tie, to even (1); 1 + 3 x 2^-9 is nearer 1 + 2^-7.
      {ScalarOp::RoundBF16, {1 + 0x1p-8, 1 + 3 * 0x1p-9, 3.5e38}, {}, {}, {1, 1 + 0x1p-7, inf}},
      {ScalarOp::RoundF32,
       {0.1, 1 + 0x1p-24, 1e39},
       {},
       {},
       {0.100000001490116119384765625, 1, inf}},
  };
  std::vector<bool> covered(kNumScalarOps, false);
  for (const Row &r : rows) {
    covered[size_t(r.op)] = true;
    const size_t n = r.a.size();
    auto fill = [&](const std::vector<double> &v) {
      return v.empty() ? std::vector<double>(n, 0.0) : v;
    };
    std::vector<double> a = fill(r.a), b = fill(r.b), c = fill(r.c), out(n);
    ElementwiseProgram prog({load(0), load(1), load(2), op(r.op, 0, 1, 2)}, {3}, 3);
    runElementwise<double>(prog, {int64_t(n)}, {{a.data(), {1}}, {b.data(), {1}}, {c.data(), {1}}},
                           {{out.data(), plan::DType::F32}});
    for (size_t i = 0; i < n; ++i) {
      const double want = double(float(r.want[i])); // stored as F32
      if (std::isnan(want))
        EXPECT_TRUE(std::isnan(out[i])) << scalarOpName(r.op) << " element " << i << ": " << out[i];
      else if (r.exact || std::isinf(want) || want == 0)
        EXPECT_EQ(out[i], want) << scalarOpName(r.op) << " element " << i;
      else
        EXPECT_NEAR(out[i], want, 1e-7 * std::fabs(want)) << scalarOpName(r.op) << " element " << i;
    }
  }
  for (int o = 0; o < kNumScalarOps; ++o)
    if (ScalarOp(o) != ScalarOp::Const && ScalarOp(o) != ScalarOp::Load)
      EXPECT_TRUE(covered[size_t(o)]) << scalarOpName(ScalarOp(o)) << " has no row";
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
