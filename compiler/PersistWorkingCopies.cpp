//===- PersistWorkingCopies.cpp - the persist-working-copies pass ---------===//
//
// A parameter's low-precision cast becomes a persistent working copy that the
// optimizer update writes (Passes.td).
//===----------------------------------------------------------------------===//
#include "compiler/PassUtils.h"
#include "compiler/Passes.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"

#include <set>

namespace mantissa {
#define GEN_PASS_DEF_PERSISTWORKINGCOPIES
#include "compiler/Passes.h.inc"
} // namespace mantissa

using namespace mlir;
using namespace mantissa::graph;

namespace {

std::string copyName(StringRef param, Type element) {
  return (param + (element.isF16() ? ":f16" : ":bf16")).str();
}

/// The low-precision casts of `param` in its function, by element type.
SmallVector<CastOp> lowPrecisionCasts(ParamOp param) {
  SmallVector<CastOp> casts;
  for (Operation *user : param.getResult().getUsers())
    if (auto cast = dyn_cast<CastOp>(user)) {
      Type element = cast.getResult().getType().getElementType();
      if (element.isF16() || element.isBF16())
        casts.push_back(cast);
    }
  return casts;
}

/// Replaces `cast` by the working copy `name` of `param` (one per function and name).
void readCopy(ParamOp param, CastOp cast, const std::string &name, llvm::StringMap<Value> &copies) {
  Value &copy = copies[name];
  if (!copy) {
    OpBuilder b(param->getContext());
    b.setInsertionPointAfter(param);
    copy =
        WorkingCopyOp::create(b, cast.getLoc(), cast.getResult().getType(), name, param.getName())
            .getResult();
  }
  cast.getResult().replaceAllUsesWith(copy);
  cast.erase();
}

struct PersistWorkingCopiesPass
    : mantissa::impl::PersistWorkingCopiesBase<PersistWorkingCopiesPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    FailureOr<func::FuncOp> train =
        mantissa::getFunction(module, "train_step", "persist-working-copies");
    if (failed(train))
      return signalPassFailure();
    // The master's one assign in @train_step (the optimizer update).
    llvm::StringMap<AssignOp> assignOf;
    llvm::StringSet<> assignedTwice;
    train->walk([&](AssignOp a) {
      if (!assignOf.try_emplace(a.getName(), a).second)
        assignedTwice.insert(a.getName());
    });
    for (const auto &name : assignedTwice)
      assignOf.erase(name.getKey());

    std::set<std::string> persisted;
    llvm::StringMap<Value> trainCopies;
    SmallVector<ParamOp> params;
    train->walk([&](ParamOp p) { params.push_back(p); });
    for (ParamOp param : params) {
      auto assign = assignOf.find(param.getName());
      if (assign == assignOf.end())
        continue; // frozen: cast every step
      AssignOp update = assign->second;
      for (CastOp cast : lowPrecisionCasts(param)) {
        // Every reader must come before the update writes the copy.
        bool early = true;
        for (Operation *user : cast.getResult().getUsers())
          early &= user->getBlock() == update->getBlock() && user->isBeforeInBlock(update);
        if (!early)
          continue;
        auto type = cast.getResult().getType();
        std::string name = copyName(param.getName(), type.getElementType());
        if (trainCopies.count(name) == 0) {
          OpBuilder b(update);
          b.setInsertionPointAfter(update);
          Value next = CastOp::create(b, update.getLoc(), type, update.getValue()).getResult();
          AssignOp::create(b, update.getLoc(), name, next);
        }
        readCopy(param, cast, name, trainCopies);
        persisted.insert(name);
      }
    }

    // eval_step (@forward) reads the copies that @train_step keeps.
    auto forward = module.lookupSymbol<func::FuncOp>("forward");
    if (!forward)
      return;
    llvm::StringMap<Value> evalCopies;
    params.clear();
    forward.walk([&](ParamOp p) { params.push_back(p); });
    for (ParamOp param : params)
      for (CastOp cast : lowPrecisionCasts(param)) {
        std::string name = copyName(param.getName(), cast.getResult().getType().getElementType());
        if (persisted.count(name))
          readCopy(param, cast, name, evalCopies);
      }
  }
};

} // namespace
