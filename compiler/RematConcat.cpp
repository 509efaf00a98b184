//===- RematConcat.cpp - the remat-concat pass ----------------------------===//
//
// Later uses of a concatenation's input read a slice of the concatenation instead,
// so that the input is not kept twice (Passes.td).
//===----------------------------------------------------------------------===//
#include "compiler/Passes.h"

#include "mlir/IR/Builders.h"

namespace mantissa {
#define GEN_PASS_DEF_REMATCONCAT
#include "compiler/Passes.h.inc"
} // namespace mantissa

using namespace mlir;
using namespace mantissa::graph;

namespace {

struct RematConcatPass : mantissa::impl::RematConcatBase<RematConcatPass> {
  void runOnOperation() override {
    getOperation().walk([](func::FuncOp fn) {
      SmallVector<ConcatOp> concats;
      fn.walk([&](ConcatOp c) { concats.push_back(c); });
      for (ConcatOp cat : concats) {
        const int64_t axis = cat.getAxis();
        int64_t offset = 0;
        for (Value input : cat.getInputs()) {
          const int64_t size = cast<RankedTensorType>(input.getType()).getDimSize(axis);
          const int64_t at = offset;
          offset += size;
          Operation *def = input.getDefiningOp();
          if (!def || isa<ParamOp, BufferOp, InputOp, WorkingCopyOp, ConstantOp>(def))
            continue;
          // The uses after the concatenation, and the first of them.
          SmallVector<OpOperand *> later;
          Operation *first = nullptr;
          for (OpOperand &use : input.getUses()) {
            Operation *user = use.getOwner();
            if (user->getBlock() != cat->getBlock() || !cat->isBeforeInBlock(user))
              continue;
            later.push_back(&use);
            if (!first || user->isBeforeInBlock(first))
              first = user;
          }
          if (later.empty())
            continue;
          OpBuilder b(first);
          Value slice = SliceOp::create(b, cat.getLoc(), cat.getResult(), axis, at, size).getResult();
          for (OpOperand *use : later)
            use->set(slice);
        }
      }
    });
  }
};

} // namespace
