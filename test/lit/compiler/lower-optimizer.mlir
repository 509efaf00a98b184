// RUN: mantissa-opt %s --split-input-file --verify-diagnostics --lower-optimizer="optimizer=sgd lr=0.1 momentum=0.9" | FileCheck %s
// RUN: mantissa-opt %s --split-input-file --verify-diagnostics --lower-optimizer="optimizer=sgd lr=0.5" | FileCheck %s --check-prefix=PLAIN
// RUN: mantissa-opt %s --split-input-file --verify-diagnostics --lower-optimizer="optimizer=sgd lr=0.1 momentum=0.9 nesterov=true weight-decay=0.0005" | FileCheck %s --check-prefix=NESTEROV
// RUN: mantissa-opt %s --split-input-file --verify-diagnostics --lower-optimizer="optimizer=adam lr=0.001" | FileCheck %s --check-prefix=ADAM
// RUN: mantissa-opt %s --split-input-file --verify-diagnostics --lower-optimizer="optimizer=adamw lr=0.001 beta2=0.99" | FileCheck %s --check-prefix=ADAMW
// RUN: not mantissa-opt %s --split-input-file --lower-optimizer=optimizer=lamb 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// RUN: not mantissa-opt %s --split-input-file --lower-optimizer="optimizer=sgd nesterov=true" 2>&1 | FileCheck %s --check-prefix=BADNESTEROV
// RUN: not mantissa-opt %s --split-input-file --lower-optimizer="optimizer=sgd lr=nan" 2>&1 | FileCheck %s --check-prefix=NANLR
// RUN: not mantissa-opt %s --split-input-file --lower-optimizer="optimizer=sgd lr=0.1 momentum=inf" 2>&1 | FileCheck %s --check-prefix=INFMOMENTUM
// RUN: not mantissa-opt %s --split-input-file --lower-optimizer="optimizer=adamw weight-decay=nan" 2>&1 | FileCheck %s --check-prefix=NANDECAY
// RUN: not mantissa-opt %s --split-input-file --lower-optimizer="optimizer=adam eps=nan" 2>&1 | FileCheck %s --check-prefix=NANEPS
// RUN: not mantissa-opt %s --split-input-file --lower-optimizer="optimizer=adam beta1=nan" 2>&1 | FileCheck %s --check-prefix=NANBETA

// UNKNOWN: error: lower-optimizer: unknown optimizer 'lamb' (expected sgd, adam or adamw)
// BADNESTEROV: error: lower-optimizer: invalid option: nesterov needs a momentum and zero dampening
// NANLR: error: lower-optimizer: invalid option: lr must be a finite number >= 0
// INFMOMENTUM: error: lower-optimizer: invalid option: momentum must be a finite number >= 0
// NANDECAY: error: lower-optimizer: invalid option: weight-decay must be a finite number >= 0
// NANEPS: error: lower-optimizer: invalid option: eps must be a finite number >= 0
// NANBETA: error: lower-optimizer: invalid option: beta1 and beta2 must be in [0, 1)

// SGD with momentum: one zero-initialised momentum buffer per parameter and
// one shared step count, updates gated by the finite flag, every new value
// assigned back, the step count advanced by the flag; only the loss is returned.
// CHECK-LABEL: func.func @train_step() -> tensor<f32>
//       CHECK:   %[[STEP:.*]] = graph.buffer "optimizer.step" {init = "zeros", kind = "optimizer"} : tensor<f32>
//       CHECK:   %[[WBUF:.*]] = graph.buffer "fc.weight.momentum_buffer" {init = "zeros", kind = "optimizer"} : tensor<4x3xf32>
//       CHECK:   %[[BBUF:.*]] = graph.buffer "fc.bias.momentum_buffer" {init = "zeros", kind = "optimizer"} : tensor<4xf32>
//       CHECK:   %[[W:.*]] = graph.param "fc.weight"
//       CHECK:   %[[B:.*]] = graph.param "fc.bias"
//       CHECK:   %[[L:.*]] = graph.softmax_cross_entropy
//       CHECK:   %[[DW:.*]] = graph.matmul
//       CHECK:   %[[DB:.*]] = graph.reduce_sum
//       CHECK:   %[[OK:.*]] = graph.constant 1.000000e+00 {graph.finite_flag} : tensor<f32>
//       CHECK:   %[[W2:.*]], %[[WBUF2:.*]] = graph.sgd_update %[[W]], %[[DW]], %[[WBUF]], %[[OK]], %[[STEP]] {lr = 1.000000e-01 : f64, momentum = 9.000000e-01 : f64} : tensor<4x3xf32>, tensor<f32>
//  CHECK-NEXT:   graph.assign "fc.weight", %[[W2]] : tensor<4x3xf32>
//  CHECK-NEXT:   graph.assign "fc.weight.momentum_buffer", %[[WBUF2]] : tensor<4x3xf32>
//  CHECK-NEXT:   %[[B2:.*]], %[[BBUF2:.*]] = graph.sgd_update %[[B]], %[[DB]], %[[BBUF]], %[[OK]], %[[STEP]] {lr = 1.000000e-01 : f64, momentum = 9.000000e-01 : f64} : tensor<4xf32>, tensor<f32>
//  CHECK-NEXT:   graph.assign "fc.bias", %[[B2]] : tensor<4xf32>
//  CHECK-NEXT:   graph.assign "fc.bias.momentum_buffer", %[[BBUF2]] : tensor<4xf32>
//  CHECK-NEXT:   %[[STEP2:.*]] = graph.add %[[STEP]], %[[OK]] : tensor<f32>, tensor<f32> -> tensor<f32>
//  CHECK-NEXT:   graph.assign "optimizer.step", %[[STEP2]] : tensor<f32>
//  CHECK-NEXT:   return %[[L]] : tensor<f32>

// Plain SGD (momentum 0, PyTorch's default) keeps no momentum buffer: the
// update's buffer operand is the parameter itself, a placeholder it does not read.
// PLAIN-LABEL: func.func @train_step() -> tensor<f32>
//   PLAIN-NOT:   momentum_buffer
//       PLAIN:   %[[W:.*]] = graph.param "fc.weight"
//       PLAIN:   %[[W2:.*]], %{{.*}} = graph.sgd_update %[[W]], %{{.*}}, %[[W]], %{{.*}}, %{{.*}} {lr = 5.000000e-01 : f64} : tensor<4x3xf32>, tensor<f32>
//  PLAIN-NEXT:   graph.assign "fc.weight", %[[W2]] : tensor<4x3xf32>
//  PLAIN-NEXT:   graph.sgd_update
//   PLAIN-NOT:   momentum_buffer

// NESTEROV-LABEL: func.func @train_step
//       NESTEROV:   graph.sgd_update {{.*}} {lr = 1.000000e-01 : f64, momentum = 9.000000e-01 : f64, nesterov = true, weight_decay = 5.000000e-04 : f64} : tensor<4x3xf32>, tensor<f32>

// Adam: exp_avg and exp_avg_sq per parameter, weight decay 0 by default.
// ADAM-LABEL: func.func @train_step() -> tensor<f32>
//       ADAM:   %[[STEP:.*]] = graph.buffer "optimizer.step" {init = "zeros", kind = "optimizer"} : tensor<f32>
//       ADAM:   %[[M:.*]] = graph.buffer "fc.weight.exp_avg" {init = "zeros", kind = "optimizer"} : tensor<4x3xf32>
//       ADAM:   %[[V:.*]] = graph.buffer "fc.weight.exp_avg_sq" {init = "zeros", kind = "optimizer"} : tensor<4x3xf32>
//       ADAM:   graph.buffer "fc.bias.exp_avg"
//       ADAM:   graph.buffer "fc.bias.exp_avg_sq"
//       ADAM:   %[[W:.*]] = graph.param "fc.weight"
//       ADAM:   %[[OK:.*]] = graph.constant 1.000000e+00 {graph.finite_flag}
//       ADAM:   %[[W2:.*]], %[[M2:.*]], %[[V2:.*]] = graph.adam_update %[[W]], %{{.*}}, %[[M]], %[[V]], %[[OK]], %[[STEP]] {lr = 1.000000e-03 : f64} : tensor<4x3xf32>, tensor<f32>
//  ADAM-NEXT:   graph.assign "fc.weight", %[[W2]]
//  ADAM-NEXT:   graph.assign "fc.weight.exp_avg", %[[M2]]
//  ADAM-NEXT:   graph.assign "fc.weight.exp_avg_sq", %[[V2]]

// AdamW: decoupled weight decay, 0.01 by default as torch.optim.AdamW.
// ADAMW-LABEL: func.func @train_step
//       ADAMW:   graph.adam_update {{.*}} {beta2 = 0.98999999999999999 : f64, decoupled = true, lr = 1.000000e-03 : f64, weight_decay = 1.000000e-02 : f64} : tensor<4x3xf32>, tensor<f32>
module {
  func.func @train_step() -> (tensor<f32>, tensor<4x3xf32> {graph.grad_of = "fc.weight"}, tensor<4xf32> {graph.grad_of = "fc.bias"}) {
    %x = graph.input "x" : tensor<8x3xf32>
    %y = graph.input "y" : tensor<8xi32>
    %w = graph.param "fc.weight" {init = "uniform", bound = 0.5} : tensor<4x3xf32>
    %b = graph.param "fc.bias" {init = "uniform", bound = 0.5} : tensor<4xf32>
    %z = graph.linear %x, %w, %b : tensor<8x3xf32>, tensor<4x3xf32>, tensor<4xf32> -> tensor<8x4xf32>
    %l = graph.softmax_cross_entropy %z, %y : tensor<8x4xf32>, tensor<8xi32> -> tensor<f32>
    %seed = graph.constant 1.0 {graph.loss_seed} : tensor<f32>
    %dz = graph.softmax_cross_entropy_backward %z, %y, %seed : tensor<8x4xf32>, tensor<8xi32>, tensor<f32> -> tensor<8x4xf32>
    %dw = graph.matmul %dz, %x {transpose_a = true} : tensor<8x4xf32>, tensor<8x3xf32> -> tensor<4x3xf32>
    %db = graph.reduce_sum %dz {axes = array<i64: 0>} : tensor<8x4xf32> -> tensor<4xf32>
    return %l, %dw, %db : tensor<f32>, tensor<4x3xf32>, tensor<4xf32>
  }
}

// -----

// expected-error @+1 {{lower-optimizer: @train_step returns no gradients (results marked graph.grad_of); run --autodiff first}}
func.func @train_step() -> tensor<f32> {
  %c = graph.constant 1.0 : tensor<f32>
  return %c : tensor<f32>
}

// -----

// expected-error @+1 {{lower-optimizer: result 1 is the gradient of "fc.weight", but @train_step has no graph.param of that name}}
func.func @train_step() -> (tensor<f32>, tensor<4xf32> {graph.grad_of = "fc.weight"}) {
  %c = graph.constant 1.0 : tensor<f32>
  %g = graph.constant 0.0 : tensor<4xf32>
  return %c, %g : tensor<f32>, tensor<4xf32>
}

// -----

// expected-error @+1 {{lower-optimizer: the module has no func.func @train_step}}
module {
  func.func @forward() -> tensor<f32> {
    %c = graph.constant 1.0 : tensor<f32>
    return %c : tensor<f32>
  }
}
