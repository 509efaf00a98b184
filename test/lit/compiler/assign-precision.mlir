// RUN: mantissa-opt %s --split-input-file --verify-diagnostics --assign-precision=policy=fp16 | FileCheck %s
// RUN: mantissa-opt %s --split-input-file --verify-diagnostics --assign-precision=policy=fp32 | FileCheck %s --check-prefix=FP32
// RUN: mantissa-opt %s --split-input-file --verify-diagnostics --assign-precision=policy=bf16 | FileCheck %s --check-prefix=BF16
// The policy file names "c", which only the second case has: the others fail and print nothing.
// RUN: not mantissa-opt %s --split-input-file --assign-precision=policy=%S/Inputs/policy-fp16-c-fp32.json 2>/dev/null | FileCheck %s --check-prefix=POLICY
// RUN: not mantissa-opt %s --split-input-file --assign-precision=policy=%S/Inputs/policy-unknown-op.json 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// RUN: not mantissa-opt %s --split-input-file --assign-precision=policy=%S/Inputs/policy-bad-json.json 2>&1 | FileCheck %s --check-prefix=BADJSON
// RUN: not mantissa-opt %s --split-input-file --assign-precision=policy=fp8 2>&1 | FileCheck %s --check-prefix=BADPOLICY

// The fp32 policy inserts no cast anywhere: the only one is the model's own.
// FP32-NOT: graph.cast
// FP32: graph.cast %{{.*}} : tensor<8x3xf16> to tensor<8x3xf32>
// FP32-NOT: graph.cast

// UNKNOWN: error: assign-precision: policy file '{{.*}}policy-unknown-op.json' names op "fc9", but no op of @forward has that graph.name; known names: fc
// BADJSON: error: assign-precision: policy file '{{.*}}policy-bad-json.json' is not valid JSON:
// BADPOLICY: error: assign-precision: policy 'fp8' is neither fp32, fp16, bf16 nor a readable policy file

// Lower ops (linear) take every float operand in the low precision; the
// parameters stay f32 and get a cast; relu follows its input; the add follows
// the widest input (the f32 bias); the loss runs in f32.
// CHECK-LABEL: func.func @forward
//       CHECK:   %[[X:.*]] = graph.input "x" : tensor<8x3xf32>
//       CHECK:   %[[W:.*]] = graph.param "fc.weight"
//       CHECK:   %[[B:.*]] = graph.param "fc.bias"
//       CHECK:   %[[XH:.*]] = graph.cast %[[X]] : tensor<8x3xf32> to tensor<8x3xf16>
//       CHECK:   %[[WH:.*]] = graph.cast %[[W]] : tensor<4x3xf32> to tensor<4x3xf16>
//       CHECK:   %[[BH:.*]] = graph.cast %[[B]] : tensor<4xf32> to tensor<4xf16>
//       CHECK:   %[[H:.*]] = graph.linear %[[XH]], %[[WH]], %[[BH]] {graph.name = "fc"} : tensor<8x3xf16>, tensor<4x3xf16>, tensor<4xf16> -> tensor<8x4xf16>
//       CHECK:   %[[R:.*]] = graph.relu %[[H]] : tensor<8x4xf16>
//       CHECK:   %[[RF:.*]] = graph.cast %[[R]] : tensor<8x4xf16> to tensor<8x4xf32>
//       CHECK:   %[[Z:.*]] = graph.add %[[RF]], %[[B]] : tensor<8x4xf32>, tensor<4xf32> -> tensor<8x4xf32>
//       CHECK:   %[[L:.*]] = graph.softmax_cross_entropy %[[Z]], %{{.*}} : tensor<8x4xf32>, tensor<8xi32> -> tensor<f32>
//       CHECK:   return %[[L]], %[[Z]] : tensor<f32>, tensor<8x4xf32>

// BF16-LABEL: func.func @forward
//       BF16:   graph.linear %{{.*}}, %{{.*}}, %{{.*}} {graph.name = "fc"} : tensor<8x3xbf16>, tensor<4x3xbf16>, tensor<4xbf16> -> tensor<8x4xbf16>
//       BF16:   graph.relu %{{.*}} : tensor<8x4xbf16>
module {
  func.func @forward() -> (tensor<f32>, tensor<8x4xf32>) {
    %x = graph.input "x" : tensor<8x3xf32>
    %y = graph.input "y" : tensor<8xi32>
    %w = graph.param "fc.weight" {init = "uniform", bound = 0.5} : tensor<4x3xf32>
    %b = graph.param "fc.bias" {init = "uniform", bound = 0.5} : tensor<4xf32>
    %h = graph.linear %x, %w, %b {graph.name = "fc"} : tensor<8x3xf32>, tensor<4x3xf32>, tensor<4xf32> -> tensor<8x4xf32>
    %r = graph.relu %h : tensor<8x4xf32>
    %z = graph.add %r, %b : tensor<8x4xf32>, tensor<4xf32> -> tensor<8x4xf32>
    %l = graph.softmax_cross_entropy %z, %y : tensor<8x4xf32>, tensor<8xi32> -> tensor<f32>
    return %l, %z : tensor<f32>, tensor<8x4xf32>
  }
}

// -----

// One cast per (value, type): %w is cast to f16 once for "a" and "c". The
// graph.precision attribute keeps "b" in f32 (its input is cast back up);
// exp is always f32 and shares the cast of "c" with the add.
// CHECK-LABEL: func.func @forward
//       CHECK:   %[[X:.*]] = graph.input "x"
//       CHECK:   %[[W:.*]] = graph.param "w"
//       CHECK:   %[[XH:.*]] = graph.cast %[[X]] : tensor<8x4xf32> to tensor<8x4xf16>
//       CHECK:   %[[WH:.*]] = graph.cast %[[W]] : tensor<4x4xf32> to tensor<4x4xf16>
//       CHECK:   %[[A:.*]] = graph.linear %[[XH]], %[[WH]] {graph.name = "a"} : tensor<8x4xf16>, tensor<4x4xf16> -> tensor<8x4xf16>
//       CHECK:   %[[AF:.*]] = graph.cast %[[A]] : tensor<8x4xf16> to tensor<8x4xf32>
//       CHECK:   %[[B:.*]] = graph.linear %[[AF]], %[[W]] {graph.name = "b", graph.precision = "fp32"} : tensor<8x4xf32>, tensor<4x4xf32> -> tensor<8x4xf32>
//       CHECK:   %[[C:.*]] = graph.linear %[[A]], %[[WH]] {graph.name = "c"} : tensor<8x4xf16>, tensor<4x4xf16> -> tensor<8x4xf16>
//       CHECK:   %[[CF:.*]] = graph.cast %[[C]] : tensor<8x4xf16> to tensor<8x4xf32>
//       CHECK:   %[[S:.*]] = graph.add %[[B]], %[[CF]] : tensor<8x4xf32>, tensor<8x4xf32> -> tensor<8x4xf32>
//       CHECK:   %[[E:.*]] = graph.exp %[[CF]] : tensor<8x4xf32>
//       CHECK:   graph.reduce_mean %[[E]] {axes = array<i64: 1>} : tensor<8x4xf32> -> tensor<8xf32>
//   CHECK-NOT:   graph.cast
//       CHECK:   return

// A policy file puts "c" in fp32; "a" keeps the default fp16.
// POLICY-LABEL: func.func @forward
//       POLICY:   graph.linear %{{.*}}, %{{.*}} {graph.name = "a"} : tensor<8x4xf16>, tensor<4x4xf16> -> tensor<8x4xf16>
//       POLICY:   graph.linear %{{.*}}, %{{.*}} {graph.name = "b", graph.precision = "fp32"} : tensor<8x4xf32>, tensor<4x4xf32> -> tensor<8x4xf32>
//       POLICY:   graph.linear %{{.*}}, %{{.*}} {graph.name = "c"} : tensor<8x4xf32>, tensor<4x4xf32> -> tensor<8x4xf32>
//   POLICY-NOT:   graph.cast
//       POLICY:   return
module {
  func.func @forward() -> (tensor<f32>, tensor<8x4xf32>) {
    %x = graph.input "x" : tensor<8x4xf32>
    %y = graph.input "y" : tensor<8xi32>
    %w = graph.param "w" {init = "uniform", bound = 0.5} : tensor<4x4xf32>
    %h1 = graph.linear %x, %w {graph.name = "a"} : tensor<8x4xf32>, tensor<4x4xf32> -> tensor<8x4xf32>
    %h2 = graph.linear %h1, %w {graph.name = "b", graph.precision = "fp32"} : tensor<8x4xf32>, tensor<4x4xf32> -> tensor<8x4xf32>
    %h3 = graph.linear %h1, %w {graph.name = "c"} : tensor<8x4xf32>, tensor<4x4xf32> -> tensor<8x4xf32>
    %s = graph.add %h2, %h3 : tensor<8x4xf32>, tensor<8x4xf32> -> tensor<8x4xf32>
    %e = graph.exp %h3 : tensor<8x4xf32>
    %m = graph.reduce_mean %e {axes = array<i64: 1>} : tensor<8x4xf32> -> tensor<8xf32>
    %l = graph.softmax_cross_entropy %s, %y : tensor<8x4xf32>, tensor<8xi32> -> tensor<f32>
    return %l, %s : tensor<f32>, tensor<8x4xf32>
  }
}

// -----

// Convolution in f16; batch norm takes the f16 activation with its f32
// parameters and statistics (y is f16, the statistics f32, the running-stat
// assigns untouched); pooling and reshape follow; the loss casts to f32 and the
// prediction returns in the declared f32 through the same cast.
// CHECK-LABEL: func.func @forward
//       CHECK:   %[[G:.*]] = graph.param "bn.weight"
//       CHECK:   %[[BETA:.*]] = graph.param "bn.bias"
//       CHECK:   %[[RM:.*]] = graph.buffer "bn.running_mean"
//       CHECK:   %[[RV:.*]] = graph.buffer "bn.running_var"
//       CHECK:   %[[C:.*]] = graph.conv2d %{{.*}}, %{{.*}} {padding = array<i64: 1, 1>} : tensor<2x1x4x4xf16>, tensor<8x1x3x3xf16> -> tensor<2x8x4x4xf16>
//       CHECK:   %[[N:.*]], %{{.*}}, %{{.*}}, %[[RM2:.*]], %[[RV2:.*]] = graph.batch_norm %[[C]], %[[G]], %[[BETA]], %[[RM]], %[[RV]] : tensor<2x8x4x4xf16>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32> -> tensor<2x8x4x4xf16>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>
//       CHECK:   %[[P:.*]], %{{.*}} = graph.max_pool2d %[[N]] : tensor<2x8x4x4xf16> -> tensor<2x8x2x2xf16>, tensor<2x8x2x2xi32>
//       CHECK:   %[[F:.*]] = graph.reshape %[[P]] : tensor<2x8x2x2xf16> to tensor<2x32xf16>
//       CHECK:   %[[FF:.*]] = graph.cast %[[F]] : tensor<2x32xf16> to tensor<2x32xf32>
//       CHECK:   %[[L:.*]] = graph.mse %[[FF]], %[[FF]] : tensor<2x32xf32>, tensor<2x32xf32> -> tensor<f32>
//       CHECK:   graph.assign "bn.running_mean", %[[RM2]] : tensor<8xf32>
//       CHECK:   graph.assign "bn.running_var", %[[RV2]] : tensor<8xf32>
//       CHECK:   return %[[L]], %[[FF]] : tensor<f32>, tensor<2x32xf32>
module {
  func.func @forward() -> (tensor<f32>, tensor<2x32xf32>) {
    %x = graph.input "x" : tensor<2x1x4x4xf32>
    %y = graph.input "y" : tensor<2xi32>
    %w = graph.param "conv.weight" {init = "uniform", bound = 0.3} : tensor<8x1x3x3xf32>
    %g = graph.param "bn.weight" {init = "ones"} : tensor<8xf32>
    %b = graph.param "bn.bias" {init = "zeros"} : tensor<8xf32>
    %rm = graph.buffer "bn.running_mean" {init = "zeros"} : tensor<8xf32>
    %rv = graph.buffer "bn.running_var" {init = "ones"} : tensor<8xf32>
    %c = graph.conv2d %x, %w {padding = array<i64: 1, 1>} : tensor<2x1x4x4xf32>, tensor<8x1x3x3xf32> -> tensor<2x8x4x4xf32>
    %n, %mean, %invstd, %rm2, %rv2 = graph.batch_norm %c, %g, %b, %rm, %rv : tensor<2x8x4x4xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32> -> tensor<2x8x4x4xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>
    %p, %i = graph.max_pool2d %n : tensor<2x8x4x4xf32> -> tensor<2x8x2x2xf32>, tensor<2x8x2x2xi32>
    %f = graph.reshape %p : tensor<2x8x2x2xf32> to tensor<2x32xf32>
    %l = graph.mse %f, %f : tensor<2x32xf32>, tensor<2x32xf32> -> tensor<f32>
    graph.assign "bn.running_mean", %rm2 : tensor<8xf32>
    graph.assign "bn.running_var", %rv2 : tensor<8xf32>
    return %l, %f : tensor<f32>, tensor<2x32xf32>
  }
}

// -----

// A cast of an exact widening cast starts from the original value: the f16
// input feeds the f16 linear directly and the model's own cast disappears.
// CHECK-LABEL: func.func @forward
//       CHECK:   %[[X:.*]] = graph.input "x" : tensor<8x3xf16>
//       CHECK:   %[[W:.*]] = graph.param "w"
//   CHECK-NOT:   graph.cast %[[X]]
//       CHECK:   %[[WH:.*]] = graph.cast %[[W]] : tensor<4x3xf32> to tensor<4x3xf16>
//       CHECK:   graph.linear %[[X]], %[[WH]] {graph.name = "fc"} : tensor<8x3xf16>, tensor<4x3xf16> -> tensor<8x4xf16>
module {
  func.func @forward() -> (tensor<f32>, tensor<8x4xf32>) {
    %x16 = graph.input "x" : tensor<8x3xf16>
    %y = graph.input "y" : tensor<8xi32>
    %w = graph.param "w" {init = "uniform", bound = 0.5} : tensor<4x3xf32>
    %x = graph.cast %x16 : tensor<8x3xf16> to tensor<8x3xf32>
    %h = graph.linear %x, %w {graph.name = "fc"} : tensor<8x3xf32>, tensor<4x3xf32> -> tensor<8x4xf32>
    %l = graph.softmax_cross_entropy %h, %y : tensor<8x4xf32>, tensor<8xi32> -> tensor<f32>
    return %l, %h : tensor<f32>, tensor<8x4xf32>
  }
}

// -----

// expected-error @+1 {{assign-precision runs before autodiff: @train_step already exists}}
module {
  func.func @forward() -> (tensor<f32>) {
    %c = graph.constant 1.0 : tensor<f32>
    return %c : tensor<f32>
  }
  func.func @train_step() -> (tensor<f32>) {
    %c = graph.constant 1.0 : tensor<f32>
    return %c : tensor<f32>
  }
}

// -----

module {
  func.func @forward() -> (tensor<f32>) {
    %x = graph.input "x" : tensor<8x3xf32>
    // expected-error @+1 {{'graph.reduce_sum' op graph.precision must be "fp32", "fp16" or "bf16", got "fp8"}}
    %s = graph.reduce_sum %x {axes = array<i64: 0, 1>, graph.precision = "fp8"} : tensor<8x3xf32> -> tensor<f32>
    return %s : tensor<f32>
  }
}

// -----

module {
  func.func @forward() -> (tensor<f32>) {
    %x = graph.input "x" : tensor<8x3xf32>
    // expected-error @+1 {{'graph.cast' op has a fixed precision; remove its precision override}}
    %h = graph.cast %x {graph.precision = "fp16"} : tensor<8x3xf32> to tensor<8x3xf16>
    %s = graph.reduce_sum %h {axes = array<i64: 0, 1>} : tensor<8x3xf16> -> tensor<f32>
    return %s : tensor<f32>
  }
}
