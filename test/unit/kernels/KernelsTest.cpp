// Kernels against naive references and hand-computed values.
#include "runtime/kernels/Kernels.h"
#include "common/Error.h"
#include "runtime/kernels/Parallel.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

using namespace mantissa;
using namespace mantissa::kernels;

namespace {

template <class T> std::vector<T> randomVector(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<T> v(n);
  for (auto &x : v)
    x = T(dist(rng));
  return v;
}

template <class T> double dot(const std::vector<T> &a, const std::vector<T> &b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i)
    s += double(a[i]) * double(b[i]);
  return s;
}

/// The convolution as written in the schema, one output element at a time.
std::vector<double> naiveConv(const ConvShape &s, const std::vector<double> &x,
                              const std::vector<double> &w) {
  std::vector<double> y(size_t(s.n * s.k * s.p() * s.q()), 0.0);
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t k = 0; k < s.k; ++k)
      for (int64_t p = 0; p < s.p(); ++p)
        for (int64_t q = 0; q < s.q(); ++q) {
          double acc = 0;
          for (int64_t c = 0; c < s.c; ++c)
            for (int64_t r = 0; r < s.r; ++r)
              for (int64_t t = 0; t < s.s; ++t) {
                int64_t ih = p * s.strideH + r - s.padH, iw = q * s.strideW + t - s.padW;
                if (ih >= 0 && ih < s.h && iw >= 0 && iw < s.w)
                  acc += x[((n * s.c + c) * s.h + ih) * s.w + iw] *
                         w[((k * s.c + c) * s.r + r) * s.s + t];
              }
          y[((n * s.k + k) * s.p() + p) * s.q() + q] = acc;
        }
  return y;
}

std::vector<ConvShape> convShapes() {
  return {
      {2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1},  // same padding
      {3, 2, 8, 8, 5, 3, 2, 2, 1, 0, 1},  // strides, asymmetric kernel
      {1, 4, 5, 5, 2, 1, 1, 1, 1, 0, 0},  // 1x1
      {64, 2, 4, 4, 3, 2, 2, 2, 2, 0, 0}, // a batch handled as one im2col group
      {2, 1, 9, 7, 2, 4, 3, 3, 2, 2, 1},  // stride 3 with padding
  };
}

} // namespace

TEST(Gemm, AllTransposesMatchNaive) {
  const int64_t M = 5, N = 7, K = 3;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      auto a = randomVector<double>(M * K, 1), b = randomVector<double>(K * N, 2);
      auto c = randomVector<double>(M * N, 3), c0 = c;
      gemm<double>(ta, tb, M, N, K, 2.0, a.data(), b.data(), 0.5, c.data());
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double s = 0;
          for (int64_t l = 0; l < K; ++l)
            s += (ta ? a[l * M + i] : a[i * K + l]) * (tb ? b[j * K + l] : b[l * N + j]);
          EXPECT_NEAR(c[i * N + j], 2.0 * s + 0.5 * c0[i * N + j], 1e-12);
        }
    }
  // beta = 0 must not propagate NaN from C.
  std::vector<float> a = {1, 2}, b = {3, 4}, c = {NAN};
  gemm<float>(false, false, 1, 1, 2, 1.0f, a.data(), b.data(), 0.0f, c.data());
  EXPECT_EQ(c[0], 11.0f);
  // Strided batch: two 1x1x2 products.
  std::vector<float> A = {1, 2, 3, 4}, B = {5, 6, 7, 8}, C(2);
  gemmStridedBatched<float>(false, false, 1, 1, 2, 1.0f, A.data(), 2, B.data(), 2, 0.0f, C.data(),
                            1, 2);
  EXPECT_EQ(C[0], 17.0f);
  EXPECT_EQ(C[1], 53.0f);
}

TEST(Conv2d, ForwardMatchesDirectLoop) {
  for (const ConvShape &s : convShapes()) {
    auto x = randomVector<double>(size_t(s.n * s.c * s.h * s.w), 11);
    auto w = randomVector<double>(size_t(s.k * s.c * s.r * s.s), 12);
    std::vector<double> y(size_t(s.n * s.k * s.p() * s.q()), 7.0);
    conv2dForward<double>(s, x.data(), w.data(), y.data());
    auto ref = naiveConv(s, x, w);
    for (size_t i = 0; i < y.size(); ++i)
      ASSERT_NEAR(y[i], ref[i], 1e-12) << i;
    // accumulate adds to what is there
    conv2dForward<double>(s, x.data(), w.data(), y.data(), /*accumulate=*/true);
    for (size_t i = 0; i < y.size(); ++i)
      ASSERT_NEAR(y[i], 2 * ref[i], 1e-12);
    // float agrees within float accuracy
    std::vector<float> xf(x.begin(), x.end()), wf(w.begin(), w.end()), yf(y.size());
    conv2dForward<float>(s, xf.data(), wf.data(), yf.data());
    for (size_t i = 0; i < y.size(); ++i)
      ASSERT_NEAR(yf[i], ref[i], 1e-5);
  }
}

TEST(Conv2d, HandComputed) {
  // 1x1x3x3 input 1..9, 2x2 kernel of ones, stride 1, no padding: window sums.
  ConvShape s{1, 1, 3, 3, 1, 2, 2, 1, 1, 0, 0};
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w = {1, 1, 1, 1}, y(4);
  conv2dForward<float>(s, x.data(), w.data(), y.data());
  EXPECT_EQ(y, (std::vector<float>{12, 16, 24, 28}));
}

TEST(Conv2d, BackwardIsTheAdjoint) {
  // <conv(x, w), dy> = <x, convBackInput(dy, w)> = <w, convBackWeight(x, dy)>.
  for (const ConvShape &s : convShapes()) {
    auto x = randomVector<double>(size_t(s.n * s.c * s.h * s.w), 21);
    auto w = randomVector<double>(size_t(s.k * s.c * s.r * s.s), 22);
    auto dy = randomVector<double>(size_t(s.n * s.k * s.p() * s.q()), 23);
    std::vector<double> y(dy.size()), dx(x.size(), 5.0), dw(w.size(), 5.0);
    conv2dForward<double>(s, x.data(), w.data(), y.data());
    conv2dBackwardInput<double>(s, dy.data(), w.data(), dx.data());
    conv2dBackwardWeight<double>(s, x.data(), dy.data(), dw.data());
    double lhs = dot(y, dy);
    EXPECT_NEAR(dot(x, dx), lhs, 1e-10 * std::max(1.0, std::fabs(lhs)));
    EXPECT_NEAR(dot(w, dw), lhs, 1e-10 * std::max(1.0, std::fabs(lhs)));
    // accumulate
    auto dx2 = dx;
    conv2dBackwardInput<double>(s, dy.data(), w.data(), dx2.data(), true);
    for (size_t i = 0; i < dx.size(); ++i)
      ASSERT_NEAR(dx2[i], 2 * dx[i], 1e-12);
    auto dw2 = dw;
    conv2dBackwardWeight<double>(s, x.data(), dy.data(), dw2.data(), true);
    for (size_t i = 0; i < dw.size(); ++i)
      ASSERT_NEAR(dw2[i], 2 * dw[i], 1e-10);
  }
}

TEST(Conv2d, ManyGroupsAndThreadCountsGiveSameBits) {
  // Big enough that the batch is split into several im2col groups.
  ConvShape s{40, 8, 64, 64, 8, 3, 3, 1, 1, 1, 1};
  auto x = randomVector<float>(size_t(s.n * s.c * s.h * s.w), 31);
  auto w = randomVector<float>(size_t(s.k * s.c * s.r * s.s), 32);
  std::vector<float> y1(size_t(s.n * s.k * s.p() * s.q())), y2(y1.size());
  {
    ThreadPool pool(1);
    ThreadPoolScope scope(pool);
    conv2dForward<float>(s, x.data(), w.data(), y1.data());
  }
  {
    ThreadPool pool(3);
    ThreadPoolScope scope(pool);
    conv2dForward<float>(s, x.data(), w.data(), y2.data());
  }
  EXPECT_EQ(y1, y2);
  std::vector<double> xd(x.begin(), x.end()), wd(w.begin(), w.end());
  auto ref = naiveConv(s, xd, wd);
  for (size_t i = 0; i < ref.size(); i += 97)
    ASSERT_NEAR(y1[i], ref[i], 1e-4);
}

TEST(MaxPool2d, ForwardBackward) {
  // One 4x5 plane, kernel = stride = 2: output 2x2 (the last column is dropped).
  PoolShape s{1, 1, 4, 5, 2, 2};
  std::vector<float> x = {1, 3,  2, 0, 9, //
                          4, 2,  8, 8, 9, //
                          5, 5,  1, 0, 9, //
                          0, -1, 7, 6, 9};
  std::vector<float> y(4);
  std::vector<int32_t> idx(4);
  maxPool2dForward<float>(s, x.data(), y.data(), idx.data());
  EXPECT_EQ(y, (std::vector<float>{4, 8, 5, 7}));
  // Ties keep the first index (5 at (2,0) and (2,1); 8 at (1,2) and (1,3)).
  EXPECT_EQ(idx, (std::vector<int32_t>{5, 7, 10, 17}));
  std::vector<float> dy = {1, 2, 3, 4}, dx(20, 99.0f);
  maxPool2dBackward<float>(s, dy.data(), x.data(), y.data(), dx.data());
  std::vector<float> expect(20, 0.0f);
  expect[5] = 1;
  expect[7] = 2;
  expect[10] = 3;
  expect[17] = 4;
  EXPECT_EQ(dx, expect);
  // A NaN in the window wins, as in PyTorch.
  std::vector<float> xn = {1, NAN, 3, 2};
  PoolShape s1{1, 1, 2, 2, 2, 2};
  maxPool2dForward<float>(s1, xn.data(), y.data(), idx.data());
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_EQ(idx[0], 1);
}

// The gradient finds each window's argmax again from x and y: it must be the element
// the forward picked (its indices, the oracle), through ties, ±0, -inf and NaNs (the
// last NaN), with overlapping windows; and the backward equals the scatter of dy to
// those indices, windows in order.
TEST(MaxPool2d, ArgmaxFoundAgainIsTheForwardsPick) {
  const float values[] = {0.0f, -0.0f, 1.0f, 1.0f, -1.0f, -INFINITY, NAN, 2.0f};
  for (PoolShape s :
       {PoolShape{2, 3, 7, 6, 2, 2}, PoolShape{2, 3, 7, 6, 3, 1}, PoolShape{1, 2, 9, 9, 3, 2}}) {
    const int64_t in = s.n * s.c * s.h * s.w, out = s.n * s.c * s.oh() * s.ow();
    for (uint64_t seed = 1; seed <= 40; ++seed) {
      std::vector<float> x(static_cast<size_t>(in)), y(static_cast<size_t>(out));
      uint64_t state = seed * 0x9E3779B97F4A7C15ull;
      for (float &v : x) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        // NaNs only in some seeds, so that most windows test ties among numbers.
        int pick = int(state >> 61);
        v = values[pick == 6 && seed % 3 ? 3 : pick];
      }
      std::vector<int32_t> idx(static_cast<size_t>(out));
      maxPool2dForward<float>(s, x.data(), y.data(), idx.data());
      std::vector<float> yNoIndices(static_cast<size_t>(out));
      maxPool2dForward<float>(s, x.data(), yNoIndices.data(), nullptr);
      const int64_t hw = s.h * s.w, ohw = s.oh() * s.ow();
      for (int64_t pl = 0; pl < s.n * s.c; ++pl)
        for (int64_t i = 0; i < s.oh(); ++i)
          for (int64_t j = 0; j < s.ow(); ++j) {
            const int64_t o = pl * ohw + i * s.ow() + j;
            ASSERT_EQ(maxPool2dArgmax<float>(s, x.data() + pl * hw, i, j, y[size_t(o)]),
                      idx[size_t(o)])
                << "seed " << seed << " plane " << pl << " window " << i << "," << j;
            ASSERT_EQ(std::memcmp(&y[size_t(o)], &yNoIndices[size_t(o)], sizeof(float)), 0);
          }
      std::vector<float> dy(static_cast<size_t>(out)), dx(static_cast<size_t>(in)),
          expect(static_cast<size_t>(in), 0.0f);
      for (size_t o = 0; o < dy.size(); ++o)
        dy[o] = float(o % 7) - 2.5f;
      for (int64_t pl = 0; pl < s.n * s.c; ++pl)
        for (int64_t o = 0; o < ohw; ++o)
          expect[size_t(pl * hw + idx[size_t(pl * ohw + o)])] += dy[size_t(pl * ohw + o)];
      maxPool2dBackward<float>(s, dy.data(), x.data(), y.data(), dx.data());
      ASSERT_EQ(dx, expect) << "seed " << seed;
    }
  }
}

TEST(BatchNorm, TrainForwardMatchesNaive) {
  BatchNormShape s{3, 2, 4};
  auto x = randomVector<double>(24, 41);
  std::vector<double> gamma = {1.5, -0.5}, beta = {0.25, 1.0};
  std::vector<double> y(24), mean(2), invstd(2), rm = {0.5, -0.5}, rv = {2.0, 3.0};
  const double eps = 1e-5, mom = 0.1;
  batchNormTrainForward<double>(s, x.data(), gamma.data(), beta.data(), y.data(), mean.data(),
                                invstd.data(), rm.data(), rv.data(), eps, mom);
  for (int c = 0; c < 2; ++c) {
    double m = 0, v = 0;
    for (int n = 0; n < 3; ++n)
      for (int j = 0; j < 4; ++j)
        m += x[(n * 2 + c) * 4 + j];
    m /= 12;
    for (int n = 0; n < 3; ++n)
      for (int j = 0; j < 4; ++j)
        v += (x[(n * 2 + c) * 4 + j] - m) * (x[(n * 2 + c) * 4 + j] - m);
    double biased = v / 12, unbiased = v / 11;
    EXPECT_NEAR(mean[c], m, 1e-14);
    EXPECT_NEAR(invstd[c], 1 / std::sqrt(biased + eps), 1e-12);
    EXPECT_NEAR(rm[c], 0.9 * (c == 0 ? 0.5 : -0.5) + 0.1 * m, 1e-14);
    EXPECT_NEAR(rv[c], 0.9 * (c == 0 ? 2.0 : 3.0) + 0.1 * unbiased, 1e-14);
    for (int n = 0; n < 3; ++n)
      for (int j = 0; j < 4; ++j) {
        int i = (n * 2 + c) * 4 + j;
        EXPECT_NEAR(y[i], (x[i] - m) / std::sqrt(biased + eps) * gamma[c] + beta[c], 1e-12);
      }
  }
  // Eval forward uses the running statistics.
  std::vector<double> ye(24);
  batchNormEvalForward<double>(s, x.data(), gamma.data(), beta.data(), rm.data(), rv.data(),
                               ye.data(), eps);
  // element 5 is (n 0, channel 1, position 1)
  EXPECT_NEAR(ye[5], (x[5] - rm[1]) / std::sqrt(rv[1] + eps) * gamma[1] + beta[1], 1e-12);
  // One value per channel cannot be normalised in training.
  BatchNormShape one{1, 2, 1};
  EXPECT_THROW(batchNormTrainForward<double>(one, x.data(), nullptr, nullptr, y.data(), nullptr,
                                             nullptr, nullptr, nullptr, eps, mom),
               Error);
}

TEST(BatchNorm, BackwardMatchesFiniteDifferences) {
  // loss = sum(y * g) for a fixed g; check dx, dgamma, dbeta numerically in double.
  BatchNormShape s{2, 3, 5};
  const size_t N = 30;
  auto x = randomVector<double>(N, 51), g = randomVector<double>(N, 52);
  std::vector<double> gamma = {0.7, 1.3, -0.4}, beta = {0.1, 0.2, 0.3};
  auto loss = [&](const std::vector<double> &xv, const std::vector<double> &gv,
                  const std::vector<double> &bv) {
    std::vector<double> y(N), m(3), is(3), rm(3, 0.0), rv(3, 1.0);
    batchNormTrainForward<double>(s, xv.data(), gv.data(), bv.data(), y.data(), m.data(), is.data(),
                                  rm.data(), rv.data(), 1e-5, 0.1);
    return dot(y, g);
  };
  std::vector<double> y(N), m(3), is(3), rm(3, 0.0), rv(3, 1.0), dx(N), dgamma(3), dbeta(3);
  batchNormTrainForward<double>(s, x.data(), gamma.data(), beta.data(), y.data(), m.data(),
                                is.data(), rm.data(), rv.data(), 1e-5, 0.1);
  batchNormBackward<double>(s, g.data(), x.data(), gamma.data(), m.data(), is.data(), dx.data(),
                            dgamma.data(), dbeta.data());
  const double h = 1e-6;
  for (size_t i = 0; i < N; ++i) {
    auto xp = x, xm = x;
    xp[i] += h;
    xm[i] -= h;
    EXPECT_NEAR(dx[i], (loss(xp, gamma, beta) - loss(xm, gamma, beta)) / (2 * h), 1e-6) << i;
  }
  for (size_t c = 0; c < 3; ++c) {
    auto gp = gamma, gm = gamma, bp = beta, bm = beta;
    gp[c] += h;
    gm[c] -= h;
    bp[c] += h;
    bm[c] -= h;
    EXPECT_NEAR(dgamma[c], (loss(x, gp, beta) - loss(x, gm, beta)) / (2 * h), 1e-6);
    EXPECT_NEAR(dbeta[c], (loss(x, gamma, bp) - loss(x, gamma, bm)) / (2 * h), 1e-6);
  }
}

TEST(SoftmaxCrossEntropy, ValuesAndGradient) {
  // Row 0: logits (0, 0), label 1 -> log 2. Row 1: (ln 3, 0, 0)... use (1, 2, 3) for c = 2? keep
  // c = 3: row 0 = (0, 0, 0) label 2 -> ln 3; row 1 = (ln 2, 0, 0) label 0 -> ln(4/2) = ln 2.
  std::vector<double> logits = {0, 0, 0, std::log(2.0), 0, 0}, labels = {2, 0};
  double loss = softmaxCrossEntropy<double>(2, 3, logits.data(), labels.data());
  EXPECT_NEAR(loss, (std::log(3.0) + std::log(2.0)) / 2, 1e-15);
  std::vector<double> d(6);
  softmaxCrossEntropyBackward<double>(2, 3, logits.data(), labels.data(), 4.0, d.data());
  // (softmax - onehot) * dloss / n = (p - y) * 2.
  std::vector<double> expect = {2.0 / 3, 2.0 / 3, -4.0 / 3, (0.5 - 1) * 2, 0.25 * 2, 0.25 * 2};
  for (int i = 0; i < 6; ++i)
    EXPECT_NEAR(d[i], expect[i], 1e-15);
  // Large logits stay finite (max subtraction).
  std::vector<float> big = {1000.f, 0.f}, lab = {0.f};
  EXPECT_NEAR(softmaxCrossEntropy<float>(1, 2, big.data(), lab.data()), 0.0f, 1e-6);
  // Out-of-range and non-integer labels name the row.
  std::vector<double> bad = {2, 3};
  try {
    softmaxCrossEntropy<double>(2, 3, logits.data(), bad.data());
    FAIL() << "no error";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("row 1"), std::string::npos) << e.what();
  }
  std::vector<double> frac = {0.5, 1};
  EXPECT_THROW(softmaxCrossEntropy<double>(2, 3, logits.data(), frac.data()), Error);
  std::vector<double> neg = {-1, 1};
  EXPECT_THROW(softmaxCrossEntropyBackward<double>(2, 3, logits.data(), neg.data(), 1.0, d.data()),
               Error);
}

TEST(Mse, ForwardBackward) {
  std::vector<float> a = {1, 2, 3, 4}, b = {0, 2, 5, 4}, da(4);
  EXPECT_FLOAT_EQ(mseLoss<float>(4, a.data(), b.data()), (1 + 0 + 4 + 0) / 4.0f);
  mseLossBackward<float>(4, a.data(), b.data(), 2.0f, da.data());
  EXPECT_EQ(da, (std::vector<float>{1.0f, 0.0f, -2.0f, 0.0f}));
}

TEST(DataMovement, Reduce) {
  // in [2, 3, 2] = 0..11
  std::vector<double> in(12);
  for (int i = 0; i < 12; ++i)
    in[i] = i;
  std::vector<double> out(3);
  reduce<double>({2, 3, 2}, {1, 3, 1}, false, in.data(), out.data());
  EXPECT_EQ(out, (std::vector<double>{0 + 1 + 6 + 7, 2 + 3 + 8 + 9, 4 + 5 + 10 + 11}));
  std::vector<double> o2(2);
  reduce<double>({2, 3, 2}, {2, 1, 1}, true, in.data(), o2.data());
  EXPECT_EQ(o2, (std::vector<double>{15.0 / 6, 51.0 / 6}));
  std::vector<double> o3(4);
  reduce<double>({2, 3, 2}, {2, 1, 2}, false, in.data(), o3.data());
  EXPECT_EQ(o3, (std::vector<double>{6, 9, 24, 27}));
  std::vector<double> o4(1);
  reduce<double>({2, 3, 2}, {1, 1, 1}, false, in.data(), o4.data());
  EXPECT_EQ(o4[0], 66);
  std::vector<double> o5(12);
  reduce<double>({2, 3, 2}, {2, 3, 2}, false, in.data(), o5.data());
  EXPECT_EQ(o5, in);
}

TEST(DataMovement, ConcatSliceTransposeCopyAllFinite) {
  std::vector<float> a = {1, 2, 3, 4}, b = {5, 6}, out(6);
  concat<float>(2, {2, 1}, {a.data(), b.data()}, out.data());
  EXPECT_EQ(out, (std::vector<float>{1, 2, 5, 3, 4, 6}));
  std::vector<float> s(2);
  slice<float>(2, 3, 1, 1, out.data(), s.data());
  EXPECT_EQ(s, (std::vector<float>{2, 4}));
  // [2, 3] -> [3, 2]
  std::vector<float> t = {1, 2, 3, 4, 5, 6}, tt(6);
  transpose<float>({2, 3}, {1, 0}, t.data(), tt.data());
  EXPECT_EQ(tt, (std::vector<float>{1, 4, 2, 5, 3, 6}));
  // [2, 2, 3] with perm (2, 0, 1): out[k][i][j] = in[i][j][k]
  std::vector<float> u(12), ut(12);
  for (int i = 0; i < 12; ++i)
    u[i] = float(i);
  transpose<float>({2, 2, 3}, {2, 0, 1}, u.data(), ut.data());
  EXPECT_EQ(ut, (std::vector<float>{0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11}));
  std::vector<float> c(6);
  copy<float>(6, t.data(), c.data());
  EXPECT_EQ(c, t);
  EXPECT_TRUE(allFinite<float>(6, t.data()));
  t[4] = INFINITY;
  EXPECT_FALSE(allFinite<float>(6, t.data()));
  t[4] = NAN;
  EXPECT_FALSE(allFinite<float>(6, t.data()));
  // Times a multiplier, rounded to float: 65504 (the largest f16) x 1e33 is finite,
  // x 1e35 is not; a NaN stays one whatever it is multiplied by.
  std::vector<float> g = {65504.0f, -3.0f};
  const float small = 1.0f / 65536, fits = 1e33f, overflows = 1e35f, zero = 0.0f;
  EXPECT_TRUE(allFinite<float>(2, g.data(), &small));
  EXPECT_TRUE(allFinite<float>(2, g.data(), &fits));
  EXPECT_FALSE(allFinite<float>(2, g.data(), &overflows));
  EXPECT_FALSE(allFinite<float>(6, t.data(), &zero));
  EXPECT_FALSE(
      allFinite<double>(1, std::vector<double>{1e300}.data(), std::vector<double>{1e10}.data()));
}
