// RUN: mantissa-opt %s --split-input-file --verify-diagnostics --autodiff | FileCheck %s

// The example of Passes.td: x is no parameter's function, so it gets no
// gradient; @forward stays as it was.
// CHECK-LABEL: func.func @forward() -> (tensor<f32>, tensor<8x4xf32>)
//  CHECK-NEXT:   graph.input "x"
//  CHECK-NEXT:   graph.input "y"
//  CHECK-NEXT:   graph.param "fc.weight"
//  CHECK-NEXT:   graph.linear
//  CHECK-NEXT:   graph.softmax_cross_entropy
//  CHECK-NEXT:   return
// CHECK-LABEL: func.func @train_step() -> (tensor<f32>, tensor<4x3xf32> {graph.grad_of = "fc.weight"})
//       CHECK:   %[[X:.*]] = graph.input "x" : tensor<8x3xf32>
//       CHECK:   %[[Y:.*]] = graph.input "y" : tensor<8xi32>
//       CHECK:   %[[W:.*]] = graph.param "fc.weight"
//       CHECK:   %[[Z:.*]] = graph.linear %[[X]], %[[W]]
//       CHECK:   %[[L:.*]] = graph.softmax_cross_entropy %[[Z]], %[[Y]]
//       CHECK:   %[[SEED:.*]] = graph.constant 1.000000e+00 {graph.loss_seed} : tensor<f32>
//       CHECK:   %[[DZ:.*]] = graph.softmax_cross_entropy_backward %[[Z]], %[[Y]], %[[SEED]] : tensor<8x4xf32>, tensor<8xi32>, tensor<f32> -> tensor<8x4xf32>
//       CHECK:   %[[DW:.*]] = graph.matmul %[[DZ]], %[[X]] {transpose_a = true} : tensor<8x4xf32>, tensor<8x3xf32> -> tensor<4x3xf32>
//  CHECK-NEXT:   return %[[L]], %[[DW]] : tensor<f32>, tensor<4x3xf32>
func.func @forward() -> (tensor<f32>, tensor<8x4xf32>) {
  %x = graph.input "x" : tensor<8x3xf32>
  %y = graph.input "y" : tensor<8xi32>
  %w = graph.param "fc.weight" {init = "uniform", bound = 0.5} : tensor<4x3xf32>
  %z = graph.linear %x, %w : tensor<8x3xf32>, tensor<4x3xf32> -> tensor<8x4xf32>
  %l = graph.softmax_cross_entropy %z, %y : tensor<8x4xf32>, tensor<8xi32> -> tensor<f32>
  return %l, %z : tensor<f32>, tensor<8x4xf32>
}

// -----

// After assign-precision (fp16): backward ops compute in the forward value's
// type; the gradient of each cast is a cast back, so the f32 master parameters
// get f32 gradients (the bias gradient is rounded to f16 first, as in autocast).
// CHECK-LABEL: func.func @train_step() -> (tensor<f32>, tensor<4x3xf32> {graph.grad_of = "fc1.weight"}, tensor<4xf32> {graph.grad_of = "fc1.bias"}, tensor<4x4xf32> {graph.grad_of = "fc2.weight"})
//       CHECK:   %[[XH:.*]] = graph.cast %{{.*}} : tensor<8x3xf32> to tensor<8x3xf16>
//       CHECK:   %[[H:.*]] = graph.linear
//       CHECK:   %[[R:.*]] = graph.relu %[[H]]
//       CHECK:   %[[W2H:.*]] = graph.cast %{{.*}} : tensor<4x4xf32> to tensor<4x4xf16>
//       CHECK:   %[[ZF:.*]] = graph.cast %{{.*}} : tensor<8x4xf16> to tensor<8x4xf32>
//       CHECK:   %[[L:.*]] = graph.softmax_cross_entropy %[[ZF]]
//       CHECK:   %[[SEED:.*]] = graph.constant 1.000000e+00 {graph.loss_seed}
//       CHECK:   %[[DZF:.*]] = graph.softmax_cross_entropy_backward %[[ZF]], %{{.*}}, %[[SEED]]
//       CHECK:   %[[DZ:.*]] = graph.cast %[[DZF]] : tensor<8x4xf32> to tensor<8x4xf16>
//       CHECK:   %[[DR:.*]] = graph.matmul %[[DZ]], %[[W2H]] : tensor<8x4xf16>, tensor<4x4xf16> -> tensor<8x4xf16>
//       CHECK:   %[[DW2H:.*]] = graph.matmul %[[DZ]], %[[R]] {transpose_a = true} : tensor<8x4xf16>, tensor<8x4xf16> -> tensor<4x4xf16>
//       CHECK:   %[[DW2:.*]] = graph.cast %[[DW2H]] : tensor<4x4xf16> to tensor<4x4xf32>
//       CHECK:   %[[DH:.*]] = graph.relu_grad %[[R]], %[[DR]] : tensor<8x4xf16>
//       CHECK:   %[[DW1H:.*]] = graph.matmul %[[DH]], %[[XH]] {transpose_a = true} : tensor<8x4xf16>, tensor<8x3xf16> -> tensor<4x3xf16>
//       CHECK:   %[[DB1S:.*]] = graph.reduce_sum %[[DH]] {axes = array<i64: 0>} : tensor<8x4xf16> -> tensor<4xf32>
//       CHECK:   %[[DB1H:.*]] = graph.cast %[[DB1S]] : tensor<4xf32> to tensor<4xf16>
//       CHECK:   %[[DB1:.*]] = graph.cast %[[DB1H]] : tensor<4xf16> to tensor<4xf32>
//       CHECK:   %[[DW1:.*]] = graph.cast %[[DW1H]] : tensor<4x3xf16> to tensor<4x3xf32>
//       CHECK:   return %[[L]], %[[DW1]], %[[DB1]], %[[DW2]] : tensor<f32>, tensor<4x3xf32>, tensor<4xf32>, tensor<4x4xf32>
func.func @forward() -> (tensor<f32>, tensor<8x4xf32>) {
  %x = graph.input "x" : tensor<8x3xf32>
  %y = graph.input "y" : tensor<8xi32>
  %w1 = graph.param "fc1.weight" {init = "uniform", bound = 0.5} : tensor<4x3xf32>
  %b1 = graph.param "fc1.bias" {init = "uniform", bound = 0.5} : tensor<4xf32>
  %w2 = graph.param "fc2.weight" {init = "uniform", bound = 0.5} : tensor<4x4xf32>
  %xh = graph.cast %x : tensor<8x3xf32> to tensor<8x3xf16>
  %w1h = graph.cast %w1 : tensor<4x3xf32> to tensor<4x3xf16>
  %b1h = graph.cast %b1 : tensor<4xf32> to tensor<4xf16>
  %h = graph.linear %xh, %w1h, %b1h : tensor<8x3xf16>, tensor<4x3xf16>, tensor<4xf16> -> tensor<8x4xf16>
  %r = graph.relu %h : tensor<8x4xf16>
  %w2h = graph.cast %w2 : tensor<4x4xf32> to tensor<4x4xf16>
  %z = graph.matmul %r, %w2h {transpose_b = true} : tensor<8x4xf16>, tensor<4x4xf16> -> tensor<8x4xf16>
  %zf = graph.cast %z : tensor<8x4xf16> to tensor<8x4xf32>
  %l = graph.softmax_cross_entropy %zf, %y : tensor<8x4xf32>, tensor<8xi32> -> tensor<f32>
  return %l, %zf : tensor<f32>, tensor<8x4xf32>
}

// -----

// Broadcasting operands get their gradients summed back to their shapes;
// values used twice sum their adjoints; a parameter that does not reach the
// loss gets a zero gradient and a warning.
// CHECK-LABEL: func.func @train_step() -> (tensor<f32>, tensor<4xf32> {graph.grad_of = "b"}, tensor<8x1xf32> {graph.grad_of = "s"}, tensor<2xf32> {graph.grad_of = "unused"})
//       CHECK:   %[[B:.*]] = graph.param "b"
//       CHECK:   %[[S:.*]] = graph.param "s"
//       CHECK:   %[[A:.*]] = graph.add %{{.*}}, %[[B]]
//       CHECK:   %[[M:.*]] = graph.mul %[[A]], %[[S]]
//       CHECK:   %[[D:.*]] = graph.div %[[M]], %[[S]]
//       CHECK:   %[[Q:.*]] = graph.sub %[[D]], %[[A]]
//       CHECK:   %[[L:.*]] = graph.mse %[[Q]], %[[T:.*]] :
//       CHECK:   %[[SEED:.*]] = graph.constant 1.000000e+00 {graph.loss_seed}
//       CHECK:   %[[DQ:.*]] = graph.mse_backward %[[Q]], %[[T]], %[[SEED]] : tensor<8x4xf32>, tensor<8x4xf32>, tensor<f32> -> tensor<8x4xf32>
//       CHECK:   %[[DA1:.*]] = graph.neg %[[DQ]] : tensor<8x4xf32>
//       CHECK:   %[[DM:.*]] = graph.div %[[DQ]], %[[S]] : tensor<8x4xf32>, tensor<8x1xf32> -> tensor<8x4xf32>
//       CHECK:   %[[T1:.*]] = graph.mul %[[DQ]], %[[D]] : tensor<8x4xf32>, tensor<8x4xf32> -> tensor<8x4xf32>
//       CHECK:   %[[T2:.*]] = graph.div %[[T1]], %[[S]]
//       CHECK:   %[[T3:.*]] = graph.reduce_sum %[[T2]] {axes = array<i64: 1>, keepdim = true} : tensor<8x4xf32> -> tensor<8x1xf32>
//       CHECK:   %[[DS1:.*]] = graph.neg %[[T3]] : tensor<8x1xf32>
//       CHECK:   %[[DA2:.*]] = graph.mul %[[DM]], %[[S]] : tensor<8x4xf32>, tensor<8x1xf32> -> tensor<8x4xf32>
//       CHECK:   %[[T4:.*]] = graph.mul %[[DM]], %[[A]] : tensor<8x4xf32>, tensor<8x4xf32> -> tensor<8x4xf32>
//       CHECK:   %[[DS2:.*]] = graph.reduce_sum %[[T4]] {axes = array<i64: 1>, keepdim = true} : tensor<8x4xf32> -> tensor<8x1xf32>
//       CHECK:   %[[DA:.*]] = graph.add %[[DA1]], %[[DA2]] : tensor<8x4xf32>, tensor<8x4xf32> -> tensor<8x4xf32>
//       CHECK:   %[[DS:.*]] = graph.add %[[DS1]], %[[DS2]] : tensor<8x1xf32>, tensor<8x1xf32> -> tensor<8x1xf32>
//       CHECK:   %[[DBK:.*]] = graph.reduce_sum %[[DA]] {axes = array<i64: 0>, keepdim = true} : tensor<8x4xf32> -> tensor<1x4xf32>
//       CHECK:   %[[DB:.*]] = graph.reshape %[[DBK]] : tensor<1x4xf32> to tensor<4xf32>
//       CHECK:   %[[ZERO:.*]] = graph.constant 0.000000e+00 : tensor<2xf32>
//       CHECK:   return %[[L]], %[[DB]], %[[DS]], %[[ZERO]]
func.func @forward() -> (tensor<f32>, tensor<8x4xf32>) {
  %x = graph.input "x" : tensor<8x4xf32>
  %t = graph.input "y" : tensor<8x4xf32>
  %b = graph.param "b" {init = "zeros"} : tensor<4xf32>
  %s = graph.param "s" {init = "ones"} : tensor<8x1xf32>
  // expected-warning @+1 {{autodiff: parameter "unused" does not affect the loss; its gradient is zero}}
  %u = graph.param "unused" {init = "zeros"} : tensor<2xf32>
  %a = graph.add %x, %b : tensor<8x4xf32>, tensor<4xf32> -> tensor<8x4xf32>
  %m = graph.mul %a, %s : tensor<8x4xf32>, tensor<8x1xf32> -> tensor<8x4xf32>
  %d = graph.div %m, %s : tensor<8x4xf32>, tensor<8x1xf32> -> tensor<8x4xf32>
  %q = graph.sub %d, %a : tensor<8x4xf32>, tensor<8x4xf32> -> tensor<8x4xf32>
  %l = graph.mse %q, %t : tensor<8x4xf32>, tensor<8x4xf32> -> tensor<f32>
  return %l, %q : tensor<f32>, tensor<8x4xf32>
}

// -----

// Convolution, batch norm (training), pooling, transposed convolution, reshape
// and slice. The running-statistic assigns stay.
// CHECK-LABEL: func.func @train_step() -> (tensor<f32>, tensor<2x1x3x3xf32> {graph.grad_of = "conv.weight"}, tensor<2xf32> {graph.grad_of = "conv.bias"}, tensor<2xf32> {graph.grad_of = "bn.weight"}, tensor<2xf32> {graph.grad_of = "bn.bias"}, tensor<2x1x2x2xf32> {graph.grad_of = "up.weight"})
//       CHECK:   %[[X:.*]] = graph.input "x"
//       CHECK:   %[[G:.*]] = graph.param "bn.weight"
//       CHECK:   %[[WT:.*]] = graph.param "up.weight"
//       CHECK:   %[[C:.*]] = graph.conv2d %[[X]]
//       CHECK:   %[[N:.*]], %[[MEAN:.*]], %[[INVSTD:.*]], %[[RM2:.*]], %[[RV2:.*]] = graph.batch_norm %[[C]], %[[G]]
//       CHECK:   %[[P:.*]], %{{.*}} = graph.max_pool2d %[[N]]
//       CHECK:   %[[U:.*]] = graph.conv_transpose2d %[[P]], %[[WT]] {stride = array<i64: 2, 2>}
//       CHECK:   graph.assign "bn.running_mean", %[[RM2]]
//       CHECK:   graph.assign "bn.running_var", %[[RV2]]
//       CHECK:   %[[DS:.*]] = graph.mse_backward
//       CHECK:   %[[Z0:.*]] = graph.constant 0.000000e+00 : tensor<2x4xf32>
//       CHECK:   %[[Z1:.*]] = graph.constant 0.000000e+00 : tensor<2x28xf32>
//       CHECK:   %[[DF:.*]] = graph.concat %[[Z0]], %[[DS]], %[[Z1]] {axis = 1 : i64} : tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x28xf32> -> tensor<2x36xf32>
//       CHECK:   %[[DU:.*]] = graph.reshape %[[DF]] : tensor<2x36xf32> to tensor<2x1x6x6xf32>
//       CHECK:   %[[DP:.*]] = graph.conv2d %[[DU]], %[[WT]] {stride = array<i64: 2, 2>} : tensor<2x1x6x6xf32>, tensor<2x1x2x2xf32> -> tensor<2x2x3x3xf32>
//       CHECK:   %[[DWT:.*]] = graph.conv2d_backward_weight %[[DU]], %[[P]] {padding = array<i64: 0, 0>, stride = array<i64: 2, 2>} : tensor<2x1x6x6xf32>, tensor<2x2x3x3xf32> -> tensor<2x1x2x2xf32>
// The pooling's gradient finds the argmax again in its input and result.
//       CHECK:   %[[DN:.*]] = graph.max_pool2d_backward %[[DP]], %[[N]], %[[P]] {kernel = 2 : i64, stride = 2 : i64} : tensor<2x2x3x3xf32>, tensor<2x2x6x6xf32>, tensor<2x2x3x3xf32> -> tensor<2x2x6x6xf32>
// The first conv's input is x, no parameter's function: no input gradient. The conv2d rule
// makes operand 0's gradient first, so one wrongly asked for would stand right after the batch
// norm's backward; the NOTs cover every gap to the return.
//       CHECK:   %[[DC:.*]], %[[DG:.*]], %[[DBETA:.*]] = graph.batch_norm_backward %[[DN]], %[[C]], %[[G]], %[[MEAN]], %[[INVSTD]]
//   CHECK-NOT:   graph.conv2d_backward_input
//       CHECK:   %[[DW:.*]] = graph.conv2d_backward_weight %[[X]], %[[DC]] {padding = array<i64: 1, 1>, stride = array<i64: 1, 1>} : tensor<2x1x6x6xf32>, tensor<2x2x6x6xf32> -> tensor<2x1x3x3xf32>
//   CHECK-NOT:   graph.conv2d_backward_input
//       CHECK:   %[[DCB:.*]] = graph.reduce_sum %[[DC]] {axes = array<i64: 0, 2, 3>} : tensor<2x2x6x6xf32> -> tensor<2xf32>
//   CHECK-NOT:   graph.conv2d_backward_input
//       CHECK:   return %{{.*}}, %[[DW]], %[[DCB]], %[[DG]], %[[DBETA]], %[[DWT]]
func.func @forward() -> (tensor<f32>, tensor<2x4xf32>) {
  %x = graph.input "x" : tensor<2x1x6x6xf32>
  %t = graph.input "y" : tensor<2x4xf32>
  %w = graph.param "conv.weight" {init = "uniform", bound = 0.3} : tensor<2x1x3x3xf32>
  %cb = graph.param "conv.bias" {init = "uniform", bound = 0.3} : tensor<2xf32>
  %g = graph.param "bn.weight" {init = "ones"} : tensor<2xf32>
  %be = graph.param "bn.bias" {init = "zeros"} : tensor<2xf32>
  %rm = graph.buffer "bn.running_mean" {init = "zeros"} : tensor<2xf32>
  %rv = graph.buffer "bn.running_var" {init = "ones"} : tensor<2xf32>
  %wt = graph.param "up.weight" {init = "uniform", bound = 0.3} : tensor<2x1x2x2xf32>
  %c = graph.conv2d %x, %w, %cb {padding = array<i64: 1, 1>} : tensor<2x1x6x6xf32>, tensor<2x1x3x3xf32>, tensor<2xf32> -> tensor<2x2x6x6xf32>
  %n, %mean, %invstd, %rm2, %rv2 = graph.batch_norm %c, %g, %be, %rm, %rv : tensor<2x2x6x6xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32> -> tensor<2x2x6x6xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>, tensor<2xf32>
  %p, %i = graph.max_pool2d %n : tensor<2x2x6x6xf32> -> tensor<2x2x3x3xf32>, tensor<2x2x3x3xi32>
  %u = graph.conv_transpose2d %p, %wt {stride = array<i64: 2, 2>} : tensor<2x2x3x3xf32>, tensor<2x1x2x2xf32> -> tensor<2x1x6x6xf32>
  %f = graph.reshape %u : tensor<2x1x6x6xf32> to tensor<2x36xf32>
  %s = graph.slice %f {axis = 1, offset = 4, size = 4} : tensor<2x36xf32> -> tensor<2x4xf32>
  %l = graph.mse %s, %t : tensor<2x4xf32>, tensor<2x4xf32> -> tensor<f32>
  graph.assign "bn.running_mean", %rm2 : tensor<2xf32>
  graph.assign "bn.running_var", %rv2 : tensor<2xf32>
  return %l, %s : tensor<f32>, tensor<2x4xf32>
}

// -----

// Unary ops, concat (slices of the adjoint), transpose (inverse permutation),
// slice (zero padding) and reduce_mean (scaled, reshaped, broadcast).
// CHECK-LABEL: func.func @train_step() -> (tensor<f32>, tensor<3x4xf32> {graph.grad_of = "p"}, tensor<3x2xf32> {graph.grad_of = "q"})
//       CHECK:   %[[X:.*]] = graph.input "x"
//       CHECK:   %[[A:.*]] = graph.mul %[[X]], %{{.*}}
//       CHECK:   %[[E:.*]] = graph.exp %[[A]]
//       CHECK:   %[[LG:.*]] = graph.log %[[E]]
//       CHECK:   %[[NG:.*]] = graph.neg %[[LG]]
//       CHECK:   %[[SG:.*]] = graph.sigmoid %[[NG]]
//       CHECK:   %[[TH:.*]] = graph.tanh %[[SG]]
//       CHECK:   %[[SEED:.*]] = graph.constant 1.000000e+00 {graph.loss_seed}
//       CHECK:   %[[K:.*]] = graph.constant 1.200000e+01 : tensor<f32>
//       CHECK:   %[[DM:.*]] = graph.div %[[SEED]], %[[K]]
//       CHECK:   %[[DMR:.*]] = graph.reshape %[[DM]] : tensor<f32> to tensor<1x1xf32>
//       CHECK:   %[[DSL:.*]] = graph.broadcast_to %[[DMR]] : tensor<1x1xf32> to tensor<4x3xf32>
//       CHECK:   %[[Z:.*]] = graph.constant 0.000000e+00 : tensor<2x3xf32>
//       CHECK:   %[[DTR:.*]] = graph.concat %[[DSL]], %[[Z]] {axis = 0 : i64} : tensor<4x3xf32>, tensor<2x3xf32> -> tensor<6x3xf32>
//       CHECK:   %[[DC:.*]] = graph.transpose %[[DTR]] {perm = array<i64: 1, 0>} : tensor<6x3xf32> -> tensor<3x6xf32>
//       CHECK:   %[[DGE:.*]] = graph.slice %[[DC]] {axis = 1 : i64, offset = 0 : i64, size = 4 : i64} : tensor<3x6xf32> -> tensor<3x4xf32>
//       CHECK:   %[[DQ:.*]] = graph.slice %[[DC]] {axis = 1 : i64, offset = 4 : i64, size = 2 : i64} : tensor<3x6xf32> -> tensor<3x2xf32>
//       CHECK:   %[[DTH:.*]] = graph.gelu_grad %[[TH]], %[[DGE]]
//       CHECK:   %[[DSG:.*]] = graph.tanh_grad %[[TH]], %[[DTH]]
//       CHECK:   %[[DNG:.*]] = graph.sigmoid_grad %[[SG]], %[[DSG]]
//       CHECK:   %[[DLG:.*]] = graph.neg %[[DNG]]
//       CHECK:   %[[DE:.*]] = graph.div %[[DLG]], %[[E]]
//       CHECK:   %[[DA:.*]] = graph.mul %[[DE]], %[[E]]
//       CHECK:   %[[DP:.*]] = graph.mul %[[DA]], %[[X]]
//       CHECK:   return %{{.*}}, %[[DP]], %[[DQ]]
func.func @forward() -> (tensor<f32>, tensor<4x3xf32>) {
  %x = graph.input "x" : tensor<3x4xf32>
  %p = graph.param "p" {init = "ones"} : tensor<3x4xf32>
  %q = graph.param "q" {init = "ones"} : tensor<3x2xf32>
  %a = graph.mul %x, %p : tensor<3x4xf32>, tensor<3x4xf32> -> tensor<3x4xf32>
  %e = graph.exp %a : tensor<3x4xf32>
  %lg = graph.log %e : tensor<3x4xf32>
  %n = graph.neg %lg : tensor<3x4xf32>
  %sg = graph.sigmoid %n : tensor<3x4xf32>
  %th = graph.tanh %sg : tensor<3x4xf32>
  %ge = graph.gelu %th : tensor<3x4xf32>
  %c = graph.concat %ge, %q {axis = 1} : tensor<3x4xf32>, tensor<3x2xf32> -> tensor<3x6xf32>
  %tr = graph.transpose %c {perm = array<i64: 1, 0>} : tensor<3x6xf32> -> tensor<6x3xf32>
  %sl = graph.slice %tr {axis = 0, offset = 0, size = 4} : tensor<6x3xf32> -> tensor<4x3xf32>
  %m = graph.reduce_mean %sl {axes = array<i64: 0, 1>} : tensor<4x3xf32> -> tensor<f32>
  return %m, %sl : tensor<f32>, tensor<4x3xf32>
}

// -----

// matmul with transpose_a: C = Aᵀ B, dA = B dCᵀ, dB = A dC.
// CHECK-LABEL: func.func @train_step
//       CHECK:   %[[A:.*]] = graph.param "a" {init = "ones"} : tensor<3x2xf32>
//       CHECK:   %[[B:.*]] = graph.param "b" {init = "ones"} : tensor<3x4xf32>
//       CHECK:   %[[DC:.*]] = graph.broadcast_to
//       CHECK:   %[[DA:.*]] = graph.matmul %[[B]], %[[DC]] {transpose_b = true} : tensor<3x4xf32>, tensor<2x4xf32> -> tensor<3x2xf32>
//       CHECK:   %[[DB:.*]] = graph.matmul %[[A]], %[[DC]] : tensor<3x2xf32>, tensor<2x4xf32> -> tensor<3x4xf32>
//       CHECK:   return %{{.*}}, %[[DA]], %[[DB]]
func.func @forward() -> (tensor<f32>, tensor<2x4xf32>) {
  %a = graph.param "a" {init = "ones"} : tensor<3x2xf32>
  %b = graph.param "b" {init = "ones"} : tensor<3x4xf32>
  %c = graph.matmul %a, %b {transpose_a = true} : tensor<3x2xf32>, tensor<3x4xf32> -> tensor<2x4xf32>
  %s = graph.reduce_sum %c {axes = array<i64: 0, 1>} : tensor<2x4xf32> -> tensor<f32>
  return %s, %c : tensor<f32>, tensor<2x4xf32>
}

// -----

// expected-error @+1 {{autodiff: the module already has a @train_step}}
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

// expected-error @+1 {{autodiff: the first result of @forward must be the loss, a 0-d float tensor}}
func.func @forward() -> (tensor<4xf32>) {
  %p = graph.param "p" {init = "ones"} : tensor<4xf32>
  return %p : tensor<4xf32>
}

// -----

func.func @forward() -> (tensor<f32>) {
  %x = graph.input "x" : tensor<2x4x3x3xf32>
  %g = graph.param "bn.weight" {init = "ones"} : tensor<4xf32>
  %b = graph.param "bn.bias" {init = "zeros"} : tensor<4xf32>
  %rm = graph.buffer "bn.running_mean" {init = "zeros"} : tensor<4xf32>
  %rv = graph.buffer "bn.running_var" {init = "ones"} : tensor<4xf32>
  // expected-error @+1 {{autodiff: eval-mode batch_norm (training = false) has no gradient rule yet}}
  %y:5 = graph.batch_norm %x, %g, %b, %rm, %rv {training = false} : tensor<2x4x3x3xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<2x4x3x3xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>
  %s = graph.reduce_sum %y#0 {axes = array<i64: 0, 1, 2, 3>} : tensor<2x4x3x3xf32> -> tensor<f32>
  return %s : tensor<f32>
}

// -----

func.func @forward() -> (tensor<f32>) {
  %x = graph.input "x" : tensor<8x4xf32>
  %p = graph.param "p" {init = "ones"} : tensor<8x4xf32>
  // expected-error @+1 {{autodiff: no gradient rule for this op (gradients of backward, optimizer and loss-scaling ops are not supported)}}
  %g = graph.relu_grad %x, %p : tensor<8x4xf32>
  %s = graph.reduce_sum %g {axes = array<i64: 0, 1>} : tensor<8x4xf32> -> tensor<f32>
  return %s : tensor<f32>
}
