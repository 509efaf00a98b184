// RUN: mantissa-opt %s --split-input-file --fuse-elementwise | FileCheck %s
// RUN: mantissa-opt %s --split-input-file --fuse-elementwise=gemm-epilogue=false | FileCheck %s --check-prefix=SPLIT
// RUN: mantissa-opt %s --split-input-file --fuse-elementwise="gemm-epilogue=false split-bias=false" | FileCheck %s --check-prefix=NOSPLIT
// In a plan without GEMM epilogues: the fused program rounds an f16 value read
// inside the kernel where the unfused ops stored it (fc1's bias add, read by its
// relu, in mlp_digits).
// RUN: mantissa compile %models/mlp_digits.mlir -o %t.plan --precision fp16 --no-gemm-epilogue
// RUN: mantissa inspect %t.plan | FileCheck %s --check-prefix=PLAN
// With them (the default): fc1's and fc2's bias and relu are their GEMMs' epilogues,
// fc3's bias too (its result goes to the loss through a cast).
// RUN: mantissa compile %models/mlp_digits.mlir -o %t.epilogue.plan --precision fp16
// RUN: mantissa inspect %t.epilogue.plan | FileCheck %s --check-prefix=EPILOGUE
// RUN: mantissa compile %models/mlp_digits.mlir -o %t.unfused.plan --precision fp16 --no-fuse
// RUN: mantissa inspect %t.unfused.plan | FileCheck %s --check-prefix=UNFUSED

// PLAN-LABEL: function train_step:
// PLAN:       fc1 graph.linear Gemm f16 {{.*}} c=[[H:t[0-9]+]]:f16[64x128]
// PLAN-NEXT:  fc1+relu graph.fused Elementwise f16 shape [64x128]
// PLAN-NEXT:    in0 = [[H]]:f16[64x128] strides [128, 1]
// PLAN-NEXT:    in1 = {{.*}}:f16[128] strides [0, 1]
// PLAN-NEXT:    r0 = Load in0
// PLAN-NEXT:    r1 = Load in1
// PLAN-NEXT:    r2 = Add r0, r1
// PLAN-NEXT:    r3 = RoundF16 r2
// PLAN-NEXT:    r4 = Relu r3
// relu_grad reads the relu's result, so the pre-activation is not stored.
// PLAN-NEXT:    out0 {{.*}}:f16[64x128] = r4
// PLAN-NEXT:  fc2 graph.linear
// PLAN-LABEL: function eval_step:
// EPILOGUE-LABEL: function train_step:
// EPILOGUE:       fc1 graph.linear Gemm f16 {{.*}} c=[[R:t[0-9]+]]:f16[64x128] {{.*}} epilogue=bias+relu bias={{t[0-9]+}}(fc1.bias:f16):f16[128]
// EPILOGUE-NEXT:  fc2 graph.linear Gemm f16 a=[[R]]:f16[64x128] {{.*}} epilogue=bias+relu bias={{t[0-9]+}}(fc2.bias:f16):f16[128]
// EPILOGUE-NEXT:  fc3 graph.linear Gemm f16 {{.*}} epilogue=bias bias={{t[0-9]+}}(fc3.bias:f16):f16[10]
// EPILOGUE-NEXT:  cast.4 graph.cast Elementwise f32 shape [64x10]
// EPILOGUE-NOT:   fc1+relu
// EPILOGUE-LABEL: function eval_step:
// EPILOGUE:       fc1 graph.linear Gemm f16 {{.*}} epilogue=bias+relu
// UNFUSED:     fc1 graph.linear Gemm f16
// UNFUSED-NEXT: fc1.bias_add graph.linear Elementwise f16
// UNFUSED-NOT: graph.fused

// A bias add and its activation become one kernel named after both; the bias
// [8] is broadcast by the kernel's load, not fused.
// CHECK-LABEL: func.func @bias_relu
//       CHECK:   %[[X:.*]] = graph.input "x"
//       CHECK:   %[[B:.*]] = graph.param "fc1.bias"
//  CHECK-NEXT:   %[[F:.*]] = graph.fused(%[[X]], %[[B]]) {graph.name = "fc1+relu"} : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32> {
//  CHECK-NEXT:   ^bb0(%[[AX:.*]]: tensor<4x8xf32>, %[[AB:.*]]: tensor<8xf32>):
//  CHECK-NEXT:     %[[H:.*]] = graph.add %[[AX]], %[[AB]] {graph.name = "fc1"}
//  CHECK-NEXT:     %[[R:.*]] = graph.relu %[[H]] : tensor<4x8xf32>
//  CHECK-NEXT:     graph.yield %[[R]] : tensor<4x8xf32>
//  CHECK-NEXT:   }
//  CHECK-NEXT:   return %[[F]]
func.func @bias_relu() -> tensor<4x8xf32> {
  %x = graph.input "x" : tensor<4x8xf32>
  %b = graph.param "fc1.bias" {init = "zeros"} : tensor<8xf32>
  %h = graph.add %x, %b {graph.name = "fc1"} : tensor<4x8xf32>, tensor<8xf32> -> tensor<4x8xf32>
  %r = graph.relu %h : tensor<4x8xf32>
  return %r : tensor<4x8xf32>
}

// -----

// Producers of a smaller shape stay stored inputs: the bias cast [8] and the
// scalar 1/scale would otherwise be recomputed for every element of [4x8].
// CHECK-LABEL: func.func @broadcast_producers_stay
//       CHECK:   %[[BC:.*]] = graph.cast %{{.*}} : tensor<8xf32> to tensor<8xf16>
//       CHECK:   %[[INV:.*]] = graph.div %{{.*}}, %{{.*}} : tensor<f32>, tensor<f32> -> tensor<f32>
//       CHECK:   graph.fused(%{{.*}}, %[[BC]], %[[INV]]) {graph.name = "add+cast+mul"}
//       CHECK:     graph.add
//  CHECK-NEXT:     graph.cast
//  CHECK-NEXT:     graph.mul
//       CHECK:   return
func.func @broadcast_producers_stay() -> tensor<4x8xf32> {
  %x = graph.input "x" : tensor<4x8xf16>
  %b = graph.param "b" {init = "zeros"} : tensor<8xf32>
  %s = graph.buffer "scaler.scale" {init = "value", value = 1024.0, kind = "scaler"} : tensor<f32>
  %one = graph.constant 1.0 : tensor<f32>
  %bc = graph.cast %b : tensor<8xf32> to tensor<8xf16>
  %inv = graph.div %one, %s : tensor<f32>, tensor<f32> -> tensor<f32>
  %h = graph.add %x, %bc : tensor<4x8xf16>, tensor<8xf16> -> tensor<4x8xf16>
  %h32 = graph.cast %h : tensor<4x8xf16> to tensor<4x8xf32>
  %u = graph.mul %h32, %inv : tensor<4x8xf32>, tensor<f32> -> tensor<4x8xf32>
  return %u : tensor<4x8xf32>
}

// -----

// A matmul is a boundary: the chains before and after it fuse separately.
// The pre-activation %h is read by relu inside the group and by relu_grad
// after the matmul, so it becomes a second result; relu_grad cannot join the
// group, which the matmul (reading the relu) must follow while relu_grad reads
// the matmul.
// CHECK-LABEL: func.func @matmul_boundary
//       CHECK:   %[[F:.*]]:2 = graph.fused(%{{.*}}, %{{.*}}) {graph.name = "add+relu"} : (tensor<4x4xf32>, tensor<4x4xf32>) -> (tensor<4x4xf32>, tensor<4x4xf32>) {
//       CHECK:     %[[H:.*]] = graph.add
//  CHECK-NEXT:     %[[R:.*]] = graph.relu %[[H]]
//  CHECK-NEXT:     graph.yield %[[H]], %[[R]] : tensor<4x4xf32>, tensor<4x4xf32>
//       CHECK:   %[[M:.*]] = graph.matmul %[[F]]#1, %{{.*}}
//  CHECK-NEXT:   %[[G:.*]] = graph.fused(%[[F]]#0, %[[M]]) {graph.name = "relu_grad+neg"}
//       CHECK:     graph.relu_grad
//  CHECK-NEXT:     graph.neg
//       CHECK:   return %[[G]]
func.func @matmul_boundary() -> tensor<4x4xf32> {
  %x = graph.input "x" : tensor<4x4xf32>
  %y = graph.input "y" : tensor<4x4xf32>
  %w = graph.param "w" {init = "zeros"} : tensor<4x4xf32>
  %h = graph.add %x, %y : tensor<4x4xf32>, tensor<4x4xf32> -> tensor<4x4xf32>
  %r = graph.relu %h : tensor<4x4xf32>
  %m = graph.matmul %r, %w : tensor<4x4xf32>, tensor<4x4xf32> -> tensor<4x4xf32>
  %g = graph.relu_grad %h, %m : tensor<4x4xf32>
  %n = graph.neg %g : tensor<4x4xf32>
  return %n : tensor<4x4xf32>
}

// -----

// A value read by a non-elementwise op between producer and consumer: the
// fused op moves up before that reader (every other operand is ready there)
// and gives the value to it as a second result.
// CHECK-LABEL: func.func @hoisted_before_reader
//       CHECK:   %[[F:.*]]:2 = graph.fused(%{{.*}}, %{{.*}}) {graph.name = "add+relu"}
//       CHECK:   graph.yield
//       CHECK:   %[[S:.*]] = graph.reduce_sum %[[F]]#0
//  CHECK-NEXT:   return %[[S]], %[[F]]#1
func.func @hoisted_before_reader() -> (tensor<f32>, tensor<4x4xf32>) {
  %x = graph.input "x" : tensor<4x4xf32>
  %y = graph.input "y" : tensor<4x4xf32>
  %a = graph.add %x, %y : tensor<4x4xf32>, tensor<4x4xf32> -> tensor<4x4xf32>
  %s = graph.reduce_sum %a {axes = array<i64: 0, 1>} : tensor<4x4xf32> -> tensor<f32>
  %r = graph.relu %a : tensor<4x4xf32>
  return %s, %r : tensor<f32>, tensor<4x4xf32>
}

// -----

// Cast chains (autocast around an op that follows its inputs) and a backward
// relu_grad in f16 with the cast of its gradient back to f32 fuse.
// CHECK-LABEL: func.func @cast_chains
//       CHECK:   graph.fused(%{{.*}}) {graph.name = "cast+relu+cast"} : (tensor<4x8xf32>) -> tensor<4x8xf32>
//  CHECK-NEXT:   ^bb0
//  CHECK-NEXT:     graph.cast %{{.*}} : tensor<4x8xf32> to tensor<4x8xf16>
//  CHECK-NEXT:     graph.relu %{{.*}} : tensor<4x8xf16>
//  CHECK-NEXT:     graph.cast %{{.*}} : tensor<4x8xf16> to tensor<4x8xf32>
//  CHECK-NEXT:     graph.yield
//       CHECK:   graph.fused(%{{.*}}, %{{.*}}) {graph.name = "relu_grad+cast"} : (tensor<4x8xf16>, tensor<4x8xf16>) -> tensor<4x8xf32>
//  CHECK-NEXT:   ^bb0
//  CHECK-NEXT:     graph.relu_grad %{{.*}}, %{{.*}} : tensor<4x8xf16>
//  CHECK-NEXT:     graph.cast %{{.*}} : tensor<4x8xf16> to tensor<4x8xf32>
func.func @cast_chains() -> (tensor<4x8xf32>, tensor<4x8xf32>) {
  %x = graph.input "x" : tensor<4x8xf32>
  %h = graph.input "h" : tensor<4x8xf16>
  %d = graph.input "d" : tensor<4x8xf16>
  %c = graph.cast %x : tensor<4x8xf32> to tensor<4x8xf16>
  %r = graph.relu %c : tensor<4x8xf16>
  %r32 = graph.cast %r : tensor<4x8xf16> to tensor<4x8xf32>
  %g = graph.relu_grad %h, %d : tensor<4x8xf16>
  %g32 = graph.cast %g : tensor<4x8xf16> to tensor<4x8xf32>
  return %r32, %g32 : tensor<4x8xf32>, tensor<4x8xf32>
}

// -----

// The gradient unscale fuses into the optimizer update, which then writes the
// new parameter and momentum buffer in the same kernel. (Here the finite flag
// is given; below, graph.all_finite sits in between.)
// CHECK-LABEL: func.func @unscale_sgd
//       CHECK:   %[[F:.*]]:2 = graph.fused({{.*}}) {graph.name = "mul+sgd_update"}
//       CHECK:     graph.mul
//  CHECK-NEXT:     graph.sgd_update
//       CHECK:   graph.assign "w", %[[F]]#0
//  CHECK-NEXT:   graph.assign "w.momentum_buffer", %[[F]]#1
func.func @unscale_sgd() {
  %w = graph.param "w" {init = "zeros"} : tensor<4x8xf32>
  %buf = graph.buffer "w.momentum_buffer" {init = "zeros", kind = "optimizer"} : tensor<4x8xf32>
  %step = graph.buffer "optimizer.step" {init = "zeros", kind = "optimizer"} : tensor<f32>
  %inv = graph.buffer "inv" {init = "ones"} : tensor<f32>
  %ok = graph.constant 1.0 {graph.finite_flag} : tensor<f32>
  %g = graph.input "g" : tensor<4x8xf32>
  %gu = graph.mul %g, %inv : tensor<4x8xf32>, tensor<f32> -> tensor<4x8xf32>
  %p2, %b2 = graph.sgd_update %w, %gu, %buf, %ok, %step {lr = 0.1 : f64, momentum = 0.9 : f64} : tensor<4x8xf32>, tensor<f32>
  graph.assign "w", %p2 : tensor<4x8xf32>
  graph.assign "w.momentum_buffer", %b2 : tensor<4x8xf32>
  return
}

// -----

// With loss scaling, graph.all_finite reads the unscaled gradient and the
// update reads its flag: fusing the unscale into the update would put the
// unscale after the check that reads it. The cast of the f16 gradient fuses
// into the unscale instead, and the update stays its own kernel.
// CHECK-LABEL: func.func @unscale_all_finite
//       CHECK:   %[[U:.*]] = graph.fused(%{{.*}}, %{{.*}}) {graph.name = "cast+mul"}
//       CHECK:   %[[OK:.*]] = graph.all_finite %[[U]]
//  CHECK-NEXT:   graph.sgd_update %{{.*}}, %[[U]], %{{.*}}, %[[OK]], %{{.*}}
func.func @unscale_all_finite() {
  %w = graph.param "w" {init = "zeros"} : tensor<4x8xf32>
  %buf = graph.buffer "w.momentum_buffer" {init = "zeros", kind = "optimizer"} : tensor<4x8xf32>
  %step = graph.buffer "optimizer.step" {init = "zeros", kind = "optimizer"} : tensor<f32>
  %inv = graph.buffer "inv" {init = "ones"} : tensor<f32>
  %g = graph.input "g" : tensor<4x8xf16>
  %g32 = graph.cast %g : tensor<4x8xf16> to tensor<4x8xf32>
  %gu = graph.mul %g32, %inv : tensor<4x8xf32>, tensor<f32> -> tensor<4x8xf32>
  %ok = graph.all_finite %gu {graph.found_finite} : tensor<4x8xf32> -> tensor<f32>
  %p2, %b2 = graph.sgd_update %w, %gu, %buf, %ok, %step {lr = 0.1 : f64, momentum = 0.9 : f64} : tensor<4x8xf32>, tensor<f32>
  graph.assign "w", %p2 : tensor<4x8xf32>
  graph.assign "w.momentum_buffer", %b2 : tensor<4x8xf32>
  return
}

// -----

// A producer read by two consumers: the first fusion keeps its result as an
// extra output, the second consumer then joins and the extra output goes.
// CHECK-LABEL: func.func @two_consumers
//       CHECK:   %[[F:.*]]:2 = graph.fused(%{{.*}}, %{{.*}}) {graph.name = "add+relu+neg"}
//       CHECK:     graph.yield %{{.*}}, %{{.*}} : tensor<4x4xf32>, tensor<4x4xf32>
//  CHECK-NEXT:   }
//  CHECK-NEXT:   return %[[F]]#0, %[[F]]#1
func.func @two_consumers() -> (tensor<4x4xf32>, tensor<4x4xf32>) {
  %x = graph.input "x" : tensor<4x4xf32>
  %y = graph.input "y" : tensor<4x4xf32>
  %a = graph.add %x, %y : tensor<4x4xf32>, tensor<4x4xf32> -> tensor<4x4xf32>
  %r = graph.relu %a : tensor<4x4xf32>
  %n = graph.neg %a : tensor<4x4xf32>
  return %r, %n : tensor<4x4xf32>, tensor<4x4xf32>
}

// -----

// Without GEMM epilogues, the bias of a linear whose result an activation reads
// is split off, and joins the activation's kernel: GEMM, bias add, relu (3
// kernels) become the GEMM and one fused kernel; the pre-activation that
// relu_grad reads later is a second result. The last layer's result goes to the
// loss: nothing to fuse with, its bias stays in the linear.
// SPLIT-LABEL: func.func @linear_bias
//       SPLIT:   %[[Y:.*]] = graph.linear %{{.*}}, %{{.*}} {graph.name = "fc1"} : tensor<4x3xf32>, tensor<8x3xf32> -> tensor<4x8xf32>
//  SPLIT-NEXT:   %[[F:.*]]:2 = graph.fused(%[[Y]], %{{.*}}) {graph.name = "fc1+relu"}
//       SPLIT:     graph.add %{{.*}}, %{{.*}} {graph.name = "fc1"} : tensor<4x8xf32>, tensor<8xf32> -> tensor<4x8xf32>
//  SPLIT-NEXT:     graph.relu
//       SPLIT:   graph.linear %[[F]]#1, %{{.*}}, %{{.*}} {graph.name = "fc2"} : tensor<4x8xf32>, tensor<2x8xf32>, tensor<2xf32> -> tensor<4x2xf32>
//       SPLIT:   %[[G:.*]] = graph.matmul
//  SPLIT-NEXT:   graph.relu_grad %[[F]]#0, %[[G]]
// With them (the default), both biases are epilogues; the relu does not fold,
// since relu_grad reads the pre-activation too.
// CHECK-LABEL: func.func @linear_bias
//       CHECK:   %[[H:.*]] = graph.linear %{{.*}}, %{{.*}}, %{{.*}} {graph.epilogue = "bias", graph.name = "fc1"}
//  CHECK-NEXT:   %[[R:.*]] = graph.relu %[[H]]
//  CHECK-NEXT:   graph.linear %[[R]], %{{.*}}, %{{.*}} {graph.epilogue = "bias", graph.name = "fc2"}
//       CHECK:   graph.relu_grad %[[H]],
// Without the split (and without epilogues) the bias stays in fc1 and nothing
// fuses: a fused op would read fc1's result, so it would stand after it.
// NOSPLIT-LABEL: func.func @linear_bias
//       NOSPLIT:   graph.linear %{{.*}}, %{{.*}}, %{{.*}} {graph.name = "fc1"}
//   NOSPLIT-NOT:   graph.fused
//       NOSPLIT:   return
func.func @linear_bias() -> (tensor<4x2xf32>, tensor<4x8xf32>) {
  %x = graph.input "x" : tensor<4x3xf32>
  %w1 = graph.param "fc1.weight" {init = "zeros"} : tensor<8x3xf32>
  %b1 = graph.param "fc1.bias" {init = "zeros"} : tensor<8xf32>
  %w2 = graph.param "fc2.weight" {init = "zeros"} : tensor<2x8xf32>
  %b2 = graph.param "fc2.bias" {init = "zeros"} : tensor<2xf32>
  %h = graph.linear %x, %w1, %b1 {graph.name = "fc1"} : tensor<4x3xf32>, tensor<8x3xf32>, tensor<8xf32> -> tensor<4x8xf32>
  %r = graph.relu %h : tensor<4x8xf32>
  %z = graph.linear %r, %w2, %b2 {graph.name = "fc2"} : tensor<4x8xf32>, tensor<2x8xf32>, tensor<2xf32> -> tensor<4x2xf32>
  %g = graph.matmul %z, %w2 : tensor<4x2xf32>, tensor<2x8xf32> -> tensor<4x8xf32>
  %d = graph.relu_grad %h, %g : tensor<4x8xf32>
  return %z, %d : tensor<4x2xf32>, tensor<4x8xf32>
}

// -----

// A relu that alone reads a linear's result folds into the GEMM's epilogue with
// the bias (relu_grad reads the relu's result, which is now the linear's). A GELU
// does not fold (cuBLASLt's GELU is not the exact erf GELU), nor does a linear
// whose bias has another element type, nor one without a bias.
// CHECK-LABEL: func.func @linear_epilogue
//       CHECK:   %[[R:.*]] = graph.linear %{{.*}}, %{{.*}}, %{{.*}} {graph.epilogue = "bias_relu", graph.name = "fc1"}
//   CHECK-NOT:   graph.relu %
//       CHECK:   %[[Z:.*]] = graph.linear %[[R]], %{{.*}}, %{{.*}} {graph.epilogue = "bias", graph.name = "fc2"}
//  CHECK-NEXT:   %[[G:.*]] = graph.fused(%[[Z]]) {graph.name = "gelu+cast"}
//  CHECK-NEXT:   ^bb0
//  CHECK-NEXT:     graph.gelu
//       CHECK:   %[[N:.*]] = graph.linear %[[G]], %{{.*}} {graph.name = "fc3"}
//  CHECK-NEXT:   %[[M:.*]] = graph.linear %[[N]], %{{.*}}, %{{.*}} {graph.name = "fc4"} : tensor<4x2xf16>, tensor<2x2xf16>, tensor<2xf32> -> tensor<4x2xf16>
//       CHECK:   graph.relu_grad %[[R]],
// NOSPLIT-LABEL: func.func @linear_epilogue
//   NOSPLIT-NOT:   graph.epilogue
func.func @linear_epilogue() -> (tensor<4x2xf32>, tensor<4x8xf32>) {
  %x = graph.input "x" : tensor<4x3xf32>
  %w1 = graph.param "fc1.weight" {init = "zeros"} : tensor<8x3xf32>
  %b1 = graph.param "fc1.bias" {init = "zeros"} : tensor<8xf32>
  %w2 = graph.param "fc2.weight" {init = "zeros"} : tensor<2x8xf32>
  %b2 = graph.param "fc2.bias" {init = "zeros"} : tensor<2xf32>
  %w3 = graph.input "w3" : tensor<2x2xf16>
  %w4 = graph.input "w4" : tensor<2x2xf16>
  %b4 = graph.param "fc4.bias" {init = "zeros"} : tensor<2xf32>
  %h = graph.linear %x, %w1, %b1 {graph.name = "fc1"} : tensor<4x3xf32>, tensor<8x3xf32>, tensor<8xf32> -> tensor<4x8xf32>
  %r = graph.relu %h : tensor<4x8xf32>
  %z = graph.linear %r, %w2, %b2 {graph.name = "fc2"} : tensor<4x8xf32>, tensor<2x8xf32>, tensor<2xf32> -> tensor<4x2xf32>
  %ge = graph.gelu %z : tensor<4x2xf32>
  %c = graph.cast %ge : tensor<4x2xf32> to tensor<4x2xf16>
  %n = graph.linear %c, %w3 {graph.name = "fc3"} : tensor<4x2xf16>, tensor<2x2xf16> -> tensor<4x2xf16>
  %m16 = graph.linear %n, %w4, %b4 {graph.name = "fc4"} : tensor<4x2xf16>, tensor<2x2xf16>, tensor<2xf32> -> tensor<4x2xf16>
  %m = graph.cast %m16 : tensor<4x2xf16> to tensor<4x2xf32>
  %g = graph.matmul %z, %w2 : tensor<4x2xf32>, tensor<2x8xf32> -> tensor<4x8xf32>
  %d = graph.relu_grad %r, %g : tensor<4x8xf32>
  return %m, %d : tensor<4x2xf32>, tensor<4x8xf32>
}

// -----

// A relu whose operand is a batch norm's normalised result, read by nothing else,
// folds into the batch norm (emit-plan: BatchNorm relu, one pass over the
// activation instead of two). A batch norm whose result is also read elsewhere
// keeps its relu.
// CHECK-LABEL: func.func @bn_relu
//       CHECK:   %[[Y:.*]], %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} = graph.batch_norm %{{.*}} {graph.activation = "relu", graph.name = "b1"}
//   CHECK-NOT:   graph.relu %[[Y]]
//       CHECK:   %[[Z:.*]], %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} = graph.batch_norm %[[Y]], {{.*}} {graph.name = "b2"}
//       CHECK:   %[[R:.*]] = graph.relu %[[Z]]
//       CHECK:   return %[[Y]], %[[R]], %[[Z]]
func.func @bn_relu() -> (tensor<2x4x3x3xf32>, tensor<2x4x3x3xf32>, tensor<2x4x3x3xf32>) {
  %x = graph.input "x" : tensor<2x4x3x3xf32>
  %g = graph.param "g" {init = "ones"} : tensor<4xf32>
  %b = graph.param "b" {init = "zeros"} : tensor<4xf32>
  %rm = graph.buffer "rm" {init = "zeros"} : tensor<4xf32>
  %rv = graph.buffer "rv" {init = "ones"} : tensor<4xf32>
  %n, %m, %i, %rm2, %rv2 = graph.batch_norm %x, %g, %b, %rm, %rv {graph.name = "b1"} : tensor<2x4x3x3xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<2x4x3x3xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>
  %r = graph.relu %n : tensor<2x4x3x3xf32>
  %n2, %m2, %i2, %rm3, %rv3 = graph.batch_norm %r, %g, %b, %rm, %rv {graph.name = "b2"} : tensor<2x4x3x3xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<2x4x3x3xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>
  %r2 = graph.relu %n2 : tensor<2x4x3x3xf32>
  return %r, %r2, %n2 : tensor<2x4x3x3xf32>, tensor<2x4x3x3xf32>, tensor<2x4x3x3xf32>
}

// -----

// A relu_grad that only a batch-norm backward reads folds into it as its mask when
// its gradient comes from a kernel that is not elementwise (here a matmul); one whose
// gradient is an elementwise sum (a skip connection's) fuses with that sum instead.
// CHECK-LABEL: func.func @bn_backward_mask
//       CHECK:   %[[D:.*]] = graph.matmul
//   CHECK-NOT:   graph.relu_grad
//       CHECK:   graph.batch_norm_backward %[[D]], %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[R:[^ ]*]] : {{.*}}
//       CHECK:   graph.fused({{.*}}) {graph.name = "add+relu_grad"}
//       CHECK:   graph.batch_norm_backward %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} : tensor<4x4xf32>, tensor<4x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32> ->
func.func @bn_backward_mask(%x: tensor<4x4xf32>, %r: tensor<4x4xf32>, %w: tensor<4x4xf32>, %g: tensor<4xf32>, %m: tensor<4xf32>, %i: tensor<4xf32>, %s: tensor<4x4xf32>) -> (tensor<4x4xf32>, tensor<4x4xf32>) {
  %d = graph.matmul %x, %w : tensor<4x4xf32>, tensor<4x4xf32> -> tensor<4x4xf32>
  %dr = graph.relu_grad %r, %d : tensor<4x4xf32>
  %dx, %dg, %db = graph.batch_norm_backward %dr, %x, %g, %m, %i : tensor<4x4xf32>, tensor<4x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<4x4xf32>, tensor<4xf32>, tensor<4xf32>
  %sum = graph.add %dx, %s : tensor<4x4xf32>, tensor<4x4xf32> -> tensor<4x4xf32>
  %dr2 = graph.relu_grad %r, %sum : tensor<4x4xf32>
  %dx2, %dg2, %db2 = graph.batch_norm_backward %dr2, %x, %g, %m, %i : tensor<4x4xf32>, tensor<4x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<4x4xf32>, tensor<4xf32>, tensor<4xf32>
  return %dx, %dx2 : tensor<4x4xf32>, tensor<4x4xf32>
}
