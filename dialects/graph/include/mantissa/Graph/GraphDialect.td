//===- GraphDialect.td - the graph dialect -----------------*- tablegen -*-===//
#ifndef MANTISSA_GRAPH_DIALECT
#define MANTISSA_GRAPH_DIALECT

include "mlir/IR/OpBase.td"

def Graph_Dialect : Dialect {
  let name = "graph";
  let summary = "Tensor graphs of training models: forward ops, their gradients, "
                "optimizer updates and loss scaling";
  let description = [{
    A model is a `func.func @forward` whose body reads `graph.input`s and
    `graph.param`s and returns the loss first and the prediction second. The
    compiler derives `@train_step` from it (autodiff, optimizer, loss scaling),
    assigns every op a precision through its result element types (f32, f16,
    bf16), and emits a plan. Shapes are static; results are inferred.
  }];
  let cppNamespace = "::mantissa::graph";
}

#endif // MANTISSA_GRAPH_DIALECT
