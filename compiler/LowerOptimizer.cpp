//===- LowerOptimizer.cpp - gradients to optimizer updates -----------------===//
//
// Replaces the gradients @train_step returns by torch.optim-style updates of the
// parameters: the optimizer state becomes graph.buffers (kind "optimizer") named
// as PyTorch's state dict names them, and every new value is written back with a
// graph.assign. The updates take a finite flag that insert-loss-scaling replaces.
//===----------------------------------------------------------------------===//
#include "compiler/PassUtils.h"
#include "compiler/Passes.h"

#include "mantissa/Graph/GraphOps.h"

#include "llvm/ADT/StringMap.h"

#include <cmath>

namespace mantissa {
#define GEN_PASS_DEF_LOWEROPTIMIZER
#include "compiler/Passes.h.inc"
} // namespace mantissa

using namespace mlir;
using namespace mantissa;
using namespace mantissa::graph;

namespace {

/// The optimizer a run of the pass builds, its options checked.
struct Optimizer {
  enum Kind { Sgd, Adam, AdamW } kind;
  double weightDecay;
};

class LowerOptimizerPass : public mantissa::impl::LowerOptimizerBase<LowerOptimizerPass> {
public:
  using LowerOptimizerBase::LowerOptimizerBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    FailureOr<Optimizer> opt = checkOptions(module);
    FailureOr<func::FuncOp> step = getFunction(module, "train_step", "lower-optimizer");
    if (failed(opt) || failed(step) || failed(lower(*step, *opt)))
      return signalPassFailure();
  }

private:
  FailureOr<Optimizer> checkOptions(ModuleOp module) {
    Optimizer opt;
    if (optimizer == "sgd")
      opt.kind = Optimizer::Sgd;
    else if (optimizer == "adam")
      opt.kind = Optimizer::Adam;
    else if (optimizer == "adamw")
      opt.kind = Optimizer::AdamW;
    else
      return module.emitError() << "lower-optimizer: unknown optimizer '" << optimizer
                                << "' (expected sgd, adam or adamw)";
    // PyTorch's defaults: weight decay 0 for SGD and Adam, 0.01 for AdamW.
    opt.weightDecay = weightDecay == -1.0 ? (opt.kind == Optimizer::AdamW ? 0.01 : 0.0) : weightDecay;
    auto invalid = [&](StringRef what) {
      return module.emitError() << "lower-optimizer: invalid option: " << what;
    };
    // Written so that NaN fails every test: a NaN or infinite hyper-parameter would
    // otherwise reach the plan (or an unrelated error in emit-plan, NaN != NaN).
    auto nonNegative = [](double v) { return v >= 0.0 && std::isfinite(v); };
    if (!nonNegative(lr))
      return invalid("lr must be a finite number >= 0");
    if (!nonNegative(opt.weightDecay))
      return invalid("weight-decay must be a finite number >= 0");
    if (opt.kind == Optimizer::Sgd) {
      if (!nonNegative(momentum))
        return invalid("momentum must be a finite number >= 0");
      if (!std::isfinite(dampening))
        return invalid("dampening must be a finite number");
      if (nesterov && (momentum <= 0.0 || dampening != 0.0))
        return invalid("nesterov needs a momentum and zero dampening");
    } else {
      if (!(beta1 >= 0.0 && beta1 < 1.0 && beta2 >= 0.0 && beta2 < 1.0))
        return invalid("beta1 and beta2 must be in [0, 1)");
      if (!nonNegative(eps))
        return invalid("eps must be a finite number >= 0");
    }
    return opt;
  }

  LogicalResult lower(func::FuncOp fn, const Optimizer &opt) {
    MLIRContext *ctx = fn.getContext();
    Block &body = fn.getBody().front();
    auto ret = cast<func::ReturnOp>(body.getTerminator());

    llvm::StringMap<ParamOp> params;
    llvm::StringMap<BufferOp> buffers;
    for (Operation &op : body) {
      if (auto p = dyn_cast<ParamOp>(op))
        params.try_emplace(p.getName(), p);
      if (auto buf = dyn_cast<BufferOp>(op))
        buffers.try_emplace(buf.getName(), buf);
    }

    struct Gradient {
      ParamOp param;
      Value grad;
    };
    SmallVector<Gradient> grads;
    SmallVector<Value> kept;
    SmallVector<DictionaryAttr> keptAttrs;
    for (auto [i, value] : llvm::enumerate(ret.getOperands())) {
      auto of = fn.getResultAttrOfType<StringAttr>(i, "graph.grad_of");
      if (!of) {
        kept.push_back(value);
        DictionaryAttr attrs = fn.getResultAttrDict(i);
        keptAttrs.push_back(attrs ? attrs : DictionaryAttr::get(ctx));
        continue;
      }
      auto it = params.find(of.getValue());
      if (it == params.end())
        return fn.emitError() << "lower-optimizer: result " << i << " is the gradient of \"" << of.getValue()
                              << "\", but @train_step has no graph.param of that name";
      grads.push_back({it->second, value});
    }
    if (grads.empty())
      return fn.emitError("lower-optimizer: @train_step returns no gradients (results marked "
                          "graph.grad_of); run --autodiff first");

    // The optimizer state, read at the start of the step.
    OpBuilder b = OpBuilder::atBlockBegin(&body);
    Location loc = fn.getLoc();
    auto scalar = RankedTensorType::get({}, Float32Type::get(ctx));
    auto buffer = [&](StringRef name, Type type) -> FailureOr<Value> {
      if (buffers.count(name))
        return fn.emitError() << "lower-optimizer: @train_step already has a buffer \"" << name
                              << "\" (was the optimizer lowered twice?)";
      return BufferOp::create(b, loc, type, name, "zeros", FloatAttr(), "optimizer").getResult();
    };
    FailureOr<Value> count = buffer("optimizer.step", scalar);
    if (failed(count))
      return failure();
    struct State {
      Value first, second; // momentum_buffer, or exp_avg and exp_avg_sq
    };
    SmallVector<State> states;
    for (Gradient &g : grads) {
      std::string name = g.param.getName().str();
      Type type = g.param.getType();
      State state;
      if (opt.kind == Optimizer::Sgd) {
        // torch.optim.SGD keeps no momentum buffer without momentum; the
        // update's buffer operand is then the parameter, a placeholder that the
        // update does not read (and its new-buffer result is unused).
        if (momentum != 0.0) {
          FailureOr<Value> buf = buffer(name + ".momentum_buffer", type);
          if (failed(buf))
            return failure();
          state.first = *buf;
        }
      } else {
        FailureOr<Value> m = buffer(name + ".exp_avg", type);
        if (failed(m))
          return failure();
        FailureOr<Value> v = buffer(name + ".exp_avg_sq", type);
        if (failed(v))
          return failure();
        state = {*m, *v};
      }
      states.push_back(state);
    }

    // The updates, at the end of the step.
    b.setInsertionPoint(ret);
    auto finite = ConstantOp::create(b, loc, scalar, b.getF64FloatAttr(1.0));
    finite->setAttr("graph.finite_flag", b.getUnitAttr());
    for (auto [g, state] : llvm::zip(grads, states)) {
      Location ploc = g.param.getLoc();
      Value param = g.param.getResult();
      Value grad = castToElement(b, ploc, g.grad, g.param.getType().getElementType());
      StringRef name = g.param.getName();
      if (opt.kind == Optimizer::Sgd) {
        Value buf = state.first ? state.first : param;
        auto update = SgdUpdateOp::create(b, ploc, param, grad, buf, finite, *count, APFloat(lr.getValue()),
                                          APFloat(momentum.getValue()), APFloat(dampening.getValue()),
                                          APFloat(opt.weightDecay), nesterov);
        AssignOp::create(b, ploc, name, update.getNewParam());
        if (state.first)
          AssignOp::create(b, ploc, (name + ".momentum_buffer").str(), update.getNewMomentumBuffer());
      } else {
        auto update = AdamUpdateOp::create(b, ploc, param, grad, state.first, state.second, finite, *count,
                                           APFloat(lr.getValue()), APFloat(beta1.getValue()),
                                           APFloat(beta2.getValue()), APFloat(eps.getValue()),
                                           APFloat(opt.weightDecay), opt.kind == Optimizer::AdamW);
        AssignOp::create(b, ploc, name, update.getNewParam());
        AssignOp::create(b, ploc, (name + ".exp_avg").str(), update.getNewExpAvg());
        AssignOp::create(b, ploc, (name + ".exp_avg_sq").str(), update.getNewExpAvgSq());
      }
    }
    // The step count advances only on applied (finite) steps.
    Value next = AddOp::create(b, loc, *count, finite);
    AssignOp::create(b, loc, "optimizer.step", next);

    func::ReturnOp::create(b, ret.getLoc(), kept);
    ret.erase();
    fn.setType(FunctionType::get(ctx, fn.getArgumentTypes(), ValueRange(kept).getTypes()));
    fn.setAllResultAttrs(keptAttrs);
    return success();
  }
};

} // namespace
