// mantissa-opt -o FILE: a failed run leaves FILE as it was (mlir-opt's own driver
// truncates it first); a successful one replaces it.
// RUN: split-file %s %t
// RUN: echo "the previous output" > %t/out.mlir
// RUN: not mantissa-opt %t/bad.mlir -o %t/out.mlir 2>&1 | FileCheck %s --check-prefix=ERROR
// RUN: FileCheck %s --check-prefix=KEPT --input-file %t/out.mlir
// RUN: mantissa-opt %t/good.mlir -o %t/out.mlir
// RUN: FileCheck %s --check-prefix=REPLACED --input-file %t/out.mlir

// ERROR: bad.mlir:3:10: error: custom op 'graph.frob' is unknown
// KEPT: the previous output
// REPLACED: graph.constant

//--- bad.mlir
module {
  func.func @forward() -> tensor<f32> {
    %x = graph.frob : tensor<f32>
    return %x : tensor<f32>
  }
}
//--- good.mlir
module {
  func.func @forward() -> tensor<f32> {
    %c = graph.constant 0.0 : tensor<f32>
    return %c : tensor<f32>
  }
}
