// Op groups in a policy file: a group (named by its anchor, a linear here) sets the
// anchor and the members that follow their inputs; an "ops" entry wins over its
// group; the loss keeps fp32 (category Fp32) whatever its group says.
// RUN: mantissa-opt %s --assign-precision=policy=%S/Inputs/policy-groups.json | FileCheck %s
// RUN: not mantissa-opt %s --assign-precision=policy=%S/Inputs/policy-unknown-group.json 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// RUN: not mantissa-opt %s --assign-precision=policy=%S/Inputs/policy-bad-loss-scaling.json 2>&1 | FileCheck %s --check-prefix=LOSSSCALE

// UNKNOWN: error: assign-precision: policy file '{{.*}}policy-unknown-group.json' names op group "relu1", but @forward has no such group; its groups are: fc1, fc2, head
// LOSSSCALE: error: assign-precision: policy file '{{.*}}policy-bad-loss-scaling.json': "loss_scaling" must be "dynamic", "none" or a positive finite number

// CHECK-LABEL: func.func @forward
//       CHECK:   graph.linear {{.*}} {graph.name = "fc1"} : tensor<8x3xf16>, tensor<4x3xf16>, tensor<4xf16> -> tensor<8x4xf16>
//       CHECK:   graph.relu %{{.*}} {graph.name = "relu1"} : tensor<8x4xf16>
// The add joins fc1's group (its first operand's) and is forced to fp16, though its
// other operand is an fp32 parameter.
//       CHECK:   graph.add %{{.*}}, %{{.*}} {graph.name = "shift1"} : tensor<8x4xf16>, tensor<4xf16> -> tensor<8x4xf16>
//       CHECK:   graph.linear {{.*}} {graph.name = "fc2"} : tensor<8x4xbf16>, tensor<4x4xbf16> -> tensor<8x4xbf16>
//       CHECK:   graph.relu %{{.*}} : tensor<8x4xbf16>
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
    %s1 = graph.add %r1, %b1 {graph.name = "shift1"} : tensor<8x4xf32>, tensor<4xf32> -> tensor<8x4xf32>
    %h2 = graph.linear %s1, %w2 {graph.name = "fc2"} : tensor<8x4xf32>, tensor<4x4xf32> -> tensor<8x4xf32>
    %r2 = graph.relu %h2 : tensor<8x4xf32>
    %z = graph.linear %r2, %w3 {graph.name = "head"} : tensor<8x4xf32>, tensor<4x4xf32> -> tensor<8x4xf32>
    %l = graph.softmax_cross_entropy %z, %y {graph.name = "loss"} : tensor<8x4xf32>, tensor<8xi32> -> tensor<f32>
    return %l, %z : tensor<f32>, tensor<8x4xf32>
  }
}
