//===- GraphInterfaces.td - interfaces of graph ops --------*- tablegen -*-===//
#ifndef MANTISSA_GRAPH_INTERFACES
#define MANTISSA_GRAPH_INTERFACES

include "mlir/IR/OpBase.td"

def Graph_PrecisionOpInterface : OpInterface<"PrecisionOp"> {
  let description = [{
    Every graph op states its precision category, the table that
    `assign-precision` reads (PyTorch autocast's lists): `Lower` ops run in the
    policy's low precision with fp32 accumulation, `Fp32` ops always run in fp32,
    `Follow` ops run in the widest precision of their floating-point inputs, and
    `Fixed` ops (parameters, inputs, casts, optimizer updates) keep the types they
    were given.
  }];
  let cppNamespace = "::mantissa::graph";
  let methods = [
    StaticInterfaceMethod<"The op's precision category.",
      "::mantissa::graph::PrecisionCategory", "getPrecisionCategory">,
  ];
}

def Graph_ElementwiseOpInterface : OpInterface<"ElementwiseOp"> {
  let description = [{
    An op computed element by element (with numpy broadcasting of its operands).
    `buildScalarProgram` appends its per-element program, made of the scalar ops of
    common/ScalarOps.def, to a builder and returns the registers of its results:
    the one definition that plan emission (CPU interpreter), fusion and CUDA code
    generation all use.
  }];
  let cppNamespace = "::mantissa::graph";
  let methods = [
    InterfaceMethod<"Append the per-element program; return one register per result.",
      "::llvm::SmallVector<int>", "buildScalarProgram",
      (ins "::mantissa::graph::ScalarProgramBuilder &":$p, "::llvm::ArrayRef<int>":$in)>,
  ];
}

#endif // MANTISSA_GRAPH_INTERFACES
