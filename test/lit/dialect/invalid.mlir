// Verifier and shape-inference errors, reported at the op with the shapes involved.
// RUN: mantissa-opt %s --split-input-file --verify-diagnostics

func.func @linear_features(%x: tensor<8x3xf32>, %w: tensor<4x5xf32>) {
  // expected-error @+2 {{'graph.linear' input has 3 features but the weight [4x5] expects 5}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = graph.linear %x, %w : tensor<8x3xf32>, tensor<4x5xf32> -> tensor<8x4xf32>
  return
}

// -----

func.func @linear_mixed_types(%x: tensor<8x3xf16>, %w: tensor<4x3xf32>) {
  // expected-error @+2 {{'graph.linear' operands must have one element type (insert a graph.cast); got f16 and f32}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = graph.linear %x, %w : tensor<8x3xf16>, tensor<4x3xf32> -> tensor<8x4xf16>
  return
}

// -----

func.func @linear_wrong_result(%x: tensor<8x3xf32>, %w: tensor<4x3xf32>) {
  // expected-error @+2 {{'graph.linear' op inferred type(s) 'tensor<8x4xf32>' are incompatible with return type(s) of operation 'tensor<8x5xf32>'}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = graph.linear %x, %w : tensor<8x3xf32>, tensor<4x3xf32> -> tensor<8x5xf32>
  return
}

// -----

func.func @conv_channels(%x: tensor<2x3x8x8xf32>, %w: tensor<6x4x3x3xf32>) {
  // expected-error @+2 {{'graph.conv2d' input has 3 channels but the weight [6x4x3x3] expects 4}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = graph.conv2d %x, %w : tensor<2x3x8x8xf32>, tensor<6x4x3x3xf32> -> tensor<2x6x6x6xf32>
  return
}

// -----

func.func @conv_kernel_too_big(%x: tensor<2x3x2x2xf32>, %w: tensor<6x3x3x3xf32>) {
  // expected-error @+2 {{'graph.conv2d' kernel [6x3x3x3] does not fit the input [2x3x2x2]}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = graph.conv2d %x, %w : tensor<2x3x2x2xf32>, tensor<6x3x3x3xf32> -> tensor<2x6x1x1xf32>
  return
}

// -----

func.func @conv_transpose_channels(%x: tensor<2x3x4x4xf32>, %w: tensor<6x4x2x2xf32>) {
  // expected-error @+2 {{'graph.conv_transpose2d' input has 3 channels but the weight [6x4x2x2] expects 6}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = graph.conv_transpose2d %x, %w {stride = array<i64: 2, 2>} : tensor<2x3x4x4xf32>, tensor<6x4x2x2xf32> -> tensor<2x4x8x8xf32>
  return
}

// -----

func.func @conv_backward_input_shapes(%dy: tensor<2x6x8x8xf32>, %w: tensor<6x3x3x3xf32>) {
  // expected-error @+1 {{'graph.conv2d_backward_input' op shapes do not match a convolution}}
  %dx = graph.conv2d_backward_input %dy, %w {stride = array<i64: 1, 1>, padding = array<i64: 0, 0>} : tensor<2x6x8x8xf32>, tensor<6x3x3x3xf32> -> tensor<2x3x8x8xf32>
  return
}

// -----

func.func @bad_broadcast(%a: tensor<8x4xf32>, %b: tensor<3xf32>) {
  // expected-error @+2 {{operand shapes [8x4] and [3] do not broadcast}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = graph.add %a, %b : tensor<8x4xf32>, tensor<3xf32> -> tensor<8x4xf32>
  return
}

// -----

func.func @broadcast_to_smaller(%a: tensor<8x4xf32>) {
  // expected-error @+1 {{'graph.broadcast_to' op cannot broadcast 'tensor<8x4xf32>' to 'tensor<4xf32>'}}
  %y = graph.broadcast_to %a : tensor<8x4xf32> to tensor<4xf32>
  return
}

// -----

func.func @matmul_inner(%a: tensor<8x3xf32>, %b: tensor<4x3xf32>) {
  // expected-error @+2 {{'graph.matmul' inner dimensions differ: [8x3] and [4x3] (transpose_a=0, transpose_b=0)}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = graph.matmul %a, %b : tensor<8x3xf32>, tensor<4x3xf32> -> tensor<8x3xf32>
  return
}

// -----

func.func @reshape_count(%a: tensor<8x3xf32>) {
  // expected-error @+1 {{'graph.reshape' op cannot reshape 'tensor<8x3xf32>' (24 elements) to 'tensor<25xf32>'}}
  %y = graph.reshape %a : tensor<8x3xf32> to tensor<25xf32>
  return
}

// -----

func.func @reshape_type(%a: tensor<8x3xf32>) {
  // expected-error @+1 {{'graph.reshape' op cannot change the element type (use graph.cast)}}
  %y = graph.reshape %a : tensor<8x3xf32> to tensor<24xf16>
  return
}

// -----

func.func @cast_shape(%a: tensor<8x3xf32>) {
  // expected-error @+1 {{'graph.cast' op cannot change the shape}}
  %y = graph.cast %a : tensor<8x3xf32> to tensor<24xf16>
  return
}

// -----

func.func @transpose_perm(%a: tensor<8x3xf32>) {
  // expected-error @+2 {{'graph.transpose' perm is not a permutation}}
  // expected-error @+1 {{failed to infer returned types}}
  %y = graph.transpose %a {perm = array<i64: 0, 0>} : tensor<8x3xf32> -> tensor<8x8xf32>
  return
}

// -----

func.func @concat_shapes(%a: tensor<2x3xf32>, %b: tensor<3x3xf32>) {
  // expected-error @+2 {{'graph.concat' inputs [2x3] and [3x3] differ off axis 1}}
  // expected-error @+1 {{failed to infer returned types}}
  %c = graph.concat %a, %b {axis = 1} : tensor<2x3xf32>, tensor<3x3xf32> -> tensor<2x6xf32>
  return
}

// -----

func.func @slice_outside(%a: tensor<2x8xf32>) {
  // expected-error @+2 {{'graph.slice' [6, 10) on axis 1 is outside [2x8]}}
  // expected-error @+1 {{failed to infer returned types}}
  %s = graph.slice %a {axis = 1, offset = 6, size = 4} : tensor<2x8xf32> -> tensor<2x4xf32>
  return
}

// -----

func.func @reduce_axis(%a: tensor<2x8xf32>) {
  // expected-error @+2 {{'graph.reduce_sum' axis 2 is out of range or repeated for [2x8]}}
  // expected-error @+1 {{failed to infer returned types}}
  %s = graph.reduce_sum %a {axes = array<i64: 2>} : tensor<2x8xf32> -> tensor<2x8xf32>
  return
}

// -----

func.func @cross_entropy_labels(%z: tensor<8x4xf32>, %y: tensor<6xi32>) {
  // expected-error @+2 {{'graph.softmax_cross_entropy' needs [N, C] logits and [N] labels, got [8x4] and [6]}}
  // expected-error @+1 {{failed to infer returned types}}
  %l = graph.softmax_cross_entropy %z, %y : tensor<8x4xf32>, tensor<6xi32> -> tensor<f32>
  return
}

// -----

func.func @mse_shapes(%a: tensor<8x4xf32>, %b: tensor<8x5xf32>) {
  // expected-error @+2 {{'graph.mse' input [8x4] and target [8x5] differ in shape}}
  // expected-error @+1 {{failed to infer returned types}}
  %l = graph.mse %a, %b : tensor<8x4xf32>, tensor<8x5xf32> -> tensor<f32>
  return
}

// -----

func.func @batch_norm_channels(%x: tensor<2x4x3x3xf32>, %g: tensor<5xf32>, %s: tensor<4xf32>) {
  // expected-error @+2 {{'graph.batch_norm' per-channel operands must be [4], got [5]}}
  // expected-error @+1 {{failed to infer returned types}}
  %y:5 = graph.batch_norm %x, %g, %s, %s, %s : tensor<2x4x3x3xf32>, tensor<5xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<2x4x3x3xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>
  return
}

// -----

func.func @max_pool_fit(%x: tensor<2x4x1x1xf32>) {
  // expected-error @+2 {{'graph.max_pool2d' kernel 2 stride 2 does not fit [2x4x1x1]}}
  // expected-error @+1 {{failed to infer returned types}}
  %y, %i = graph.max_pool2d %x : tensor<2x4x1x1xf32> -> tensor<2x4x1x1xf32>, tensor<2x4x1x1xi32>
  return
}

// -----

func.func @max_pool_backward_input(%dy: tensor<2x4x2x2xf32>, %x: tensor<2x4x4x5xf32>, %y: tensor<2x4x2x2xf32>) {
  // expected-error @+1 {{'graph.max_pool2d_backward' op input 'tensor<2x4x4x5xf32>' and result 'tensor<2x4x4x4xf32>' differ in shape}}
  %dx = graph.max_pool2d_backward %dy, %x, %y {kernel = 2 : i64, stride = 2 : i64} : tensor<2x4x2x2xf32>, tensor<2x4x4x5xf32>, tensor<2x4x2x2xf32> -> tensor<2x4x4x4xf32>
  return
}

// -----

func.func @max_pool_backward_pooled(%dy: tensor<2x4x2x2xf32>, %x: tensor<2x4x4x4xf16>, %y: tensor<2x4x2x2xf32>) {
  // expected-error @+1 {{'graph.max_pool2d_backward' op input 'tensor<2x4x4x4xf16>' and pooled 'tensor<2x4x2x2xf32>' differ in element type}}
  %dx = graph.max_pool2d_backward %dy, %x, %y {kernel = 2 : i64, stride = 2 : i64} : tensor<2x4x2x2xf32>, tensor<2x4x4x4xf16>, tensor<2x4x2x2xf32> -> tensor<2x4x4x4xf32>
  return
}

// -----

func.func @param_fp16() {
  // expected-error @+1 {{'graph.param' op parameters are fp32 master copies; got 'tensor<4xf16>'}}
  %p = graph.param "w" {init = "zeros"} : tensor<4xf16>
  return
}

// -----

func.func @param_uniform_bound() {
  // expected-error @+1 {{'graph.param' op init "uniform" needs a positive `bound` attribute}}
  %p = graph.param "w" {init = "uniform"} : tensor<4xf32>
  return
}

// -----

func.func @buffer_kind() {
  // expected-error @+1 {{'graph.buffer' op kind must be "model", "optimizer" or "scaler", got "weights"}}
  %b = graph.buffer "b" {init = "zeros", kind = "weights"} : tensor<4xf32>
  return
}

// -----

func.func @sgd_low_precision(%p: tensor<4xf16>, %ok: tensor<f32>) {
  // expected-error @+1 {{'graph.sgd_update' op updates fp32 master weights; got 'tensor<4xf16>'}}
  %p1, %b1 = graph.sgd_update %p, %p, %p, %ok, %ok {lr = 0.1} : tensor<4xf16>, tensor<f32>
  return
}

// -----

func.func @fused_result_shapes(%x: tensor<8x4xf32>, %y: tensor<4xf32>) {
  // expected-error @+1 {{'graph.fused' op results differ in shape: [4] and [8x4] (one kernel iterates over one shape)}}
  %a, %b = graph.fused(%x, %y) : (tensor<8x4xf32>, tensor<4xf32>) -> (tensor<8x4xf32>, tensor<4xf32>) {
  ^bb0(%a0: tensor<8x4xf32>, %a1: tensor<4xf32>):
    %0 = graph.relu %a0 : tensor<8x4xf32>
    %1 = graph.relu %a1 : tensor<4xf32>
    graph.yield %0, %1 : tensor<8x4xf32>, tensor<4xf32>
  }
  return
}

// -----

func.func @fused_not_elementwise(%x: tensor<4x4xf32>) {
  %r = graph.fused(%x) : (tensor<4x4xf32>) -> tensor<4x4xf32> {
  ^bb0(%a0: tensor<4x4xf32>):
    // expected-error @+1 {{'graph.matmul' op cannot be inside graph.fused (only elementwise graph ops can)}}
    %0 = graph.matmul %a0, %a0 : tensor<4x4xf32>, tensor<4x4xf32> -> tensor<4x4xf32>
    graph.yield %0 : tensor<4x4xf32>
  }
  return
}

// -----

func.func @fused_uses_outside(%x: tensor<4x4xf32>, %y: tensor<4x4xf32>) {
  %r = graph.fused(%x) : (tensor<4x4xf32>) -> tensor<4x4xf32> {
  ^bb0(%a0: tensor<4x4xf32>):
    // expected-note @-2 {{required by region isolation constraints}}
    // expected-error @+1 {{using value defined outside the region}}
    %0 = graph.add %a0, %y : tensor<4x4xf32>, tensor<4x4xf32> -> tensor<4x4xf32>
    graph.yield %0 : tensor<4x4xf32>
  }
  return
}

// -----

func.func @working_copy_f32() {
  // expected-error @+1 {{'graph.working_copy' op a working copy is f16 or bf16; got 'tensor<4xf32>'}}
  %w = graph.working_copy "w:f16" of "w" : tensor<4xf32>
  return
}

// -----

func.func @working_copy_own_name() {
  // expected-error @+1 {{'graph.working_copy' op needs a name of its own, not its parameter's ("w")}}
  %w = graph.working_copy "w" of "w" : tensor<4xf16>
  return
}
