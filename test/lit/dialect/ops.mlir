// Every graph op parses, verifies, prints and parses again to the same IR,
// in the custom and in the generic form.
// RUN: mantissa-opt %s | mantissa-opt | FileCheck %s
// RUN: mantissa-opt %s --mlir-print-op-generic | mantissa-opt | FileCheck %s
// Both round trips end in the same text, and printing that text again changes nothing.
// RUN: mantissa-opt %s | mantissa-opt > %t.custom
// RUN: mantissa-opt %s --mlir-print-op-generic | mantissa-opt > %t.generic
// RUN: diff %t.custom %t.generic
// RUN: mantissa-opt %t.custom > %t.again
// RUN: diff %t.custom %t.again

// CHECK-LABEL: func.func @leaves
func.func @leaves() -> (tensor<4x3xf32>, tensor<f32>) {
  // CHECK: graph.input "x" : tensor<8x3xf32>
  // CHECK: graph.input "y" : tensor<8xi32>
  // CHECK: graph.param "fc.weight" {bound = 5.000000e-01 : f64, init = "uniform"} : tensor<4x3xf32>
  // CHECK: graph.param "bn.weight" {init = "ones"} : tensor<4xf32>
  // CHECK: graph.buffer "bn.running_mean" {init = "zeros"} : tensor<4xf32>
  // CHECK: graph.buffer "scaler.scale" {init = "value", kind = "scaler", value = 6.553600e+04 : f64} : tensor<f32>
  // CHECK: graph.constant 1.000000e+00 : tensor<f32>
  // CHECK: graph.assign "bn.running_mean", %{{.*}} : tensor<4xf32>
  %x = graph.input "x" : tensor<8x3xf32>
  %y = graph.input "y" : tensor<8xi32>
  %w = graph.param "fc.weight" {init = "uniform", bound = 0.5} : tensor<4x3xf32>
  %g = graph.param "bn.weight" {init = "ones"} : tensor<4xf32>
  %rm = graph.buffer "bn.running_mean" {init = "zeros"} : tensor<4xf32>
  %s = graph.buffer "scaler.scale" {init = "value", value = 65536.0, kind = "scaler"} : tensor<f32>
  %c = graph.constant 1.0 : tensor<f32>
  graph.assign "bn.running_mean", %g : tensor<4xf32>
  return %w, %c : tensor<4x3xf32>, tensor<f32>
}

// Each op with its operands (in order), their types and the result's.
// CHECK-LABEL: func.func @elementwise
//  CHECK-SAME: (%[[A:[[:alnum:]_]+]]: tensor<8x4xf32>, %[[B:[[:alnum:]_]+]]: tensor<4xf32>, %[[H:[[:alnum:]_]+]]: tensor<8x4xf16>) -> tensor<8x4xf32>
func.func @elementwise(%a: tensor<8x4xf32>, %b: tensor<4xf32>, %h: tensor<8x4xf16>) -> tensor<8x4xf32> {
  // CHECK-NEXT: %[[V0:.*]] = graph.add %[[A]], %[[B]] : tensor<8x4xf32>, tensor<4xf32> -> tensor<8x4xf32>
  // CHECK-NEXT: %[[V1:.*]] = graph.sub %[[V0]], %[[H]] : tensor<8x4xf32>, tensor<8x4xf16> -> tensor<8x4xf32>
  // CHECK-NEXT: %[[V2:.*]] = graph.mul %[[V1]], %[[B]] : tensor<8x4xf32>, tensor<4xf32> -> tensor<8x4xf32>
  // CHECK-NEXT: %[[V3:.*]] = graph.div %[[V2]], %[[B]] : tensor<8x4xf32>, tensor<4xf32> -> tensor<8x4xf32>
  // CHECK-NEXT: %[[V4:.*]] = graph.relu %[[V3]] : tensor<8x4xf32>
  // CHECK-NEXT: %[[V5:.*]] = graph.gelu %[[V4]] : tensor<8x4xf32>
  // CHECK-NEXT: %[[V6:.*]] = graph.sigmoid %[[V5]] : tensor<8x4xf32>
  // CHECK-NEXT: %[[V7:.*]] = graph.tanh %[[V6]] : tensor<8x4xf32>
  // CHECK-NEXT: %[[V8:.*]] = graph.exp %[[V7]] : tensor<8x4xf32>
  // CHECK-NEXT: %[[V9:.*]] = graph.log %[[V8]] : tensor<8x4xf32>
  // CHECK-NEXT: %[[V10:.*]] = graph.neg %[[V9]] : tensor<8x4xf32>
  // CHECK-NEXT: %[[V11:.*]] = graph.relu_grad %[[V10]], %[[A]] : tensor<8x4xf32>
  // CHECK-NEXT: %[[V12:.*]] = graph.gelu_grad %[[V11]], %[[A]] : tensor<8x4xf32>
  // CHECK-NEXT: %[[V13:.*]] = graph.sigmoid_grad %[[V12]], %[[A]] : tensor<8x4xf32>
  // CHECK-NEXT: %[[V14:.*]] = graph.tanh_grad %[[V13]], %[[A]] : tensor<8x4xf32>
  // CHECK-NEXT: graph.cast %[[V14]] : tensor<8x4xf32> to tensor<8x4xbf16>
  // CHECK-NEXT: return %[[V14]] : tensor<8x4xf32>
  %0 = graph.add %a, %b : tensor<8x4xf32>, tensor<4xf32> -> tensor<8x4xf32>
  %1 = graph.sub %0, %h : tensor<8x4xf32>, tensor<8x4xf16> -> tensor<8x4xf32>
  %2 = graph.mul %1, %b : tensor<8x4xf32>, tensor<4xf32> -> tensor<8x4xf32>
  %3 = graph.div %2, %b : tensor<8x4xf32>, tensor<4xf32> -> tensor<8x4xf32>
  %4 = graph.relu %3 : tensor<8x4xf32>
  %5 = graph.gelu %4 : tensor<8x4xf32>
  %6 = graph.sigmoid %5 : tensor<8x4xf32>
  %7 = graph.tanh %6 : tensor<8x4xf32>
  %8 = graph.exp %7 : tensor<8x4xf32>
  %9 = graph.log %8 : tensor<8x4xf32>
  %10 = graph.neg %9 : tensor<8x4xf32>
  %11 = graph.relu_grad %10, %a : tensor<8x4xf32>
  %12 = graph.gelu_grad %11, %a : tensor<8x4xf32>
  %13 = graph.sigmoid_grad %12, %a : tensor<8x4xf32>
  %14 = graph.tanh_grad %13, %a : tensor<8x4xf32>
  %15 = graph.cast %14 : tensor<8x4xf32> to tensor<8x4xbf16>
  return %14 : tensor<8x4xf32>
}

// CHECK-LABEL: func.func @linear_algebra
func.func @linear_algebra(%x: tensor<8x3xf16>, %w: tensor<4x3xf16>, %b: tensor<4xf16>) -> tensor<4x3xf16> {
  // CHECK: graph.linear %{{.*}}, %{{.*}}, %{{.*}} : tensor<8x3xf16>, tensor<4x3xf16>, tensor<4xf16> -> tensor<8x4xf16>
  // CHECK: graph.linear %{{.*}}, %{{.*}} : tensor<8x3xf16>, tensor<4x3xf16> -> tensor<8x4xf16>
  // CHECK: graph.matmul %{{.*}}, %{{.*}} : tensor<8x4xf16>, tensor<4x3xf16> -> tensor<8x3xf16>
  // CHECK: graph.matmul %{{.*}}, %{{.*}} {transpose_a = true} : tensor<8x4xf16>, tensor<8x3xf16> -> tensor<4x3xf16>
  // CHECK: graph.matmul %{{.*}}, %{{.*}} {transpose_a = true, transpose_b = true} : tensor<3x8xf16>, tensor<4x3xf16> -> tensor<8x4xf16>
  %y = graph.linear %x, %w, %b : tensor<8x3xf16>, tensor<4x3xf16>, tensor<4xf16> -> tensor<8x4xf16>
  %y2 = graph.linear %x, %w : tensor<8x3xf16>, tensor<4x3xf16> -> tensor<8x4xf16>
  %dx = graph.matmul %y, %w : tensor<8x4xf16>, tensor<4x3xf16> -> tensor<8x3xf16>
  %dw = graph.matmul %y2, %x {transpose_a = true} : tensor<8x4xf16>, tensor<8x3xf16> -> tensor<4x3xf16>
  %xt = graph.transpose %x {perm = array<i64: 1, 0>} : tensor<8x3xf16> -> tensor<3x8xf16>
  %z = graph.matmul %xt, %w {transpose_a = true, transpose_b = true} : tensor<3x8xf16>, tensor<4x3xf16> -> tensor<8x4xf16>
  return %dw : tensor<4x3xf16>
}

// CHECK-LABEL: func.func @convolutions
func.func @convolutions(%x: tensor<2x3x8x8xf32>, %w: tensor<6x3x3x3xf32>, %b: tensor<6xf32>,
                        %wt: tensor<6x4x2x2xf32>, %bt: tensor<4xf32>) -> tensor<2x4x8x8xf32> {
  // CHECK: graph.conv2d %{{.*}}, %{{.*}}, %{{.*}} {padding = array<i64: 1, 1>} : tensor<2x3x8x8xf32>, tensor<6x3x3x3xf32>, tensor<6xf32> -> tensor<2x6x8x8xf32>
  // CHECK: graph.conv2d_backward_input %{{.*}}, %{{.*}} {padding = array<i64: 1, 1>, stride = array<i64: 1, 1>} : tensor<2x6x8x8xf32>, tensor<6x3x3x3xf32> -> tensor<2x3x8x8xf32>
  // CHECK: graph.conv2d_backward_weight %{{.*}}, %{{.*}} {padding = array<i64: 1, 1>, stride = array<i64: 1, 1>} : tensor<2x3x8x8xf32>, tensor<2x6x8x8xf32> -> tensor<6x3x3x3xf32>
  // CHECK: graph.max_pool2d %{{.*}} : tensor<2x6x8x8xf32> -> tensor<2x6x4x4xf32>, tensor<2x6x4x4xi32>
  // CHECK: graph.max_pool2d_backward %{{.*}}, %{{.*}}, %{{.*}} {kernel = 2 : i64, stride = 2 : i64} : tensor<2x6x4x4xf32>, tensor<2x6x8x8xf32>, tensor<2x6x4x4xf32> -> tensor<2x6x8x8xf32>
  // CHECK: graph.conv_transpose2d %{{.*}}, %{{.*}}, %{{.*}} {stride = array<i64: 2, 2>} : tensor<2x6x4x4xf32>, tensor<6x4x2x2xf32>, tensor<4xf32> -> tensor<2x4x8x8xf32>
  %y = graph.conv2d %x, %w, %b {padding = array<i64: 1, 1>} : tensor<2x3x8x8xf32>, tensor<6x3x3x3xf32>, tensor<6xf32> -> tensor<2x6x8x8xf32>
  %dx = graph.conv2d_backward_input %y, %w {stride = array<i64: 1, 1>, padding = array<i64: 1, 1>} : tensor<2x6x8x8xf32>, tensor<6x3x3x3xf32> -> tensor<2x3x8x8xf32>
  %dw = graph.conv2d_backward_weight %x, %y {stride = array<i64: 1, 1>, padding = array<i64: 1, 1>} : tensor<2x3x8x8xf32>, tensor<2x6x8x8xf32> -> tensor<6x3x3x3xf32>
  %p, %i = graph.max_pool2d %y : tensor<2x6x8x8xf32> -> tensor<2x6x4x4xf32>, tensor<2x6x4x4xi32>
  %dp = graph.max_pool2d_backward %p, %y, %p {kernel = 2, stride = 2} : tensor<2x6x4x4xf32>, tensor<2x6x8x8xf32>, tensor<2x6x4x4xf32> -> tensor<2x6x8x8xf32>
  %u = graph.conv_transpose2d %p, %wt, %bt {stride = array<i64: 2, 2>} : tensor<2x6x4x4xf32>, tensor<6x4x2x2xf32>, tensor<4xf32> -> tensor<2x4x8x8xf32>
  return %u : tensor<2x4x8x8xf32>
}

// CHECK-LABEL: func.func @batch_norm
func.func @batch_norm(%x: tensor<2x4x3x3xf16>, %g: tensor<4xf32>, %b: tensor<4xf32>, %rm: tensor<4xf32>, %rv: tensor<4xf32>) -> tensor<2x4x3x3xf16> {
  // Mixed precision: an f16 input with f32 per-channel parameters and statistics.
  // CHECK: graph.batch_norm %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : tensor<2x4x3x3xf16>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<2x4x3x3xf16>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>
  // CHECK: graph.batch_norm {{.*}} {training = false}
  // CHECK: graph.batch_norm_backward %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : tensor<2x4x3x3xf16>, tensor<2x4x3x3xf16>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<2x4x3x3xf16>, tensor<4xf32>, tensor<4xf32>
  %y, %mean, %invstd, %rm2, %rv2 = graph.batch_norm %x, %g, %b, %rm, %rv : tensor<2x4x3x3xf16>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<2x4x3x3xf16>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>
  %e:5 = graph.batch_norm %x, %g, %b, %rm, %rv {training = false} : tensor<2x4x3x3xf16>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<2x4x3x3xf16>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>
  %dx, %dg, %db = graph.batch_norm_backward %y, %x, %g, %mean, %invstd : tensor<2x4x3x3xf16>, tensor<2x4x3x3xf16>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<2x4x3x3xf16>, tensor<4xf32>, tensor<4xf32>
  return %dx : tensor<2x4x3x3xf16>
}

// CHECK-LABEL: func.func @shapes
func.func @shapes(%a: tensor<2x3xf32>, %b: tensor<2x5xf32>) -> tensor<2x8xf32> {
  // CHECK: graph.concat %{{.*}}, %{{.*}} {axis = 1 : i64} : tensor<2x3xf32>, tensor<2x5xf32> -> tensor<2x8xf32>
  // CHECK: graph.slice %{{.*}} {axis = 1 : i64, offset = 3 : i64, size = 5 : i64} : tensor<2x8xf32> -> tensor<2x5xf32>
  // CHECK: graph.reshape %{{.*}} : tensor<2x3xf32> to tensor<6xf32>
  // CHECK: graph.transpose %{{.*}} {perm = array<i64: 1, 0>} : tensor<2x3xf32> -> tensor<3x2xf32>
  // CHECK: graph.broadcast_to %{{.*}} : tensor<1x8xf32> to tensor<2x8xf32>
  %c = graph.concat %a, %b {axis = 1} : tensor<2x3xf32>, tensor<2x5xf32> -> tensor<2x8xf32>
  %s = graph.slice %c {axis = 1, offset = 3, size = 5} : tensor<2x8xf32> -> tensor<2x5xf32>
  %r = graph.reshape %a : tensor<2x3xf32> to tensor<6xf32>
  %t = graph.transpose %a {perm = array<i64: 1, 0>} : tensor<2x3xf32> -> tensor<3x2xf32>
  %k = graph.reduce_sum %c {axes = array<i64: 0>, keepdim = true} : tensor<2x8xf32> -> tensor<1x8xf32>
  %bc = graph.broadcast_to %k : tensor<1x8xf32> to tensor<2x8xf32>
  return %bc : tensor<2x8xf32>
}

// CHECK-LABEL: func.func @reductions_and_losses
func.func @reductions_and_losses(%z: tensor<8x4xf16>, %y: tensor<8xi32>, %t: tensor<8x4xf32>, %l: tensor<f32>) -> tensor<f32> {
  // Reductions accumulate and return fp32.
  // CHECK: graph.reduce_sum %{{.*}} {axes = array<i64: 0, 1>} : tensor<8x4xf16> -> tensor<f32>
  // CHECK: graph.reduce_mean %{{.*}} {axes = array<i64: 1>, keepdim = true} : tensor<8x4xf16> -> tensor<8x1xf32>
  // CHECK: graph.softmax_cross_entropy %{{.*}}, %{{.*}} : tensor<8x4xf16>, tensor<8xi32> -> tensor<f32>
  // CHECK: graph.softmax_cross_entropy_backward %{{.*}}, %{{.*}}, %{{.*}} : tensor<8x4xf16>, tensor<8xi32>, tensor<f32> -> tensor<8x4xf16>
  // CHECK: graph.mse %{{.*}}, %{{.*}} : tensor<8x4xf32>, tensor<8x4xf32> -> tensor<f32>
  // CHECK: graph.mse_backward %{{.*}}, %{{.*}}, %{{.*}} : tensor<8x4xf32>, tensor<8x4xf32>, tensor<f32> -> tensor<8x4xf32>
  %s = graph.reduce_sum %z {axes = array<i64: 0, 1>} : tensor<8x4xf16> -> tensor<f32>
  %m = graph.reduce_mean %z {axes = array<i64: 1>, keepdim = true} : tensor<8x4xf16> -> tensor<8x1xf32>
  %ce = graph.softmax_cross_entropy %z, %y : tensor<8x4xf16>, tensor<8xi32> -> tensor<f32>
  %dz = graph.softmax_cross_entropy_backward %z, %y, %l : tensor<8x4xf16>, tensor<8xi32>, tensor<f32> -> tensor<8x4xf16>
  %mse = graph.mse %t, %t : tensor<8x4xf32>, tensor<8x4xf32> -> tensor<f32>
  %dt = graph.mse_backward %t, %t, %l : tensor<8x4xf32>, tensor<8x4xf32>, tensor<f32> -> tensor<8x4xf32>
  return %ce : tensor<f32>
}

// CHECK-LABEL: func.func @optimizer_and_scaler
func.func @optimizer_and_scaler(%p: tensor<4x3xf32>, %g: tensor<4x3xf32>, %m: tensor<4x3xf32>, %v: tensor<4x3xf32>,
                                %ok: tensor<f32>, %step: tensor<f32>, %s: tensor<f32>, %t: tensor<f32>) -> tensor<4x3xf32> {
  // CHECK: graph.sgd_update %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {lr = 1.000000e-01 : f64, momentum = 9.000000e-01 : f64, nesterov = true} : tensor<4x3xf32>, tensor<f32>
  // CHECK: graph.adam_update %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} {decoupled = true, lr = 1.000000e-03 : f64, weight_decay = 1.000000e-02 : f64} : tensor<4x3xf32>, tensor<f32>
  // CHECK: graph.all_finite %{{.*}}, %{{.*}} : tensor<4x3xf32>, tensor<4x3xf32> -> tensor<f32>
  // CHECK: graph.loss_scale_update %{{.*}}, %{{.*}}, %{{.*}} {growth_interval = 100 : i64} : tensor<f32>
  %p1, %b1 = graph.sgd_update %p, %g, %m, %ok, %step {lr = 0.1, momentum = 0.9, nesterov = true} : tensor<4x3xf32>, tensor<f32>
  %p2, %m2, %v2 = graph.adam_update %p, %g, %m, %v, %ok, %step {lr = 0.001, weight_decay = 0.01, decoupled = true} : tensor<4x3xf32>, tensor<f32>
  %f = graph.all_finite %g, %m : tensor<4x3xf32>, tensor<4x3xf32> -> tensor<f32>
  %s2, %t2 = graph.loss_scale_update %s, %t, %f {growth_interval = 100} : tensor<f32>
  return %p1 : tensor<4x3xf32>
}

// CHECK-LABEL: func.func @fused
//  CHECK-SAME: (%[[X:[[:alnum:]_]+]]: tensor<8x4xf32>, %[[B:[[:alnum:]_]+]]: tensor<4xf32>)
func.func @fused(%x: tensor<8x4xf32>, %b: tensor<4xf32>) -> (tensor<8x4xf32>, tensor<8x4xf16>) {
  // CHECK-NEXT: %[[F:.*]]:2 = graph.fused(%[[X]], %[[B]]) {graph.name = "fc+relu"} : (tensor<8x4xf32>, tensor<4xf32>) -> (tensor<8x4xf32>, tensor<8x4xf16>) {
  // CHECK-NEXT: ^bb0(%[[A0:[[:alnum:]_]+]]: tensor<8x4xf32>, %[[A1:[[:alnum:]_]+]]: tensor<4xf32>):
  // CHECK-NEXT:   %[[S:.*]] = graph.add %[[A0]], %[[A1]] : tensor<8x4xf32>, tensor<4xf32> -> tensor<8x4xf32>
  // CHECK-NEXT:   %[[R:.*]] = graph.relu %[[S]] : tensor<8x4xf32>
  // CHECK-NEXT:   %[[C:.*]] = graph.cast %[[R]] : tensor<8x4xf32> to tensor<8x4xf16>
  // CHECK-NEXT:   graph.yield %[[S]], %[[C]] : tensor<8x4xf32>, tensor<8x4xf16>
  // CHECK-NEXT: }
  // CHECK-NEXT: return %[[F]]#0, %[[F]]#1 : tensor<8x4xf32>, tensor<8x4xf16>
  %h, %r = graph.fused(%x, %b) {graph.name = "fc+relu"} : (tensor<8x4xf32>, tensor<4xf32>) -> (tensor<8x4xf32>, tensor<8x4xf16>) {
  ^bb0(%a0: tensor<8x4xf32>, %a1: tensor<4xf32>):
    %0 = graph.add %a0, %a1 : tensor<8x4xf32>, tensor<4xf32> -> tensor<8x4xf32>
    %1 = graph.relu %0 : tensor<8x4xf32>
    %2 = graph.cast %1 : tensor<8x4xf32> to tensor<8x4xf16>
    graph.yield %0, %2 : tensor<8x4xf32>, tensor<8x4xf16>
  }
  return %h, %r : tensor<8x4xf32>, tensor<8x4xf16>
}
