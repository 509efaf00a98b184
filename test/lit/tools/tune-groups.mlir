// The op groups of the zoo's models (the tuner's search space), and a policy file
// with groups and loss scaling accepted by mantissa compile.
// RUN: mantissa tune %models/cnn_digits.mlir --list-groups | FileCheck %s --check-prefix=CNN
// RUN: mantissa tune %models/mlp_digits.mlir --list-groups | FileCheck %s --check-prefix=MLP
// RUN: mantissa tune %s --list-groups | FileCheck %s --check-prefix=FOLLOW
// RUN: mantissa compile %models/cnn_digits.mlir -o %t.plan --precision %S/Inputs/cnn-policy.json
// RUN: mantissa inspect %t.plan | FileCheck %s --check-prefix=PLAN
// RUN: mantissa compile %models/cnn_digits.mlir -o %t.static.plan --precision %S/Inputs/cnn-policy.json --loss-scale 128
// RUN: mantissa inspect %t.static.plan | FileCheck %s --check-prefix=STATIC
// Errors: one line naming what is wrong, a non-zero exit.
// RUN: not mantissa tune %models/cnn_digits.mlir -o %t.json --objective speed 2>&1 | FileCheck %s --check-prefix=OBJECTIVE
// RUN: not mantissa tune %models/cnn_digits.mlir -o %t.json --cost-model %models/mlp_digits.mlir 2>&1 | FileCheck %s --check-prefix=COSTMODEL
// RUN: not mantissa tune %models/cnn_digits.mlir -o %t.json --device tpu 2>&1 | FileCheck %s --check-prefix=DEVICE
// RUN: not mantissa tune %models/cnn_digits.mlir 2>&1 | FileCheck %s --check-prefix=OUTPUT
// OBJECTIVE: error: --objective must be time or energy, got 'speed'
// COSTMODEL: error: --cost-model {{.*}}mlp_digits.mlir has other op groups than {{.*}}cnn_digits.mlir
// DEVICE: error: --device 'tpu': neither h100, h200 nor a readable JSON file
// OUTPUT: error: tune needs -o POLICY.json

// CNN:      conv1 (graph.conv2d): conv1 graph.relu#{{[0-9]+}} pool1
// CNN-NEXT: conv2 (graph.conv2d): conv2 graph.relu#{{[0-9]+}} pool2 graph.reshape#{{[0-9]+}}
// CNN-NEXT: fc (graph.linear): fc loss
// CNN-NOT:  {{.}}

// MLP:      fc1 (graph.linear): fc1
// MLP:      fc3 (graph.linear): fc3

// An op on the inputs alone starts a group without an anchor.
// FOLLOW:      elementwise@scale (follows its inputs): scale
// FOLLOW-NEXT: fc (graph.linear): fc loss

// The policy's "loss_scaling": "none" wins over the fp16 default (dynamic); the
// command line wins over the policy.
// PLAN:      loss scaling: none
// PLAN:      conv1 graph.conv2d Conv2d f16
// PLAN:      conv2 graph.conv2d Conv2d bf16
// PLAN:      fc graph.linear Gemm f32
// STATIC:    loss scaling: static, scale 128
module attributes {graph.model = "follow", graph.task = "classification", graph.num_classes = 4 : i64} {
  func.func @forward() -> (tensor<f32>, tensor<8x4xf32>) {
    %x = graph.input "x" : tensor<8x3xf32>
    %y = graph.input "y" : tensor<8xi32>
    %w = graph.param "fc.weight" {init = "uniform", bound = 0.5} : tensor<4x3xf32>
    %s = graph.mul %x, %x {graph.name = "scale"} : tensor<8x3xf32>, tensor<8x3xf32> -> tensor<8x3xf32>
    %z = graph.linear %s, %w {graph.name = "fc"} : tensor<8x3xf32>, tensor<4x3xf32> -> tensor<8x4xf32>
    %l = graph.softmax_cross_entropy %z, %y {graph.name = "loss"} : tensor<8x4xf32>, tensor<8xi32> -> tensor<f32>
    return %l, %z : tensor<f32>, tensor<8x4xf32>
  }
}
