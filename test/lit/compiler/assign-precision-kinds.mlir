// Op kinds in a policy file: "kinds" sets every op of a kind (the graph op name
// without "graph."); the most specific entry wins: ops > groups > kinds > default.
// A kind the model does not use (batch_norm here) is allowed; an unknown kind, a
// kind spelled with its dialect prefix and a kind of fixed precision are errors
// that list the valid kinds.
// RUN: mantissa-opt %s --assign-precision=policy=%S/Inputs/policy-kinds.json | FileCheck %s
// RUN: not mantissa-opt %s --assign-precision=policy=%S/Inputs/policy-unknown-kind.json 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// RUN: not mantissa-opt %s --assign-precision=policy=%S/Inputs/policy-prefixed-kind.json 2>&1 | FileCheck %s --check-prefix=PREFIXED
// RUN: not mantissa-opt %s --assign-precision=policy=%S/Inputs/policy-fixed-kind.json 2>&1 | FileCheck %s --check-prefix=FIXED

// UNKNOWN: error: assign-precision: policy file '{{.*}}policy-unknown-kind.json': "kinds": unknown op kind "conv3d"; the kinds are: {{.*}}add, {{.*}}batch_norm, {{.*}}conv2d, {{.*}}linear, {{.*}}relu, {{.*}}softmax_cross_entropy
// PREFIXED: error: assign-precision: policy file '{{.*}}policy-prefixed-kind.json': "kinds": unknown op kind "graph.linear" (drop the "graph." prefix); the kinds are: {{.*}}linear
// FIXED: error: assign-precision: policy file '{{.*}}policy-fixed-kind.json': "kinds": unknown op kind "cast"; the kinds are:

// CHECK-LABEL: func.func @forward
// fc1: no ops or groups entry; its kind (linear) says bf16, over the default fp16.
//       CHECK:   graph.linear {{.*}} {graph.name = "fc1"} : tensor<8x3xbf16>, tensor<4x3xbf16>, tensor<4xbf16> -> tensor<8x4xbf16>
// relu1 is in fc1's group, which the policy does not name: its kind says fp32.
//       CHECK:   %[[UP:.*]] = graph.cast %{{.*}} : tensor<8x4xbf16> to tensor<8x4xf32>
//       CHECK:   graph.relu %[[UP]] {graph.name = "relu1"} : tensor<8x4xf32>
// fc2's group says fp16: it wins over the kinds of its anchor (linear) and its relu.
//       CHECK:   graph.linear {{.*}} {graph.name = "fc2"} : tensor<8x4xf16>, tensor<4x4xf16> -> tensor<8x4xf16>
//       CHECK:   graph.relu %{{.*}} {graph.name = "relu2"} : tensor<8x4xf16>
// head's ops entry wins over its kind.
//       CHECK:   graph.linear {{.*}} {graph.name = "head"} : tensor<8x4xf32>, tensor<4x4xf32> -> tensor<8x4xf32>
//       CHECK:   graph.softmax_cross_entropy {{.*}} : tensor<8x4xf32>, tensor<8xi32> -> tensor<f32>
module {
  func.func @forward() -> (tensor<f32>, tensor<8x4xf32>) {
    %x = graph.input "x" : tensor<8x3xf32>
    %y = graph.input "y" : tensor<8xi32>
    %w1 = graph.param "fc1.weight" {init = "uniform", bound = 0.5} : tensor<4x3xf32>
    %b1 = graph.param "fc1.bias" {init = "uniform", bound = 0.5} : tensor<4xf32>
    %w2 = graph.param "fc2.weight" {init = "uniform", bound = 0.5} : tensor<4x4xf32>
    %w3 = graph.param "head.weight" {init = "uniform", bound = 0.5} : tensor<4x4xf32>
    %h1 = graph.linear %x, %w1, %b1 {graph.name = "fc1"} : tensor<8x3xf32>, tensor<4x3xf32>, tensor<4xf32> -> tensor<8x4xf32>
    %r1 = graph.relu %h1 {graph.name = "relu1"} : tensor<8x4xf32>
    %h2 = graph.linear %r1, %w2 {graph.name = "fc2"} : tensor<8x4xf32>, tensor<4x4xf32> -> tensor<8x4xf32>
    %r2 = graph.relu %h2 {graph.name = "relu2"} : tensor<8x4xf32>
    %z = graph.linear %r2, %w3 {graph.name = "head"} : tensor<8x4xf32>, tensor<4x4xf32> -> tensor<8x4xf32>
    %l = graph.softmax_cross_entropy %z, %y {graph.name = "loss"} : tensor<8x4xf32>, tensor<8xi32> -> tensor<f32>
    return %l, %z : tensor<f32>, tensor<8x4xf32>
  }
}
