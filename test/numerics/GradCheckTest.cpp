//===- GradCheckTest.cpp - gradients against central finite differences ----===//
//
// The acceptance check of the whole gradient chain: the `autodiff` pass (the
// gradient rules), `lower-optimizer`, plan emission and the CPU kernels. Each
// case is a small model whose parameters feed the op under test (inputs of the
// op are parameters too, so every differentiable operand gets a gradient) and a
// scalar loss (mse against a fixed graph.input, or softmax cross-entropy).
//
// Pipeline per case: parse -> assign-precision (fp32) -> autodiff ->
// lower-optimizer (sgd, lr = 1, momentum 0) -> emitPlan -> LoadedPlan ->
// CpuExecutor<double> (the f64 reference mode: fp32 tensors are not rounded).
// One train_step with lr = 1 gives the gradient as p_before - p_after; central
// differences (L(p + h e_i) - L(p - h e_i)) / 2h, with the loss read from
// train_step's output 0 and every parameter (and all other state) reset before
// each evaluation, are the oracle. Relative error ||fd - g|| / ||g|| <= 1e-6 per
// parameter. Values are chosen away from kinks (relu inputs away from 0,
// well-separated max-pool windows, positive log inputs, denominators away from 0).
//===----------------------------------------------------------------------===//
#include "compiler/Passes.h"
#include "compiler/PlanBuilder.h"
#include "mantissa/Graph/GraphOps.h"
#include "runtime/cpu/CpuBackend.h"
#include "runtime/cpu/PlanLoader.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using namespace mantissa;

namespace {

constexpr double kStep = 1e-6;    // central-difference step
constexpr double kTolerance = 1e-6; // ||fd - g|| / ||g||

//===----------------------------------------------------------------------===//
// Building the model text
//===----------------------------------------------------------------------===//

using Shape = std::vector<int64_t>;

std::string ty(const Shape &s, const char *elem = "f32") {
  std::string t = "tensor<";
  for (int64_t d : s)
    t += std::to_string(d) + "x";
  return t + elem + ">";
}

std::string i64s(const Shape &s) {
  std::string t = "array<i64: ";
  for (size_t i = 0; i < s.size(); ++i)
    t += (i ? ", " : "") + std::to_string(s[i]);
  return t + ">";
}

std::string param(const std::string &var, const std::string &name, const Shape &s) {
  return "    %" + var + " = graph.param \"" + name + "\" {init = \"zeros\"} : " + ty(s) + "\n";
}

std::string input(const std::string &var, const std::string &name, const Shape &s,
                  const char *elem = "f32") {
  return "    %" + var + " = graph.input \"" + name + "\" : " + ty(s, elem) + "\n";
}

/// The module around `body`, which defines %loss and %out (of type `outType`).
std::string module(const std::string &name, const std::string &body, const std::string &outType) {
  return "module attributes {graph.model = \"" + name + "\"} {\n"
         "  func.func @forward() -> (tensor<f32>, " + outType + ") {\n" +
         body + "    return %loss, %out : tensor<f32>, " + outType + "\n  }\n}\n";
}

/// `%loss = mse(%out, %x)` with the target %x declared as the input "x".
std::string mseTail(const Shape &out) {
  return input("x", "x", out) + "    %loss = graph.mse %out, %x : " + ty(out) + ", " + ty(out) +
         " -> tensor<f32>\n";
}

Shape broadcast(Shape a, Shape b) {
  if (a.size() < b.size())
    std::swap(a, b);
  Shape r = a;
  size_t lead = a.size() - b.size();
  for (size_t i = 0; i < b.size(); ++i)
    r[lead + i] = a[lead + i] == 1 ? b[i] : a[lead + i];
  return r;
}

//===----------------------------------------------------------------------===//
// Values
//===----------------------------------------------------------------------===//

enum class Dist {
  Uniform,      // uniform in [lo, hi)
  AwayFromZero, // random sign times uniform in [lo, hi)
  Distinct,     // a random permutation of lo + k * hi (k = 0, 1, ...): well separated
  Labels,       // integers in [0, lo)
};

struct Gen {
  Dist dist = Dist::Uniform;
  double lo = -1.0, hi = 1.0;
};

Gen uniform(double lo, double hi) { return {Dist::Uniform, lo, hi}; }
Gen awayFromZero(double lo, double hi) { return {Dist::AwayFromZero, lo, hi}; }
Gen distinct(double start, double step) { return {Dist::Distinct, start, step}; }
Gen labels(int classes) { return {Dist::Labels, double(classes), 0.0}; }

std::vector<double> generate(const Gen &g, size_t n, std::mt19937_64 &rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> v(n);
  switch (g.dist) {
  case Dist::Uniform:
    for (double &x : v)
      x = g.lo + (g.hi - g.lo) * u(rng);
    break;
  case Dist::AwayFromZero:
    for (double &x : v)
      x = (u(rng) < 0.5 ? -1.0 : 1.0) * (g.lo + (g.hi - g.lo) * u(rng));
    break;
  case Dist::Distinct: {
    std::vector<size_t> perm(n);
    std::iota(perm.begin(), perm.end(), size_t(0));
    std::shuffle(perm.begin(), perm.end(), rng);
    for (size_t i = 0; i < n; ++i)
      v[i] = g.lo + g.hi * double(perm[i]);
    break;
  }
  case Dist::Labels:
    for (double &x : v)
      x = std::floor(g.lo * u(rng));
    break;
  }
  return v;
}

struct Case {
  std::string name;
  std::string mlir;
  std::map<std::string, Gen> gens; // by parameter / input name; default uniform(-1, 1)
  // Parameters whose gradient is exactly zero in exact arithmetic (e.g. a conv bias
  // followed by batch-norm): both g and the central differences must vanish.
  std::set<std::string> zeroGrad = {};
  // Optional: changes the generated values of a tensor (by name).
  std::function<void(const std::string &, std::vector<double> &)> adjust = {};
};

void PrintTo(const Case &c, std::ostream *os) { *os << c.name; }

//===----------------------------------------------------------------------===//
// Compiling and running
//===----------------------------------------------------------------------===//

/// parse -> assign-precision (fp32) -> autodiff -> lower-optimizer (sgd, lr 1) -> emitPlan.
/// Empty on failure, with the diagnostics in `errors`.
std::vector<uint8_t> compile(const std::string &source, const std::string &name,
                             std::string &errors) {
  mlir::DialectRegistry registry;
  registry.insert<graph::GraphDialect, mlir::func::FuncDialect>();
  mlir::MLIRContext context(registry);
  context.loadAllAvailableDialects();
  context.disableMultithreading();
  llvm::raw_string_ostream os(errors);
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(llvm::MemoryBuffer::getMemBufferCopy(source, name), llvm::SMLoc());
  mlir::SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context, os);
  mlir::OwningOpRef<mlir::ModuleOp> mod = mlir::parseSourceFile<mlir::ModuleOp>(sourceMgr, &context);
  if (!mod)
    return {};
  mlir::PassManager pm(&context);
  AssignPrecisionOptions ap;
  ap.policy = "fp32";
  pm.addPass(createAssignPrecision(ap));
  pm.addPass(createAutodiff());
  LowerOptimizerOptions lo;
  lo.optimizer = "sgd";
  lo.lr = 1.0;
  lo.momentum = 0.0;
  lo.weightDecay = 0.0;
  pm.addPass(createLowerOptimizer(lo));
  if (mlir::failed(pm.run(*mod)))
    return {};
  PlanConfig config;
  config.policy = "fp32";
  config.source = name;
  mlir::FailureOr<std::vector<uint8_t>> bytes = emitPlan(*mod, config);
  if (mlir::failed(bytes))
    return {};
  return std::move(*bytes);
}

struct ParamResult {
  std::string name;
  size_t count = 0;
  double gradNorm = 0.0, relError = 0.0;
  bool finite = true;
};

class GradChecker {
public:
  GradChecker(std::vector<uint8_t> bytes, const std::string &name)
      : plan_(std::make_unique<LoadedPlan>(LoadedPlan::fromBytes(std::move(bytes), name))),
        exec_(std::make_unique<CpuExecutor<double>>(*plan_, /*threads=*/1)) {
    const auto &tensors = *(*plan_)->tensors();
    for (flatbuffers::uoffset_t id = 0; id < tensors.size(); ++id) {
      const plan::Tensor *t = tensors.Get(id);
      bool isIndex = t->dtype() == plan::DType::I32;
      initial_.push_back(isIndex ? std::vector<double>() : exec_->tensor(int(id)));
      initialIndex_.push_back(isIndex ? exec_->indexTensor(int(id)) : std::vector<int32_t>());
      if (t->role() == plan::Role::Param)
        params_.push_back(int(id));
      if (t->role() == plan::Role::Input)
        inputs_.push_back(int(id));
    }
    const plan::Function *train = plan_->findFunction("train_step");
    if (!train || !train->outputs() || train->outputs()->size() < 1)
      throw std::runtime_error("no train_step with a loss output");
    loss_ = train->outputs()->Get(0);
  }

  const std::vector<int> &params() const { return params_; }
  const std::vector<int> &inputs() const { return inputs_; }
  std::string tensorName(int id) const {
    const auto *n = (*plan_)->tensors()->Get(id)->name();
    return n ? n->str() : "#" + std::to_string(id);
  }
  size_t size(int id) const { return size_t(plan_->numElements(id)); }
  bool isIndex(int id) const {
    return (*plan_)->tensors()->Get(id)->dtype() == plan::DType::I32;
  }

  /// Restores every tensor, sets `values` (parameters and inputs), runs train_step.
  /// Returns the loss; the parameters then hold their updated values.
  double step(const std::map<int, std::vector<double>> &values) {
    for (size_t id = 0; id < initial_.size(); ++id) {
      if (isIndex(int(id)))
        exec_->indexTensor(int(id)) = initialIndex_[id];
      else
        exec_->tensor(int(id)) = initial_[id];
    }
    for (const auto &[id, v] : values) {
      if (isIndex(id)) {
        auto &dst = exec_->indexTensor(id);
        for (size_t i = 0; i < v.size(); ++i)
          dst[i] = int32_t(v[i]);
      } else {
        exec_->tensor(id) = v;
      }
    }
    exec_->run("train_step");
    return exec_->tensor(loss_)[0];
  }

  const std::vector<double> &value(int id) const { return exec_->tensor(id); }

private:
  std::unique_ptr<LoadedPlan> plan_;
  std::unique_ptr<CpuExecutor<double>> exec_;
  std::vector<std::vector<double>> initial_;
  std::vector<std::vector<int32_t>> initialIndex_;
  std::vector<int> params_, inputs_;
  int loss_ = -1;
};

/// Runs the gradient check of one case; returns one result per parameter.
std::vector<ParamResult> gradCheck(const Case &c) {
  std::string errors;
  std::vector<uint8_t> bytes = compile(c.mlir, c.name + ".mlir", errors);
  if (bytes.empty()) {
    ADD_FAILURE() << "case " << c.name << " does not compile:\n" << errors << "\n" << c.mlir;
    return {};
  }
  GradChecker gc(std::move(bytes), c.name);
  std::mt19937_64 rng(std::hash<std::string>()(c.name) ^ 0x5eedULL);
  std::map<int, std::vector<double>> values;
  auto fill = [&](int id) {
    std::string name = gc.tensorName(id);
    auto it = c.gens.find(name);
    Gen g = it != c.gens.end() ? it->second : uniform(-1.0, 1.0);
    values[id] = generate(g, gc.size(id), rng);
    if (c.adjust)
      c.adjust(name, values[id]);
  };
  for (int id : gc.inputs())
    fill(id);
  for (int id : gc.params())
    fill(id);
  EXPECT_FALSE(gc.params().empty()) << c.name << ": no parameters";

  // The gradient: one step with lr = 1.
  double loss = gc.step(values);
  EXPECT_TRUE(std::isfinite(loss)) << c.name << ": loss " << loss;
  std::map<int, std::vector<double>> grads;
  for (int id : gc.params()) {
    const std::vector<double> &after = gc.value(id);
    std::vector<double> g(after.size());
    for (size_t i = 0; i < g.size(); ++i)
      g[i] = values[id][i] - after[i];
    grads[id] = std::move(g);
  }

  std::vector<ParamResult> results;
  for (int id : gc.params()) {
    ParamResult r;
    r.name = gc.tensorName(id);
    r.count = gc.size(id);
    const std::vector<double> &g = grads[id];
    double diff2 = 0.0, norm2 = 0.0, fdNorm2 = 0.0;
    for (size_t i = 0; i < g.size(); ++i) {
      std::map<int, std::vector<double>> plus = values, minus = values;
      plus[id][i] += kStep;
      minus[id][i] -= kStep;
      double fd = (gc.step(plus) - gc.step(minus)) / (2.0 * kStep);
      r.finite = r.finite && std::isfinite(fd) && std::isfinite(g[i]);
      diff2 += (fd - g[i]) * (fd - g[i]);
      norm2 += g[i] * g[i];
      fdNorm2 += fd * fd;
    }
    r.gradNorm = std::sqrt(norm2);
    if (c.zeroGrad.count(r.name)) {
      // Roundoff only: |g| at the level of double epsilon, |fd| of eps * loss / h.
      std::printf("[gradcheck] %-32s %-24s n=%-4zu |g|=%-10.4g |fd|=%.3g (zero expected)\n",
                  c.name.c_str(), r.name.c_str(), r.count, r.gradNorm, std::sqrt(fdNorm2));
      EXPECT_TRUE(r.finite) << c.name << " / " << r.name << ": NaN or inf";
      EXPECT_LE(r.gradNorm, 1e-12) << c.name << " / " << r.name << ": expected a zero gradient";
      EXPECT_LE(std::sqrt(fdNorm2), 1e-8) << c.name << " / " << r.name << ": expected a zero gradient";
      results.push_back(r);
      continue;
    }
    r.relError = norm2 > 0 ? std::sqrt(diff2 / norm2) : (diff2 > 0 ? INFINITY : 0.0);
    std::printf("[gradcheck] %-32s %-24s n=%-4zu |g|=%-10.4g rel_err=%.3g\n", c.name.c_str(),
                r.name.c_str(), r.count, r.gradNorm, r.relError);
    EXPECT_TRUE(r.finite) << c.name << " / " << r.name << ": NaN or inf";
    EXPECT_GT(r.gradNorm, 0.0) << c.name << " / " << r.name << ": the gradient is all zeros";
    EXPECT_LE(r.relError, kTolerance) << c.name << " / " << r.name << ": ||fd - g|| / ||g||";
    results.push_back(r);
  }
  std::fflush(stdout);
  return results;
}

//===----------------------------------------------------------------------===//
// The cases
//===----------------------------------------------------------------------===//

Case linearCase(bool bias) {
  Shape in = {4, 3}, w = {5, 3}, b = {5}, out = {4, 5};
  std::string body = param("in", "in", in) + param("w", "w", w) + (bias ? param("b", "b", b) : "");
  body += "    %out = graph.linear %in, %w" + std::string(bias ? ", %b" : "") + " : " + ty(in) +
          ", " + ty(w) + (bias ? ", " + ty(b) : "") + " -> " + ty(out) + "\n";
  body += mseTail(out);
  std::string name = bias ? "linear_bias" : "linear_nobias";
  return {name, module(name, body, ty(out)), {}};
}

Case matmulCase(bool ta, bool tb) {
  int64_t m = 3, k = 4, n = 2;
  Shape a = ta ? Shape{k, m} : Shape{m, k}, b = tb ? Shape{n, k} : Shape{k, n}, out = {m, n};
  std::string body = param("a", "a", a) + param("b", "b", b);
  body += "    %out = graph.matmul %a, %b {transpose_a = " + std::string(ta ? "true" : "false") +
          ", transpose_b = " + (tb ? "true" : "false") + "} : " + ty(a) + ", " + ty(b) + " -> " +
          ty(out) + "\n";
  body += mseTail(out);
  std::string name = std::string("matmul_") + (ta ? "T" : "N") + (tb ? "T" : "N");
  return {name, module(name, body, ty(out)), {}};
}

std::string shapeName(const Shape &s) {
  if (s.empty())
    return "scalar";
  std::string n;
  for (size_t i = 0; i < s.size(); ++i)
    n += (i ? "x" : "") + std::to_string(s[i]);
  return n;
}

Case binaryCase(const std::string &op, const Shape &a, const Shape &b) {
  Shape out = broadcast(a, b);
  std::string body = param("a", "a", a) + param("b", "b", b);
  body += "    %out = graph." + op + " %a, %b : " + ty(a) + ", " + ty(b) + " -> " + ty(out) + "\n";
  body += mseTail(out);
  std::string name = op + "_" + shapeName(a) + "_" + shapeName(b);
  Case c{name, module(name, body, ty(out)), {}};
  if (op == "div")
    c.gens["b"] = awayFromZero(0.5, 1.5);
  return c;
}

Case unaryCase(const std::string &op, Gen gen) {
  Shape s = {3, 4};
  std::string body = param("a", "a", s);
  body += "    %out = graph." + op + " %a : " + ty(s) + "\n";
  body += mseTail(s);
  return {op, module(op, body, ty(s)), {{"a", gen}}};
}

Shape convOut(const Shape &x, const Shape &w, const Shape &stride, const Shape &pad) {
  return {x[0], w[0], (x[2] + 2 * pad[0] - w[2]) / stride[0] + 1,
          (x[3] + 2 * pad[1] - w[3]) / stride[1] + 1};
}

Case convCase(const std::string &name, Shape x, Shape w, bool bias, Shape stride, Shape pad) {
  Shape out = convOut(x, w, stride, pad), b = {w[0]};
  std::string body = param("in", "in", x) + param("w", "w", w) + (bias ? param("b", "b", b) : "");
  body += "    %out = graph.conv2d %in, %w" + std::string(bias ? ", %b" : "") + " {padding = " +
          i64s(pad) + ", stride = " + i64s(stride) + "} : " + ty(x) + ", " + ty(w) +
          (bias ? ", " + ty(b) : "") + " -> " + ty(out) + "\n";
  body += mseTail(out);
  return {name, module(name, body, ty(out)), {}};
}

Case convTransposeCase(const std::string &name, Shape x, Shape w, bool bias, Shape stride,
                       Shape pad) {
  Shape out = {x[0], w[1], (x[2] - 1) * stride[0] - 2 * pad[0] + w[2],
               (x[3] - 1) * stride[1] - 2 * pad[1] + w[3]};
  Shape b = {w[1]};
  std::string body = param("in", "in", x) + param("w", "w", w) + (bias ? param("b", "b", b) : "");
  body += "    %out = graph.conv_transpose2d %in, %w" + std::string(bias ? ", %b" : "") +
          " {padding = " + i64s(pad) + ", stride = " + i64s(stride) + "} : " + ty(x) + ", " +
          ty(w) + (bias ? ", " + ty(b) : "") + " -> " + ty(out) + "\n";
  body += mseTail(out);
  return {name, module(name, body, ty(out)), {}};
}

Case maxPoolCase(const std::string &name, Shape x, int64_t k, int64_t s) {
  Shape out = {x[0], x[1], (x[2] - k) / s + 1, (x[3] - k) / s + 1};
  std::string body = param("in", "in", x);
  body += "    %out, %idx = graph.max_pool2d %in {kernel = " + std::to_string(k) +
          " : i64, stride = " + std::to_string(s) + " : i64} : " + ty(x) + " -> " + ty(out) +
          ", " + ty(out, "i32") + "\n";
  body += mseTail(out);
  // Distinct values 0.05 apart: no ties within a window, far beyond the FD step.
  return {name, module(name, body, ty(out)), {{"in", distinct(-1.0, 0.05)}}};
}

Case batchNormCase(const std::string &name, Shape x) {
  Shape c = {x[1]};
  std::string body = param("in", "in", x) + param("g", "bn.weight", c) + param("b", "bn.bias", c);
  body += "    %rm = graph.buffer \"bn.running_mean\" {init = \"zeros\"} : " + ty(c) + "\n";
  body += "    %rv = graph.buffer \"bn.running_var\" {init = \"ones\"} : " + ty(c) + "\n";
  body += "    %out, %mean, %istd, %rm2, %rv2 = graph.batch_norm %in, %g, %b, %rm, %rv "
          "{training = true} : " +
          ty(x) + ", " + ty(c) + ", " + ty(c) + ", " + ty(c) + ", " + ty(c) + " -> " + ty(x) +
          ", " + ty(c) + ", " + ty(c) + ", " + ty(c) + ", " + ty(c) + "\n";
  body += "    graph.assign \"bn.running_mean\", %rm2 : " + ty(c) + "\n";
  body += "    graph.assign \"bn.running_var\", %rv2 : " + ty(c) + "\n";
  body += mseTail(x);
  return {name, module(name, body, ty(x)), {{"bn.weight", uniform(0.5, 1.5)}}};
}

Case concatCase(const std::string &name, std::vector<Shape> ins, int64_t axis) {
  Shape out = ins[0];
  out[axis] = 0;
  for (const Shape &s : ins)
    out[axis] += s[axis];
  std::string body, operands, types;
  for (size_t i = 0; i < ins.size(); ++i) {
    std::string v = "p" + std::to_string(i);
    body += param(v, v, ins[i]);
    operands += (i ? ", %" : "%") + v;
    types += (i ? ", " : "") + ty(ins[i]);
  }
  body += "    %out = graph.concat " + operands + " {axis = " + std::to_string(axis) +
          " : i64} : " + types + " -> " + ty(out) + "\n";
  body += mseTail(out);
  return {name, module(name, body, ty(out)), {}};
}

Case sliceCase() {
  Shape x = {2, 5, 3}, out = {2, 3, 3};
  std::string body = param("in", "in", x);
  body += "    %out = graph.slice %in {axis = 1 : i64, offset = 1 : i64, size = 3 : i64} : " +
          ty(x) + " -> " + ty(out) + "\n";
  body += mseTail(out);
  return {"slice", module("slice", body, ty(out)), {}};
}

Case reshapeCase() {
  Shape x = {2, 3, 4}, out = {4, 6};
  std::string body = param("in", "in", x);
  body += "    %out = graph.reshape %in : " + ty(x) + " to " + ty(out) + "\n";
  body += mseTail(out);
  return {"reshape", module("reshape", body, ty(out)), {}};
}

Case transposeCase() {
  Shape x = {2, 3, 4}, out = {4, 2, 3};
  std::string body = param("in", "in", x);
  body += "    %out = graph.transpose %in {perm = array<i64: 2, 0, 1>} : " + ty(x) + " -> " +
          ty(out) + "\n";
  body += mseTail(out);
  return {"transpose", module("transpose", body, ty(out)), {}};
}

Case reduceCase(const std::string &op, Shape axes, bool keepdim) {
  Shape x = {2, 3, 4}, out;
  for (int64_t d = 0; d < int64_t(x.size()); ++d) {
    bool reduced = std::find(axes.begin(), axes.end(), d) != axes.end();
    if (!reduced)
      out.push_back(x[d]);
    else if (keepdim)
      out.push_back(1);
  }
  std::string body = param("in", "in", x);
  body += "    %out = graph." + op + " %in {axes = " + i64s(axes) +
          ", keepdim = " + (keepdim ? "true" : "false") + "} : " + ty(x) + " -> " + ty(out) + "\n";
  body += mseTail(out);
  std::string name = op + "_axes";
  for (int64_t a : axes)
    name += std::to_string(a);
  name += keepdim ? "_keepdim" : "";
  return {name, module(name, body, ty(out)), {}};
}

Case broadcastToCase(Shape in, Shape out) {
  std::string body = param("in", "in", in);
  body += "    %out = graph.broadcast_to %in : " + ty(in) + " to " + ty(out) + "\n";
  body += mseTail(out);
  std::string name = "broadcast_to_" + shapeName(in) + "_" + shapeName(out);
  return {name, module(name, body, ty(out)), {}};
}

Case softmaxCrossEntropyCase() {
  // logits = p + x: the gradient reaches the logits (a parameter) directly.
  Shape s = {4, 5};
  std::string body = param("p", "logits", s) + input("x", "x", s) + input("y", "y", {4}, "i32");
  body += "    %out = graph.add %p, %x : " + ty(s) + ", " + ty(s) + " -> " + ty(s) + "\n";
  body += "    %loss = graph.softmax_cross_entropy %out, %y : " + ty(s) + ", " + ty({4}, "i32") +
          " -> tensor<f32>\n";
  return {"softmax_cross_entropy", module("softmax_cross_entropy", body, ty(s)),
          {{"y", labels(5)}, {"logits", uniform(-2.0, 2.0)}}};
}

Case softmaxCrossEntropyLinearCase() {
  // As the classifiers use it: linear(x) -> softmax cross-entropy.
  Shape x = {6, 3}, w = {4, 3}, b = {4}, z = {6, 4};
  std::string body = input("x", "x", x) + input("y", "y", {6}, "i32") + param("w", "fc.weight", w) +
                     param("b", "fc.bias", b);
  body += "    %out = graph.linear %x, %w, %b : " + ty(x) + ", " + ty(w) + ", " + ty(b) + " -> " +
          ty(z) + "\n";
  body += "    %loss = graph.softmax_cross_entropy %out, %y : " + ty(z) + ", " + ty({6}, "i32") +
          " -> tensor<f32>\n";
  return {"softmax_cross_entropy_linear", module("sce_linear", body, ty(z)), {{"y", labels(4)}}};
}

Case mseCase() {
  // mse(p + x, q): both operands of the loss depend on parameters.
  Shape s = {2, 3};
  std::string body = param("p", "p", s) + param("q", "q", s) + input("x", "x", s);
  body += "    %out = graph.add %p, %x : " + ty(s) + ", " + ty(s) + " -> " + ty(s) + "\n";
  body += "    %loss = graph.mse %out, %q : " + ty(s) + ", " + ty(s) + " -> tensor<f32>\n";
  return {"mse_both_operands", module("mse", body, ty(s)), {}};
}

Case weightedLossSumCase() {
  // loss = 3 sce(p + x, y) + 0.5 mse(q, x): the loss ops' backward kernels see an
  // incoming adjoint other than 1.
  Shape s = {4, 5};
  std::string body = param("p", "p", s) + param("q", "q", s) + input("x", "x", s) +
                     input("y", "y", {4}, "i32");
  body += "    %out = graph.add %p, %x : " + ty(s) + ", " + ty(s) + " -> " + ty(s) + "\n";
  body += "    %ce = graph.softmax_cross_entropy %out, %y : " + ty(s) + ", " + ty({4}, "i32") +
          " -> tensor<f32>\n";
  body += "    %se = graph.mse %q, %x : " + ty(s) + ", " + ty(s) + " -> tensor<f32>\n";
  body += "    %c3 = graph.constant 3.0 : tensor<f32>\n";
  body += "    %ch = graph.constant 0.5 : tensor<f32>\n";
  body += "    %a = graph.mul %ce, %c3 : tensor<f32>, tensor<f32> -> tensor<f32>\n";
  body += "    %b = graph.mul %ch, %se : tensor<f32>, tensor<f32> -> tensor<f32>\n";
  body += "    %loss = graph.add %a, %b : tensor<f32>, tensor<f32> -> tensor<f32>\n";
  return {"weighted_loss_sum", module("weighted_loss_sum", body, ty(s)), {{"y", labels(5)}}};
}

Case compositionCase() {
  // t = tanh(p); out = t * p + t: p and t are each used twice (adjoints accumulate).
  Shape s = {3, 4};
  std::string body = param("p", "p", s);
  body += "    %t = graph.tanh %p : " + ty(s) + "\n";
  body += "    %m = graph.mul %t, %p : " + ty(s) + ", " + ty(s) + " -> " + ty(s) + "\n";
  body += "    %out = graph.add %m, %t : " + ty(s) + ", " + ty(s) + " -> " + ty(s) + "\n";
  body += mseTail(s);
  return {"composition_value_used_twice", module("composition", body, ty(s)), {}};
}

Case sharedParamCase() {
  // The same parameter name declared twice (two graph.param ops): gradients add up.
  Shape s = {2, 3};
  std::string body = param("p1", "p", s) + param("p2", "p", s);
  body += "    %e = graph.exp %p1 : " + ty(s) + "\n";
  body += "    %out = graph.mul %e, %p2 : " + ty(s) + ", " + ty(s) + " -> " + ty(s) + "\n";
  body += mseTail(s);
  return {"param_declared_twice", module("shared_param", body, ty(s)), {}};
}

Case tinyCnnCase() {
  // cnn_digits in miniature: conv3x3(1->2) ReLU maxpool2 -> conv3x3(2->3) ReLU maxpool2 ->
  // linear(12->4), softmax cross-entropy; batch 3, 1x8x8 images.
  const char *src = R"(
module attributes {graph.model = "tiny_cnn", graph.task = "classification", graph.num_classes = 4 : i64} {
  func.func @forward() -> (tensor<f32>, tensor<3x4xf32>) {
    %x = graph.input "x" : tensor<3x1x8x8xf32>
    %y = graph.input "y" : tensor<3xi32>
    %w1 = graph.param "conv1.weight" {init = "uniform", bound = 0.3333333333333333} : tensor<2x1x3x3xf32>
    %b1 = graph.param "conv1.bias" {init = "uniform", bound = 0.3333333333333333} : tensor<2xf32>
    %w2 = graph.param "conv2.weight" {init = "uniform", bound = 0.23570226039551587} : tensor<3x2x3x3xf32>
    %b2 = graph.param "conv2.bias" {init = "uniform", bound = 0.23570226039551587} : tensor<3xf32>
    %w3 = graph.param "fc.weight" {init = "uniform", bound = 0.2886751345948129} : tensor<4x12xf32>
    %b3 = graph.param "fc.bias" {init = "uniform", bound = 0.2886751345948129} : tensor<4xf32>
    %c1 = graph.conv2d %x, %w1, %b1 {graph.name = "conv1", padding = array<i64: 1, 1>} : tensor<3x1x8x8xf32>, tensor<2x1x3x3xf32>, tensor<2xf32> -> tensor<3x2x8x8xf32>
    %r1 = graph.relu %c1 : tensor<3x2x8x8xf32>
    %p1, %i1 = graph.max_pool2d %r1 {graph.name = "pool1"} : tensor<3x2x8x8xf32> -> tensor<3x2x4x4xf32>, tensor<3x2x4x4xi32>
    %c2 = graph.conv2d %p1, %w2, %b2 {graph.name = "conv2", padding = array<i64: 1, 1>} : tensor<3x2x4x4xf32>, tensor<3x2x3x3xf32>, tensor<3xf32> -> tensor<3x3x4x4xf32>
    %r2 = graph.relu %c2 : tensor<3x3x4x4xf32>
    %p2, %i2 = graph.max_pool2d %r2 {graph.name = "pool2"} : tensor<3x3x4x4xf32> -> tensor<3x3x2x2xf32>, tensor<3x3x2x2xi32>
    %f = graph.reshape %p2 : tensor<3x3x2x2xf32> to tensor<3x12xf32>
    %z = graph.linear %f, %w3, %b3 {graph.name = "fc"} : tensor<3x12xf32>, tensor<4x12xf32>, tensor<4xf32> -> tensor<3x4xf32>
    %loss = graph.softmax_cross_entropy %z, %y {graph.name = "loss"} : tensor<3x4xf32>, tensor<3xi32> -> tensor<f32>
    return %loss, %z : tensor<f32>, tensor<3x4xf32>
  }
}
)";
  return {"tiny_cnn", src,
          {{"x", uniform(0.0, 1.0)},
           {"y", labels(4)},
           {"conv1.weight", uniform(-0.6, 0.6)},
           {"conv1.bias", uniform(-0.3, 0.3)},
           {"conv2.weight", uniform(-0.5, 0.5)},
           {"conv2.bias", uniform(-0.2, 0.2)},
           {"fc.weight", uniform(-0.5, 0.5)},
           {"fc.bias", uniform(-0.3, 0.3)}}};
}

Case tinyUnetCase() {
  // One U-Net level in miniature, as gen_unet.py writes it: conv3x3 -> batch-norm -> ReLU
  // (the skip), maxpool2, conv3x3 -> batch-norm -> ReLU, conv_transpose2x2 stride 2,
  // concat with the skip along channels, conv1x1, mse.
  const char *src = R"(
module attributes {graph.model = "tiny_unet", graph.task = "regression"} {
  func.func @forward() -> (tensor<f32>, tensor<2x1x4x4xf32>) {
    %x = graph.input "x" : tensor<2x2x4x4xf32>
    %y = graph.input "y" : tensor<2x1x4x4xf32>
    %w1 = graph.param "d.c1.weight" {init = "uniform", bound = 0.2357} : tensor<2x2x3x3xf32>
    %b1 = graph.param "d.c1.bias" {init = "uniform", bound = 0.2357} : tensor<2xf32>
    %g1 = graph.param "d.b1.weight" {init = "ones"} : tensor<2xf32>
    %be1 = graph.param "d.b1.bias" {init = "zeros"} : tensor<2xf32>
    %rm1 = graph.buffer "d.b1.running_mean" {init = "zeros"} : tensor<2xf32>
    %rv1 = graph.buffer "d.b1.running_var" {init = "ones"} : tensor<2xf32>
    %w2 = graph.param "m.c1.weight" {init = "uniform", bound = 0.2357} : tensor<3x2x3x3xf32>
    %b2 = graph.param "m.c1.bias" {init = "uniform", bound = 0.2357} : tensor<3xf32>
    %g2 = graph.param "m.b1.weight" {init = "ones"} : tensor<3xf32>
    %be2 = graph.param "m.b1.bias" {init = "zeros"} : tensor<3xf32>
    %rm2 = graph.buffer "m.b1.running_mean" {init = "zeros"} : tensor<3xf32>
    %rv2 = graph.buffer "m.b1.running_var" {init = "ones"} : tensor<3xf32>
    %wu = graph.param "upconv.weight" {init = "uniform", bound = 0.3535} : tensor<3x2x2x2xf32>
    %bu = graph.param "upconv.bias" {init = "uniform", bound = 0.3535} : tensor<2xf32>
    %wo = graph.param "out.weight" {init = "uniform", bound = 0.5} : tensor<1x4x1x1xf32>
    %bo = graph.param "out.bias" {init = "uniform", bound = 0.5} : tensor<1xf32>
    %c1 = graph.conv2d %x, %w1, %b1 {padding = array<i64: 1, 1>} : tensor<2x2x4x4xf32>, tensor<2x2x3x3xf32>, tensor<2xf32> -> tensor<2x2x4x4xf32>
    %n1, %mean1, %istd1, %nrm1, %nrv1 = graph.batch_norm %c1, %g1, %be1, %rm1, %rv1 : tensor<2x2x4x4xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32> -> tensor<2x2x4x4xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
    graph.assign "d.b1.running_mean", %nrm1 : tensor<2xf32>
    graph.assign "d.b1.running_var", %nrv1 : tensor<2xf32>
    %s1 = graph.relu %n1 : tensor<2x2x4x4xf32>
    %p1, %i1 = graph.max_pool2d %s1 : tensor<2x2x4x4xf32> -> tensor<2x2x2x2xf32>, tensor<2x2x2x2xi32>
    %c2 = graph.conv2d %p1, %w2, %b2 {padding = array<i64: 1, 1>} : tensor<2x2x2x2xf32>, tensor<3x2x3x3xf32>, tensor<3xf32> -> tensor<2x3x2x2xf32>
    %n2, %mean2, %istd2, %nrm2, %nrv2 = graph.batch_norm %c2, %g2, %be2, %rm2, %rv2 : tensor<2x3x2x2xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32> -> tensor<2x3x2x2xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>, tensor<3xf32>
    graph.assign "m.b1.running_mean", %nrm2 : tensor<3xf32>
    graph.assign "m.b1.running_var", %nrv2 : tensor<3xf32>
    %r2 = graph.relu %n2 : tensor<2x3x2x2xf32>
    %u = graph.conv_transpose2d %r2, %wu, %bu {stride = array<i64: 2, 2>} : tensor<2x3x2x2xf32>, tensor<3x2x2x2xf32>, tensor<2xf32> -> tensor<2x2x4x4xf32>
    %cat = graph.concat %u, %s1 {axis = 1 : i64} : tensor<2x2x4x4xf32>, tensor<2x2x4x4xf32> -> tensor<2x4x4x4xf32>
    %o = graph.conv2d %cat, %wo, %bo : tensor<2x4x4x4xf32>, tensor<1x4x1x1xf32>, tensor<1xf32> -> tensor<2x1x4x4xf32>
    %loss = graph.mse %o, %y : tensor<2x1x4x4xf32>, tensor<2x1x4x4xf32> -> tensor<f32>
    return %loss, %o : tensor<f32>, tensor<2x1x4x4xf32>
  }
}
)";
  return {"tiny_unet", src,
          {{"d.b1.weight", uniform(0.5, 1.5)}, {"m.b1.weight", uniform(0.5, 1.5)},
           {"d.b1.bias", uniform(-0.5, 0.5)}, {"m.b1.bias", uniform(-0.5, 0.5)}},
          // A conv bias followed by batch-norm cancels in the normalisation.
          {"d.c1.bias", "m.c1.bias"}};
}

std::vector<Case> allCases() {
  std::vector<Case> cases;
  cases.push_back(linearCase(true));
  cases.push_back(linearCase(false));
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      cases.push_back(matmulCase(ta, tb));
  for (const char *op : {"add", "sub", "mul", "div"}) {
    cases.push_back(binaryCase(op, {2, 3}, {2, 3}));
    cases.push_back(binaryCase(op, {2, 3}, {3}));
    cases.push_back(binaryCase(op, {3}, {2, 3}));
    cases.push_back(binaryCase(op, {2, 1, 4}, {3, 1}));
    cases.push_back(binaryCase(op, {2, 3}, {}));
    cases.push_back(binaryCase(op, {}, {2, 3}));
  }
  cases.push_back(unaryCase("relu", awayFromZero(0.1, 1.0)));
  cases.push_back(unaryCase("gelu", uniform(-2.0, 2.0)));
  cases.push_back(unaryCase("sigmoid", uniform(-2.0, 2.0)));
  cases.push_back(unaryCase("tanh", uniform(-2.0, 2.0)));
  cases.push_back(unaryCase("exp", uniform(-1.0, 1.0)));
  cases.push_back(unaryCase("log", uniform(0.5, 2.0)));
  cases.push_back(unaryCase("neg", uniform(-1.0, 1.0)));
  cases.push_back(convCase("conv2d_s1_p1_bias", {2, 3, 5, 5}, {4, 3, 3, 3}, true, {1, 1}, {1, 1}));
  cases.push_back(convCase("conv2d_s2_p0", {2, 2, 5, 5}, {3, 2, 3, 3}, false, {2, 2}, {0, 0}));
  cases.push_back(convCase("conv2d_s2_p0_bias", {2, 2, 6, 6}, {3, 2, 3, 3}, true, {2, 2}, {0, 0}));
  cases.push_back(convCase("conv2d_kernel2x3_s1x2_p1x0_bias", {2, 2, 4, 7}, {3, 2, 2, 3}, true,
                           {1, 2}, {1, 0}));
  cases.push_back(convCase("conv2d_1x1_bias", {2, 3, 3, 3}, {2, 3, 1, 1}, true, {1, 1}, {0, 0}));
  cases.push_back(convTransposeCase("conv_transpose2d_k2_s2_bias", {2, 3, 3, 3}, {3, 2, 2, 2},
                                    true, {2, 2}, {0, 0}));
  cases.push_back(convTransposeCase("conv_transpose2d_k3_s2_p1", {1, 2, 3, 3}, {2, 3, 3, 3}, false,
                                    {2, 2}, {1, 1}));
  cases.push_back(maxPoolCase("max_pool2d_k2_s2", {2, 2, 4, 4}, 2, 2));
  {
    // 3x3 windows at stride 2 on 5x5 all contain the centre (2, 2); in plane 0 it is the
    // maximum of every window, so its gradient is the sum of four contributions.
    Case c = maxPoolCase("max_pool2d_k3_s2_overlapping", {1, 2, 5, 5}, 3, 2);
    c.adjust = [](const std::string &name, std::vector<double> &v) {
      if (name == "in")
        v[2 * 5 + 2] = 5.0;
    };
    cases.push_back(c);
  }
  cases.push_back(batchNormCase("batch_norm_4d", {3, 2, 2, 3}));
  cases.push_back(batchNormCase("batch_norm_2d", {5, 3}));
  cases.push_back(concatCase("concat_axis1_4d", {{2, 2, 2, 3}, {2, 3, 2, 3}}, 1));
  cases.push_back(concatCase("concat_axis2_three_inputs", {{2, 2, 1}, {2, 2, 3}, {2, 2, 2}}, 2));
  cases.push_back(sliceCase());
  cases.push_back(reshapeCase());
  cases.push_back(transposeCase());
  for (const char *op : {"reduce_sum", "reduce_mean"}) {
    cases.push_back(reduceCase(op, {1}, false));
    cases.push_back(reduceCase(op, {1}, true));
    cases.push_back(reduceCase(op, {0, 2}, false));
    cases.push_back(reduceCase(op, {0, 2}, true));
  }
  cases.push_back(broadcastToCase({3, 1}, {2, 3, 4}));
  cases.push_back(broadcastToCase({4}, {2, 3, 4}));
  cases.push_back(softmaxCrossEntropyCase());
  cases.push_back(softmaxCrossEntropyLinearCase());
  cases.push_back(mseCase());
  cases.push_back(weightedLossSumCase());
  cases.push_back(compositionCase());
  cases.push_back(sharedParamCase());
  cases.push_back(tinyCnnCase());
  cases.push_back(tinyUnetCase());
  return cases;
}

class GradCheck : public ::testing::TestWithParam<Case> {};

TEST_P(GradCheck, MatchesCentralDifferences) {
  try {
    gradCheck(GetParam());
  } catch (const std::exception &e) {
    FAIL() << GetParam().name << ": " << e.what() << "\n" << GetParam().mlir;
  }
}

INSTANTIATE_TEST_SUITE_P(Ops, GradCheck, ::testing::ValuesIn(allCases()),
                         [](const ::testing::TestParamInfo<Case> &info) { return info.param.name; });

// The model file itself compiles and its gradient matches on a few coordinates
// (the full check of a model this size runs as tiny_cnn above).
TEST(GradCheckModels, CnnDigitsFileSpotCheck) {
  std::string path = std::string(MANTISSA_SOURCE_DIR) + "/models/cnn_digits.mlir";
  auto file = llvm::MemoryBuffer::getFile(path);
  ASSERT_TRUE(bool(file)) << "cannot read " << path;
  std::string errors;
  std::vector<uint8_t> bytes = compile((*file)->getBuffer().str(), path, errors);
  ASSERT_FALSE(bytes.empty()) << errors;
  GradChecker gc(std::move(bytes), "cnn_digits");
  std::mt19937_64 rng(7);
  std::map<int, std::vector<double>> values;
  for (int id : gc.inputs())
    values[id] = generate(gc.tensorName(id) == "y" ? labels(10) : uniform(0.0, 1.0), gc.size(id), rng);
  for (int id : gc.params())
    values[id] = std::vector<double>(gc.value(id)); // the plan's seeded initialisation
  gc.step(values);
  std::map<int, std::vector<double>> grads;
  for (int id : gc.params()) {
    std::vector<double> g(gc.size(id));
    for (size_t i = 0; i < g.size(); ++i)
      g[i] = values[id][i] - gc.value(id)[i];
    grads[id] = std::move(g);
  }
  for (int id : gc.params()) {
    // The coordinates with the largest gradients (a relative check is meaningful there).
    std::vector<size_t> order(gc.size(id));
    std::iota(order.begin(), order.end(), size_t(0));
    std::partial_sort(order.begin(), order.begin() + std::min<size_t>(4, order.size()), order.end(),
                      [&](size_t a, size_t b) { return std::abs(grads[id][a]) > std::abs(grads[id][b]); });
    double diff2 = 0, norm2 = 0;
    for (size_t j = 0; j < std::min<size_t>(4, order.size()); ++j) {
      size_t i = order[j];
      auto plus = values, minus = values;
      plus[id][i] += kStep;
      minus[id][i] -= kStep;
      double fd = (gc.step(plus) - gc.step(minus)) / (2.0 * kStep);
      diff2 += (fd - grads[id][i]) * (fd - grads[id][i]);
      norm2 += grads[id][i] * grads[id][i];
    }
    double rel = std::sqrt(diff2 / norm2);
    std::printf("[gradcheck] %-32s %-24s n=%-4d |g|=%-10.4g rel_err=%.3g\n", "cnn_digits.mlir",
                gc.tensorName(id).c_str(), 4, std::sqrt(norm2), rel);
    EXPECT_GT(norm2, 0.0) << gc.tensorName(id);
    EXPECT_LE(rel, kTolerance) << gc.tensorName(id);
  }
}

} // namespace
