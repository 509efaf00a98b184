// set-batch re-types the batch dimension of the inputs and everything downstream.
// RUN: mantissa-opt %s --split-input-file --verify-diagnostics --set-batch=batch=16 | FileCheck %s

// CHECK-LABEL: func.func @forward() -> (tensor<f32>, tensor<16x10xf32>)
// CHECK:      graph.input "x" : tensor<16x2x4xf32>
// CHECK-NEXT: graph.input "y" : tensor<16xi32>
// Parameters have no batch dimension.
// CHECK-NEXT: graph.param "fc.weight" {{.*}} : tensor<10x8xf32>
// CHECK-NEXT: graph.param "fc.bias" {{.*}} : tensor<10xf32>
// CHECK-NEXT: graph.reshape %{{.*}} : tensor<16x2x4xf32> to tensor<16x8xf32>
// CHECK-NEXT: graph.cast %{{.*}} : tensor<16x8xf32> to tensor<16x8xf16>
// CHECK-NEXT: graph.cast %{{.*}} : tensor<16x8xf16> to tensor<16x8xf32>
// CHECK-NEXT: graph.linear {{.*}} : tensor<16x8xf32>, tensor<10x8xf32>, tensor<10xf32> -> tensor<16x10xf32>
// CHECK-NEXT: graph.relu %{{.*}} : tensor<16x10xf32>
// CHECK-NEXT: graph.softmax_cross_entropy {{.*}} : tensor<16x10xf32>, tensor<16xi32> -> tensor<f32>
// CHECK-NEXT: return {{.*}} : tensor<f32>, tensor<16x10xf32>
module {
  func.func @forward() -> (tensor<f32>, tensor<4x10xf32>) {
    %x = graph.input "x" : tensor<4x2x4xf32>
    %y = graph.input "y" : tensor<4xi32>
    %w = graph.param "fc.weight" {init = "uniform", bound = 0.3} : tensor<10x8xf32>
    %b = graph.param "fc.bias" {init = "uniform", bound = 0.3} : tensor<10xf32>
    %f = graph.reshape %x : tensor<4x2x4xf32> to tensor<4x8xf32>
    %h = graph.cast %f : tensor<4x8xf32> to tensor<4x8xf16>
    %g = graph.cast %h : tensor<4x8xf16> to tensor<4x8xf32>
    %z = graph.linear %g, %w, %b : tensor<4x8xf32>, tensor<10x8xf32>, tensor<10xf32> -> tensor<4x10xf32>
    %r = graph.relu %z : tensor<4x10xf32>
    %l = graph.softmax_cross_entropy %r, %y : tensor<4x10xf32>, tensor<4xi32> -> tensor<f32>
    return %l, %r : tensor<f32>, tensor<4x10xf32>
  }
}

// -----

// Gradient ops with explicit result types: a weight gradient keeps its shape
// even where its leading dimension (4 output channels) equals the old batch.
// CHECK-LABEL: func.func @train_step() -> tensor<f32>
// CHECK:      graph.conv2d {{.*}} -> tensor<16x4x4x4xf32>
// CHECK-NEXT: graph.max_pool2d {{.*}} -> tensor<16x4x2x2xf32>, tensor<16x4x2x2xi32>
// CHECK-NEXT: graph.reshape {{.*}} to tensor<16x16xf32>
// CHECK-NEXT: graph.softmax_cross_entropy {{.*}} : tensor<16x16xf32>, tensor<16xi32> -> tensor<f32>
// CHECK-NEXT: graph.constant
// CHECK-NEXT: graph.softmax_cross_entropy_backward {{.*}} -> tensor<16x16xf32>
// CHECK-NEXT: graph.reshape {{.*}} : tensor<16x16xf32> to tensor<16x4x2x2xf32>
// CHECK-NEXT: graph.max_pool2d_backward {{.*}} -> tensor<16x4x4x4xf32>
// CHECK-NEXT: graph.conv2d_backward_weight {{.*}} : tensor<16x1x4x4xf32>, tensor<16x4x4x4xf32> -> tensor<4x1x3x3xf32>
// CHECK-NEXT: graph.conv2d_backward_input {{.*}} : tensor<16x4x4x4xf32>, tensor<4x1x3x3xf32> -> tensor<16x1x4x4xf32>
// CHECK-NEXT: graph.reduce_sum {{.*}} : tensor<16x4x4x4xf32> -> tensor<4xf32>
module {
  func.func @train_step() -> tensor<f32> {
    %x = graph.input "x" : tensor<4x1x4x4xf32>
    %y = graph.input "y" : tensor<4xi32>
    %w = graph.param "conv.weight" {init = "uniform", bound = 0.3} : tensor<4x1x3x3xf32>
    %c = graph.conv2d %x, %w {padding = array<i64: 1, 1>} : tensor<4x1x4x4xf32>, tensor<4x1x3x3xf32> -> tensor<4x4x4x4xf32>
    %p, %i = graph.max_pool2d %c : tensor<4x4x4x4xf32> -> tensor<4x4x2x2xf32>, tensor<4x4x2x2xi32>
    %f = graph.reshape %p : tensor<4x4x2x2xf32> to tensor<4x16xf32>
    %l = graph.softmax_cross_entropy %f, %y : tensor<4x16xf32>, tensor<4xi32> -> tensor<f32>
    %one = graph.constant 1.0 : tensor<f32>
    %df = graph.softmax_cross_entropy_backward %f, %y, %one : tensor<4x16xf32>, tensor<4xi32>, tensor<f32> -> tensor<4x16xf32>
    %dp = graph.reshape %df : tensor<4x16xf32> to tensor<4x4x2x2xf32>
    %dc = graph.max_pool2d_backward %dp, %c, %p {kernel = 2 : i64, stride = 2 : i64} : tensor<4x4x2x2xf32>, tensor<4x4x4x4xf32>, tensor<4x4x2x2xf32> -> tensor<4x4x4x4xf32>
    %dw = graph.conv2d_backward_weight %x, %dc {stride = array<i64: 1, 1>, padding = array<i64: 1, 1>} : tensor<4x1x4x4xf32>, tensor<4x4x4x4xf32> -> tensor<4x1x3x3xf32>
    %dx = graph.conv2d_backward_input %dc, %w {stride = array<i64: 1, 1>, padding = array<i64: 1, 1>} : tensor<4x4x4x4xf32>, tensor<4x1x3x3xf32> -> tensor<4x1x4x4xf32>
    %db = graph.reduce_sum %dc {axes = array<i64: 0, 2, 3>} : tensor<4x4x4x4xf32> -> tensor<4xf32>
    return %l : tensor<f32>
  }
}

// -----

module {
  func.func @forward() -> tensor<f32> {
    %x = graph.input "x" : tensor<4x3xf32>
    // expected-error @below {{set-batch: input "y" has batch 5 (dimension 0) but input "x" has 4}}
    %y = graph.input "y" : tensor<5xi32>
    %c = graph.constant 1.0 : tensor<f32>
    return %c : tensor<f32>
  }
}

// -----

// A constant written for the old batch no longer broadcasts: the op that uses it
// says so.
module {
  func.func @forward() -> tensor<f32> {
    %x = graph.input "x" : tensor<4x3xf32>
    %c = graph.constant 1.0 : tensor<4x3xf32>
    // expected-error @below {{operand shapes [16x3] and [4x3] do not broadcast}}
    // expected-error @below {{set-batch: cannot re-type this op for batch 16}}
    %s = graph.add %x, %c : tensor<4x3xf32>, tensor<4x3xf32> -> tensor<4x3xf32>
    %l = graph.constant 1.0 : tensor<f32>
    return %l : tensor<f32>
  }
}
