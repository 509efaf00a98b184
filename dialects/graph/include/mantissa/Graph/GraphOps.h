//===- GraphOps.h - graph dialect ops -------------------------------------===//
#pragma once

#include "mantissa/Graph/GraphDialect.h"
#include "mantissa/Graph/ScalarProgram.h"

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

namespace mantissa::graph {

/// The autocast categories (DESIGN.md, "Precision policy").
enum class PrecisionCategory { Lower, Fp32, Follow, Fixed };

/// numpy broadcasting of two static shapes; failure if incompatible.
mlir::FailureOr<llvm::SmallVector<int64_t>> broadcastShapes(llvm::ArrayRef<int64_t> a,
                                                           llvm::ArrayRef<int64_t> b);

/// The widest of two float types (f16 and bf16 promote to f32).
mlir::Type promoteFloatTypes(mlir::Type a, mlir::Type b);

class FusedOp;

/// The per-element program of a graph.fused: the programs of the ops inside in
/// order, each f16/bf16 value read inside rounded where the unfused op stored it.
llvm::SmallVector<int> buildFusedScalarProgram(FusedOp op, ScalarProgramBuilder &p,
                                               llvm::ArrayRef<int> in);

} // namespace mantissa::graph

#include "mantissa/Graph/GraphInterfaces.h.inc"

#define GET_OP_CLASSES
#include "mantissa/Graph/GraphOps.h.inc"
