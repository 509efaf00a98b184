// RUN: mantissa-opt %s --split-input-file --verify-diagnostics --insert-loss-scaling | FileCheck %s
// RUN: mantissa-opt %s --split-input-file --verify-diagnostics --insert-loss-scaling="mode=dynamic scale=1024 growth-factor=4 backoff-factor=0.25 growth-interval=100" | FileCheck %s --check-prefix=OPTIONS
// RUN: mantissa-opt %s --split-input-file --verify-diagnostics --insert-loss-scaling="mode=static scale=1024" | FileCheck %s --check-prefix=STATIC
// RUN: mantissa-opt %s --split-input-file --insert-loss-scaling=mode=none | FileCheck %s --check-prefix=NONE
// RUN: not mantissa-opt %s --split-input-file --insert-loss-scaling=mode=always 2>&1 | FileCheck %s --check-prefix=BADMODE
// RUN: not mantissa-opt %s --split-input-file --insert-loss-scaling=backoff-factor=2 2>&1 | FileCheck %s --check-prefix=BADBACKOFF
// RUN: not mantissa-opt %s --split-input-file --insert-loss-scaling="mode=static scale=inf" 2>&1 | FileCheck %s --check-prefix=INFSCALE
// RUN: not mantissa-opt %s --split-input-file --insert-loss-scaling=growth-factor=inf 2>&1 | FileCheck %s --check-prefix=INFGROWTH

// BADMODE: error: insert-loss-scaling: unknown mode 'always' (expected dynamic, static or none)
// BADBACKOFF: error: insert-loss-scaling: invalid option: backoff-factor must be in (0, 1)
// INFSCALE: error: insert-loss-scaling: invalid option: scale must be a finite number > 0
// INFGROWTH: error: insert-loss-scaling: invalid option: growth-factor must be a finite number > 1

// Dynamic (GradScaler's defaults): the seed is multiplied by the scale, every
// gradient by 1/S before its update, one all_finite over the gradients times 1/S
// (the unscaled values, computed inside the check, so that only the update reads
// the unscale and it fuses into the update) gates the updates and the step count,
// and the scale adapts.
// CHECK-LABEL: func.func @train_step() -> tensor<f32>
//       CHECK:   %[[S:.*]] = graph.buffer "scaler.scale" {init = "value", kind = "scaler", value = 6.553600e+04 : f64} : tensor<f32>
//       CHECK:   %[[T:.*]] = graph.buffer "scaler.growth_tracker" {init = "zeros", kind = "scaler"} : tensor<f32>
//       CHECK:   %[[STEP:.*]] = graph.buffer "optimizer.step"
//       CHECK:   %[[WBUF:.*]] = graph.buffer "fc.weight.momentum_buffer"
//       CHECK:   %[[BBUF:.*]] = graph.buffer "fc.bias.momentum_buffer"
//       CHECK:   %[[W:.*]] = graph.param "fc.weight"
//       CHECK:   %[[B:.*]] = graph.param "fc.bias"
//       CHECK:   %[[ONE:.*]] = graph.constant 1.000000e+00 {graph.loss_seed} : tensor<f32>
//  CHECK-NEXT:   %[[SEED:.*]] = graph.mul %[[ONE]], %[[S]] : tensor<f32>, tensor<f32> -> tensor<f32>
//  CHECK-NEXT:   %[[DZ:.*]] = graph.softmax_cross_entropy_backward %{{.*}}, %{{.*}}, %[[SEED]]
//       CHECK:   %[[DW:.*]] = graph.matmul %[[DZ]]
//       CHECK:   %[[DB:.*]] = graph.reduce_sum %[[DZ]]
//   CHECK-NOT:   graph.finite_flag
//       CHECK:   %[[C1:.*]] = graph.constant 1.000000e+00 : tensor<f32>
//  CHECK-NEXT:   %[[INV:.*]] = graph.div %[[C1]], %[[S]] : tensor<f32>, tensor<f32> -> tensor<f32>
//  CHECK-NEXT:   %[[DWU:.*]] = graph.mul %[[DW]], %[[INV]] : tensor<4x3xf32>, tensor<f32> -> tensor<4x3xf32>
//  CHECK-NEXT:   %[[DBU:.*]] = graph.mul %[[DB]], %[[INV]] : tensor<4xf32>, tensor<f32> -> tensor<4xf32>
//  CHECK-NEXT:   %[[OK:.*]] = graph.all_finite %[[DW]], %[[DB]] times %[[INV]] {graph.found_finite} : tensor<4x3xf32>, tensor<4xf32> times tensor<f32> -> tensor<f32>
//  CHECK-NEXT:   %[[W2:.*]], %[[WBUF2:.*]] = graph.sgd_update %[[W]], %[[DWU]], %[[WBUF]], %[[OK]], %[[STEP]]
//       CHECK:   %[[B2:.*]], %[[BBUF2:.*]] = graph.sgd_update %[[B]], %[[DBU]], %[[BBUF]], %[[OK]], %[[STEP]]
//       CHECK:   %[[STEP2:.*]] = graph.add %[[STEP]], %[[OK]]
//  CHECK-NEXT:   graph.assign "optimizer.step", %[[STEP2]]
//  CHECK-NEXT:   %[[S2:.*]], %[[T2:.*]] = graph.loss_scale_update %[[S]], %[[T]], %[[OK]] : tensor<f32>
//  CHECK-NEXT:   graph.assign "scaler.scale", %[[S2]] : tensor<f32>
//  CHECK-NEXT:   graph.assign "scaler.growth_tracker", %[[T2]] : tensor<f32>
//  CHECK-NEXT:   return

// OPTIONS-LABEL: func.func @train_step
//       OPTIONS:   graph.buffer "scaler.scale" {init = "value", kind = "scaler", value = 1.024000e+03 : f64}
//       OPTIONS:   graph.loss_scale_update %{{.*}}, %{{.*}}, %{{.*}} {backoff_factor = 2.500000e-01 : f64, growth_factor = 4.000000e+00 : f64, growth_interval = 100 : i64} : tensor<f32>

// Static: a fixed scale, non-finite steps still skipped, no scale update.
// STATIC-LABEL: func.func @train_step
//       STATIC:   %[[S:.*]] = graph.buffer "scaler.scale" {init = "value", kind = "scaler", value = 1.024000e+03 : f64} : tensor<f32>
//   STATIC-NOT:   scaler.growth_tracker
//       STATIC:   graph.mul %{{.*}}, %[[S]]
//       STATIC:   graph.div %{{.*}}, %[[S]]
//       STATIC:   %[[OK:.*]] = graph.all_finite {{.*}} {graph.found_finite}
//       STATIC:   graph.sgd_update {{.*}}, %[[OK]], %{{.*}} {
//   STATIC-NOT:   graph.loss_scale_update
//   STATIC-NOT:   "scaler.scale"
//       STATIC:   return

// NONE-LABEL: func.func @train_step
//   NONE-NOT:   scaler
//       NONE:   graph.constant 1.000000e+00 {graph.finite_flag}
//   NONE-NOT:   graph.all_finite
module {
  func.func @train_step() -> tensor<f32> {
    %step = graph.buffer "optimizer.step" {init = "zeros", kind = "optimizer"} : tensor<f32>
    %wbuf = graph.buffer "fc.weight.momentum_buffer" {init = "zeros", kind = "optimizer"} : tensor<4x3xf32>
    %bbuf = graph.buffer "fc.bias.momentum_buffer" {init = "zeros", kind = "optimizer"} : tensor<4xf32>
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
    %ok = graph.constant 1.0 {graph.finite_flag} : tensor<f32>
    %w2, %wbuf2 = graph.sgd_update %w, %dw, %wbuf, %ok, %step {lr = 0.1, momentum = 0.9} : tensor<4x3xf32>, tensor<f32>
    graph.assign "fc.weight", %w2 : tensor<4x3xf32>
    graph.assign "fc.weight.momentum_buffer", %wbuf2 : tensor<4x3xf32>
    %b2, %bbuf2 = graph.sgd_update %b, %db, %bbuf, %ok, %step {lr = 0.1, momentum = 0.9} : tensor<4xf32>, tensor<f32>
    graph.assign "fc.bias", %b2 : tensor<4xf32>
    graph.assign "fc.bias.momentum_buffer", %bbuf2 : tensor<4xf32>
    %step2 = graph.add %step, %ok : tensor<f32>, tensor<f32> -> tensor<f32>
    graph.assign "optimizer.step", %step2 : tensor<f32>
    return %l : tensor<f32>
  }
}

// -----

// Adam updates are unscaled and gated the same way.
// CHECK-LABEL: func.func @train_step
//       CHECK:   %[[S:.*]] = graph.buffer "scaler.scale"
//       CHECK:   %[[SEED:.*]] = graph.mul %{{.*}}, %[[S]]
//       CHECK:   %[[R:.*]] = graph.reshape %[[SEED]]
//       CHECK:   %[[G:.*]] = graph.broadcast_to %[[R]]
//       CHECK:   %[[INV:.*]] = graph.div %{{.*}}, %[[S]]
//       CHECK:   %[[GU:.*]] = graph.mul %[[G]], %[[INV]] : tensor<4xf32>, tensor<f32> -> tensor<4xf32>
//       CHECK:   %[[OK:.*]] = graph.all_finite %[[G]] times %[[INV]] {graph.found_finite} : tensor<4xf32> times tensor<f32> -> tensor<f32>
//       CHECK:   graph.adam_update %{{.*}}, %[[GU]], %{{.*}}, %{{.*}}, %[[OK]], %{{.*}} {lr = 1.000000e-03 : f64}
module {
  func.func @train_step() -> tensor<f32> {
    %step = graph.buffer "optimizer.step" {init = "zeros", kind = "optimizer"} : tensor<f32>
    %m = graph.buffer "p.exp_avg" {init = "zeros", kind = "optimizer"} : tensor<4xf32>
    %v = graph.buffer "p.exp_avg_sq" {init = "zeros", kind = "optimizer"} : tensor<4xf32>
    %p = graph.param "p" {init = "ones"} : tensor<4xf32>
    %l = graph.reduce_sum %p {axes = array<i64: 0>} : tensor<4xf32> -> tensor<f32>
    %seed = graph.constant 1.0 {graph.loss_seed} : tensor<f32>
    %r = graph.reshape %seed : tensor<f32> to tensor<1xf32>
    %g = graph.broadcast_to %r : tensor<1xf32> to tensor<4xf32>
    %ok = graph.constant 1.0 {graph.finite_flag} : tensor<f32>
    %p2, %m2, %v2 = graph.adam_update %p, %g, %m, %v, %ok, %step {lr = 0.001} : tensor<4xf32>, tensor<f32>
    graph.assign "p", %p2 : tensor<4xf32>
    graph.assign "p.exp_avg", %m2 : tensor<4xf32>
    graph.assign "p.exp_avg_sq", %v2 : tensor<4xf32>
    %step2 = graph.add %step, %ok : tensor<f32>, tensor<f32> -> tensor<f32>
    graph.assign "optimizer.step", %step2 : tensor<f32>
    return %l : tensor<f32>
  }
}

// -----

// A gradient widened from fp16 or bf16 (exact) is checked before the cast, so the
// stored fp16 value is what waits for the check: half the bytes of the fp32 one.
// A narrowing cast is not skipped (it rounds).
// CHECK-LABEL: func.func @train_step
//       CHECK:   %[[G:.*]] = graph.broadcast_to
//  CHECK-NEXT:   %[[H:.*]] = graph.cast %[[G]] : tensor<4xf32> to tensor<4xf16>
//  CHECK-NEXT:   %[[HP:.*]] = graph.cast %[[H]] : tensor<4xf16> to tensor<4xf32>
//  CHECK-NEXT:   %[[B:.*]] = graph.cast %[[G]] : tensor<4xf32> to tensor<4xbf16>
//  CHECK-NEXT:   %[[BQ:.*]] = graph.cast %[[B]] : tensor<4xbf16> to tensor<4xf32>
//  CHECK-NEXT:   %[[N:.*]] = graph.cast %[[BQ]] : tensor<4xf32> to tensor<4xf16>
//  CHECK-NEXT:   %[[NR:.*]] = graph.cast %[[N]] : tensor<4xf16> to tensor<4xf32>
//       CHECK:   %[[INV:.*]] = graph.div
//       CHECK:   graph.all_finite %[[H]], %[[B]], %[[N]], %[[G]] times %[[INV]] {graph.found_finite} : tensor<4xf16>, tensor<4xbf16>, tensor<4xf16>, tensor<4xf32> times tensor<f32> -> tensor<f32>
module {
  func.func @train_step() -> tensor<f32> {
    %step = graph.buffer "optimizer.step" {init = "zeros", kind = "optimizer"} : tensor<f32>
    %p = graph.param "p" {init = "ones"} : tensor<4xf32>
    %q = graph.param "q" {init = "ones"} : tensor<4xf32>
    %u = graph.param "u" {init = "ones"} : tensor<4xf32>
    %v = graph.param "v" {init = "ones"} : tensor<4xf32>
    %l = graph.reduce_sum %p {axes = array<i64: 0>} : tensor<4xf32> -> tensor<f32>
    %seed = graph.constant 1.0 {graph.loss_seed} : tensor<f32>
    %r = graph.reshape %seed : tensor<f32> to tensor<1xf32>
    %g = graph.broadcast_to %r : tensor<1xf32> to tensor<4xf32>
    %h = graph.cast %g : tensor<4xf32> to tensor<4xf16>
    %hp = graph.cast %h : tensor<4xf16> to tensor<4xf32>
    %b = graph.cast %g : tensor<4xf32> to tensor<4xbf16>
    %bq = graph.cast %b : tensor<4xbf16> to tensor<4xf32>
    %n = graph.cast %bq : tensor<4xf32> to tensor<4xf16>
    %nr = graph.cast %n : tensor<4xf16> to tensor<4xf32>
    %ok = graph.constant 1.0 {graph.finite_flag} : tensor<f32>
    %p2, %pb = graph.sgd_update %p, %hp, %p, %ok, %step {lr = 0.5} : tensor<4xf32>, tensor<f32>
    graph.assign "p", %p2 : tensor<4xf32>
    %q2, %qb = graph.sgd_update %q, %bq, %q, %ok, %step {lr = 0.5} : tensor<4xf32>, tensor<f32>
    graph.assign "q", %q2 : tensor<4xf32>
    %u2, %ub = graph.sgd_update %u, %nr, %u, %ok, %step {lr = 0.5} : tensor<4xf32>, tensor<f32>
    graph.assign "u", %u2 : tensor<4xf32>
    %v2, %vb = graph.sgd_update %v, %g, %v, %ok, %step {lr = 0.5} : tensor<4xf32>, tensor<f32>
    graph.assign "v", %v2 : tensor<4xf32>
    %step2 = graph.add %step, %ok : tensor<f32>, tensor<f32> -> tensor<f32>
    graph.assign "optimizer.step", %step2 : tensor<f32>
    return %l : tensor<f32>
  }
}

// -----

// expected-error @+1 {{insert-loss-scaling: @train_step has no finite flag (graph.constant {graph.finite_flag}); run --lower-optimizer first}}
func.func @train_step() -> tensor<f32> {
  %seed = graph.constant 1.0 {graph.loss_seed} : tensor<f32>
  return %seed : tensor<f32>
}

// -----

// expected-error @+1 {{insert-loss-scaling: @train_step has no loss seed (graph.constant {graph.loss_seed}); run --autodiff first}}
func.func @train_step() -> tensor<f32> {
  %ok = graph.constant 1.0 {graph.finite_flag} : tensor<f32>
  return %ok : tensor<f32>
}

// -----

func.func @train_step() -> tensor<f32> {
  // expected-error @+1 {{insert-loss-scaling: @train_step already has loss-scaler state}}
  %s = graph.buffer "scaler.scale" {init = "value", value = 65536.0, kind = "scaler"} : tensor<f32>
  %seed = graph.constant 1.0 {graph.loss_seed} : tensor<f32>
  return %seed : tensor<f32>
}
