// emit-plan: the plan's tensors, roles and kernels for hand-written train_steps
// (written as autodiff + lower-optimizer + insert-loss-scaling would write them).
// RUN: split-file %s %t
// RUN: mantissa-opt %t/mlp.mlir --emit-plan="output=%t/mlp.plan seed=7" -o /dev/null
// RUN: mantissa inspect %t/mlp.plan | FileCheck %s --check-prefix=MLP
// RUN: mantissa-opt %t/cnn.mlir --emit-plan=output=%t/cnn.plan -o /dev/null
// RUN: mantissa inspect %t/cnn.plan | FileCheck %s --check-prefix=CNN
// RUN: mantissa-opt %t/cnn.mlir --emit-plan="output=%t/cnn-unfolded.plan fold-conv-bias=false" -o /dev/null
// RUN: mantissa inspect %t/cnn-unfolded.plan | FileCheck %s --check-prefix=UNFOLDED
// RUN: mantissa-opt %t/shapes.mlir --emit-plan=output=%t/shapes.plan -o /dev/null
// RUN: mantissa inspect %t/shapes.plan | FileCheck %s --check-prefix=SHAPES
// RUN: mantissa-opt %t/casts.mlir --emit-plan=output=%t/casts.plan -o /dev/null
// RUN: mantissa inspect %t/casts.plan | FileCheck %s --check-prefix=CASTS
// The initial parameters follow the seed and nothing else.
// RUN: mantissa-opt %t/mlp.mlir --emit-plan="output=%t/mlp-again.plan seed=7" -o /dev/null
// RUN: cmp %t/mlp.plan %t/mlp-again.plan
// RUN: mantissa-opt %t/mlp.mlir --emit-plan="output=%t/mlp-seed8.plan seed=8" -o /dev/null
// RUN: not cmp -s %t/mlp.plan %t/mlp-seed8.plan

// linear + relu + cross-entropy, SGD with momentum, dynamic loss scaling.
// MLP:      plan version 8
// MLP-NEXT: model: tiny_mlp (classification, 4 classes), batch 8, input [3], label [], seed 7
// MLP:      precision: fp32, tf32 off
// MLP-NEXT: loss scaling: dynamic, init scale 65536, growth x2 after 2000 finite steps, backoff x0.5
// MLP-NEXT:   scale t{{[0-9]+}}(scaler.scale):f32[], growth_tracker t{{[0-9]+}}(scaler.growth_tracker):f32[], found_finite t{{[0-9]+}}:f32[]
// MLP-NEXT: optimizer: sgd, lr 0.1, momentum 0.9, weight decay 0
// MLP-NEXT: tensors: 25,
// MLP-NEXT:   Temp: 16 tensors
// MLP-NEXT:   Param: 2 tensors, 16 elements, 64 bytes
// MLP-NEXT:   OptState: 3 tensors, 17 elements, 68 bytes
// MLP-NEXT:   ScalerState: 2 tensors, 2 elements, 8 bytes
// MLP-NEXT:   Input: 2 tensors, 32 elements, 128 bytes
// MLP-NEXT: parameters: 16
// The memory plan: at this size the 256-byte alignment costs more than reuse saves.
// MLP-NEXT: memory: peak 1804 bytes = temps 1536 + persistent 140 + inputs 128 (plan peak_bytes 1804)
// MLP-NEXT:   temp arena: 1536 bytes for 920 bytes of temps sharing it by liveness (167%)
// MLP-DAG:  Input x f32[8x3]
// MLP-DAG:  Input y i32[8]
// MLP-DAG:  Param fc.weight f32[4x3] init uniform +-0.5 seed 7
// MLP-DAG:  Param fc.bias f32[4] init uniform +-0.5 seed 7
// MLP-DAG:  ScalerState scaler.scale f32[] init fill 65536
// MLP-DAG:  ScalerState scaler.growth_tracker f32[] init fill 0
// MLP-DAG:  OptState optimizer.step f32[] init fill 0
// MLP-DAG:  OptState fc.weight.momentum_buffer f32[4x3] init fill 0
// MLP-LABEL: function train_step: 18 steps
// MLP-SAME:  outputs [t[[LOSS:[0-9]+]]:f32[]]
// MLP-NEXT: 0 fc graph.linear Gemm f32 a=t{{[0-9]+}}(x):f32[8x3] b=t{{[0-9]+}}(fc.weight):f32[4x3] c=t[[H:[0-9]+]]:f32[8x4] m=8 n=4 k=3 trans_a=false trans_b=true
// MLP-NEXT: 1 fc.bias_add graph.linear Elementwise f32 shape [8x4]
// MLP-NEXT:   in0 = t[[H]]:f32[8x4] strides [4, 1]
// MLP-NEXT:   in1 = t{{[0-9]+}}(fc.bias):f32[4] strides [0, 1]
// MLP-NEXT:   r0 = Load in0
// MLP-NEXT:   r1 = Load in1
// MLP-NEXT:   r2 = Add r0, r1
// MLP-NEXT:   out0 t[[H]]:f32[8x4] = r2
// MLP-NEXT: 2 relu.2 graph.relu Elementwise f32 shape [8x4]
// MLP:        r1 = Relu r0
// MLP-NEXT:   out0 t[[R:[0-9]+]]:f32[8x4] = r1
// MLP-NEXT: 3 loss graph.softmax_cross_entropy SoftmaxCrossEntropy f32 logits=t[[R]]:f32[8x4] labels=t{{[0-9]+}}(y):i32[8] loss=t[[LOSS]]:f32[] n=8 c=4
// The loss seed is the scale.
// MLP-NEXT: 4 constant.4 graph.constant Elementwise f32 shape []
// MLP-NEXT:   r0 = Const 1
// MLP:      5 mul.5 graph.mul Elementwise f32 shape []
// MLP-NEXT:   in0 = t{{[0-9]+}}:f32[] strides []
// MLP-NEXT:   in1 = t{{[0-9]+}}(scaler.scale):f32[] strides []
// MLP:      6 softmax_cross_entropy_backward.6 graph.softmax_cross_entropy_backward SoftmaxCrossEntropyBackward f32 logits=t[[R]]:f32[8x4] labels=t{{[0-9]+}}(y):i32[8] dloss=t{{[0-9]+}}:f32[] dlogits=t{{[0-9]+}}:f32[8x4] n=8 c=4
// MLP:      7 relu_grad.7 graph.relu_grad Elementwise f32 shape [8x4]
// MLP:        r3 = CmpGt r0, r2
// MLP-NEXT:   r4 = Select r3, r1, r2
// MLP:      8 matmul.8 graph.matmul Gemm f32 a=t{{[0-9]+}}:f32[8x4] b=t{{[0-9]+}}(x):f32[8x3] c=t{{[0-9]+}}:f32[4x3] m=4 n=3 k=8 trans_a=true trans_b=false
// MLP-NEXT: 9 reduce_sum.9 graph.reduce_sum Reduce f32 sum input=t{{[0-9]+}}:f32[8x4] output=t{{[0-9]+}}:f32[4] in_shape=[8x4] out_shape=[1x4]
// Unscaling broadcasts the scalar 1/S: stride 0 everywhere.
// MLP:      11 mul.11 graph.mul Elementwise f32 shape [4x3]
// MLP-NEXT:   in0 = t{{[0-9]+}}:f32[4x3] strides [3, 1]
// MLP-NEXT:   in1 = t{{[0-9]+}}:f32[] strides [0, 0]
// MLP:      13 all_finite.13 graph.all_finite AllFinite f32 inputs=[t{{[0-9]+}}:f32[4x3], t{{[0-9]+}}:f32[4]] output=t[[OK:[0-9]+]]:f32[]
// The update writes the parameter and its momentum buffer in place (the assigns
// alias): one program with two outputs.
// MLP-NEXT: 14 sgd_update.14 graph.sgd_update Elementwise f32 shape [4x3]
// MLP-NEXT:   in0 = t[[W:[0-9]+]](fc.weight):f32[4x3] strides [3, 1]
// MLP-NEXT:   in1 = t{{[0-9]+}}:f32[4x3] strides [3, 1]
// MLP-NEXT:   in2 = t[[MW:[0-9]+]](fc.weight.momentum_buffer):f32[4x3] strides [3, 1]
// MLP-NEXT:   in3 = t[[OK]]:f32[] strides [0, 0]
// MLP-NEXT:   in4 = t{{[0-9]+}}(optimizer.step):f32[] strides [0, 0]
// MLP:        r7 = Const 0.9
// MLP:        r13 = Const 0.1
// MLP:        out0 t[[W]](fc.weight):f32[4x3] = r16
// MLP-NEXT:   out1 t[[MW]](fc.weight.momentum_buffer):f32[4x3] = r17
// MLP-NEXT: 15 sgd_update.15 graph.sgd_update Elementwise f32 shape [4]
// MLP:        out0 t{{[0-9]+}}(fc.bias):f32[4] = r16
// MLP-NEXT:   out1 t{{[0-9]+}}(fc.bias.momentum_buffer):f32[4] = r17
// MLP-NEXT: 16 add.16 graph.add Elementwise f32 shape []
// MLP:        out0 t{{[0-9]+}}(optimizer.step):f32[] = r2
// MLP-NEXT: 17 loss_scale_update.17 graph.loss_scale_update Elementwise f32 shape []
// MLP-NEXT:   in0 = t{{[0-9]+}}(scaler.scale):f32[] strides []
// MLP-NEXT:   in1 = t{{[0-9]+}}(scaler.growth_tracker):f32[] strides []
// MLP-NEXT:   in2 = t[[OK]]:f32[] strides []
// MLP:        r6 = Const 2000
// MLP:        out0 t{{[0-9]+}}(scaler.scale):f32[] = r14
// MLP-NEXT:   out1 t{{[0-9]+}}(scaler.growth_tracker):f32[] = r15
// eval_step is @forward: no backward, no updates; outputs loss and prediction.
// MLP-NEXT: function eval_step: 4 steps, outputs [t{{[0-9]+}}:f32[], t{{[0-9]+}}:f32[8x4]]
// MLP-NEXT: 0 fc graph.linear Gemm f32 a=t{{[0-9]+}}(x):f32[8x3] b=t{{[0-9]+}}(fc.weight):f32[4x3]
// MLP:      3 loss graph.softmax_cross_entropy SoftmaxCrossEntropy
// MLP-NOT:  graph.

// conv (+ bias) / batch_norm / max_pool / reshape and their gradients.
// CNN:      model: tiny_cnn (classification, 3 classes), batch 2, input [1x6x6], label [], seed 0
// CNN:      loss scaling: none
// CNN-NEXT: optimizer: sgd, lr 0.05, momentum 0, weight decay 0
// CNN:        Param: 6 tensors, 159 elements, 636 bytes
// CNN-NEXT:   Buffer: 2 tensors, 8 elements, 32 bytes
// CNN:      parameters: 159
// CNN-DAG:  Buffer bn.running_mean f32[4] init fill 0
// CNN-DAG:  Buffer bn.running_var f32[4] init fill 1
// CNN-DAG:  Param bn.weight f32[4] init fill 1
// CNN-LABEL: function train_step:
// The convolution's bias add is folded into the batch norms that read its result
// (input_bias): they read x + bias, so the activation is stored once, without it.
// CNN-NEXT: 0 conv graph.conv2d Conv2d f32 Forward in0=t{{[0-9]+}}(x):f32[2x1x6x6] in1=t{{[0-9]+}}(conv.weight):f32[4x1x3x3] out=t[[C:[0-9]+]]:f32[2x4x6x6] nchw=2x1x6x6 krs=4x3x3 stride=1,1 pad=1,1
// Batch norm updates the running statistics in place: their assigns are no steps.
// CNN-NEXT: 1 bn graph.batch_norm BatchNorm f32 training x=t[[C]]:f32[2x4x6x6] gamma=t{{[0-9]+}}(bn.weight):f32[4] beta=t{{[0-9]+}}(bn.bias):f32[4] y=t{{[0-9]+}}:f32[2x4x6x6] saved_mean=t[[MEAN:[0-9]+]]:f32[4] saved_invstd=t[[INVSTD:[0-9]+]]:f32[4] running_mean=t{{[0-9]+}}(bn.running_mean):f32[4] running_var=t{{[0-9]+}}(bn.running_var):f32[4] n=2 c=4 hw=36 eps=1e-05 momentum=0.1 input_bias=t[[CB:[0-9]+]](conv.bias):f32[4]
// CNN-NOT:  bias_add graph.conv2d
// The pooling stores no indices (nothing reads them): its gradient reads x and y.
// CNN:      3 pool graph.max_pool2d MaxPool2d f32 x=t[[PX:[0-9]+]]:f32[2x4x6x6] y=t[[PY:[0-9]+]]:f32[2x4x3x3] kernel=2 stride=2
// CNN-NEXT: 4 reshape.4 graph.reshape Copy f32 input=t{{[0-9]+}}:f32[2x4x3x3] output=t{{[0-9]+}}:f32[2x36] count=72
// CNN:      14 max_pool2d_backward.14 graph.max_pool2d_backward MaxPool2dBackward f32 dy=t{{[0-9]+}}:f32[2x4x3x3] x=t[[PX]]:f32[2x4x6x6] y=t[[PY]]:f32[2x4x3x3] dx=t{{[0-9]+}}:f32[2x4x6x6] kernel=2 stride=2
// CNN:      16 batch_norm_backward.16 graph.batch_norm_backward BatchNormBackward f32 dy=t{{[0-9]+}}:f32[2x4x6x6] x=t[[C]]:f32[2x4x6x6] gamma=t{{[0-9]+}}(bn.weight):f32[4] saved_mean=t[[MEAN]]:f32[4] saved_invstd=t[[INVSTD]]:f32[4] dx=t[[DC:[0-9]+]]:f32[2x4x6x6] dgamma=t{{[0-9]+}}:f32[4] dbeta=t{{[0-9]+}}:f32[4] n=2 c=4 hw=36 input_bias=t[[CB]](conv.bias):f32[4]
// CNN-NEXT: 17 conv2d_backward_weight.17 graph.conv2d_backward_weight Conv2d f32 BackwardWeight in0=t{{[0-9]+}}(x):f32[2x1x6x6] in1=t[[DC]]:f32[2x4x6x6] out=t{{[0-9]+}}:f32[4x1x3x3] nchw=2x1x6x6 krs=4x3x3 stride=1,1 pad=1,1
// CNN-NEXT: 18 reduce_sum.18 graph.reduce_sum Reduce f32 sum input=t[[DC]]:f32[2x4x6x6] output=t{{[0-9]+}}:f32[4] in_shape=[2x4x6x6] out_shape=[1x4x1x1]
// CNN-NEXT: 19 conv2d_backward_input.19 graph.conv2d_backward_input Conv2d f32 BackwardInput in0=t[[DC]]:f32[2x4x6x6] in1=t{{[0-9]+}}(conv.weight):f32[4x1x3x3] out=t{{[0-9]+}}:f32[2x1x6x6] nchw=2x1x6x6 krs=4x3x3 stride=1,1 pad=1,1
// CNN:      out0 t{{[0-9]+}}(conv.weight):f32[4x1x3x3] = r8
// CNN-NOT:  graph.assign
// CNN-LABEL: function eval_step:
// CNN:      1 bn graph.batch_norm BatchNorm f32 eval {{.*}} running_mean=t{{[0-9]+}}(bn.running_mean):f32[4] running_var=t{{[0-9]+}}(bn.running_var):f32[4] {{.*}} input_bias=t{{[0-9]+}}(conv.bias):f32[4]

// fold-conv-bias=false (mantissa compile --no-fuse): the bias add is a step of its own,
// in place of the convolution's result, and the batch norms read that.
// UNFOLDED-LABEL: function train_step:
// UNFOLDED-NEXT: 0 conv graph.conv2d Conv2d f32 Forward {{.*}} out=t[[C:[0-9]+]]:f32[2x4x6x6]
// UNFOLDED-NEXT: 1 conv.bias_add graph.conv2d Elementwise f32 shape [2x4x6x6]
// UNFOLDED-NEXT:   in0 = t[[C]]:f32[2x4x6x6] strides [144, 36, 6, 1]
// UNFOLDED-NEXT:   in1 = t{{[0-9]+}}(conv.bias):f32[4] strides [0, 1, 0, 0]
// UNFOLDED:      2 bn graph.batch_norm BatchNorm f32 training x=t[[C]]:f32[2x4x6x6]
// UNFOLDED-NOT:  input_bias

// Transposed convolution, shape ops, MSE, casts; an assign whose old value is
// read after the update becomes a Copy at the end.
// SHAPES:      model: tiny_regressor (regression), batch 2, input [3x2x2], label [2x4x4], seed 0
// SHAPES-NEXT: source: {{.*}}shapes.mlir
// SHAPES-NEXT: precision: fp16, tf32 off
// SHAPES-DAG:  Input y f32[2x2x4x4]
// SHAPES-LABEL: function train_step: 15 steps
// The conv whose input is the transposed conv's output: c = 2 outputs, k = 3 inputs.
// SHAPES-NEXT: 0 up graph.conv_transpose2d Conv2d f32 BackwardInput in0=t{{[0-9]+}}(x):f32[2x3x2x2] in1=t{{[0-9]+}}(up.weight):f32[3x2x2x2] out=t{{[0-9]+}}:f32[2x2x4x4] nchw=2x2x4x4 krs=3x2x2 stride=2,2 pad=0,0
// SHAPES-NEXT: 1 up.bias_add graph.conv_transpose2d Elementwise f32 shape [2x2x4x4]
// SHAPES:        in1 = t{{[0-9]+}}(up.bias):f32[2] strides [0, 1, 0, 0]
// SHAPES:      2 loss graph.mse MseLoss f32 a=t{{[0-9]+}}:f32[2x2x4x4] b=t{{[0-9]+}}(y):f32[2x2x4x4] loss=t{{[0-9]+}}:f32[] count=64
// SHAPES:      4 mse_backward.4 graph.mse_backward MseLossBackward f32 {{.*}} count=64
// SHAPES-NEXT: 5 cast.5 graph.cast Elementwise f16 shape [2x2x4x4]
// SHAPES-NEXT:   in0 = t{{[0-9]+}}:f32[2x2x4x4] strides [32, 16, 4, 1]
// SHAPES-NEXT:   r0 = Load in0
// SHAPES-NEXT:   out0 t{{[0-9]+}}:f16[2x2x4x4] = r0
// SHAPES-NEXT: 6 transpose.6 graph.transpose Transpose f16 input=t{{[0-9]+}}:f16[2x2x4x4] output=t{{[0-9]+}}:f16[2x2x4x4] in_shape=[2x2x4x4] perm=[1, 0, 2, 3]
// SHAPES-NEXT: 7 concat.7 graph.concat Concat f16 inputs=[t{{[0-9]+}}:f16[2x2x4x4], t{{[0-9]+}}:f16[2x2x4x4]] output=t{{[0-9]+}}:f16[2x4x4x4] outer=2 row_sizes=[32, 32]
// SHAPES-NEXT: 8 slice.8 graph.slice Slice f16 input=t{{[0-9]+}}:f16[2x4x4x4] output=t{{[0-9]+}}:f16[2x2x4x4] outer=2 in_row=64 offset=16 out_row=32
// SHAPES-NEXT: 9 reduce_mean.9 graph.reduce_mean Reduce f32 mean input=t{{[0-9]+}}:f16[2x2x4x4] output=t{{[0-9]+}}:f32[2] in_shape=[2x2x4x4] out_shape=[1x2x1x1]
// SHAPES-NEXT: 10 broadcast_to.10 graph.broadcast_to Elementwise f32 shape [3x2]
// SHAPES-NEXT:   in0 = t{{[0-9]+}}:f32[2] strides [0, 1]
// SHAPES:      12 sgd_update.12 graph.sgd_update Elementwise f32 shape [2]
// SHAPES:        out0 t[[NEW:[0-9]+]]:f32[2] = r8
// SHAPES-NEXT:   out1 t{{[0-9]+}}(up.bias.momentum_buffer):f32[2] = r9
// SHAPES-NEXT: 13 mul.13 graph.mul Elementwise f32 shape [2]
// SHAPES-NEXT:   in0 = t[[B:[0-9]+]](up.bias):f32[2] strides [1]
// SHAPES:      14 assign.up.bias graph.assign Copy f32 input=t[[NEW]]:f32[2] output=t[[B]](up.bias):f32[2] count=2
// SHAPES-NEXT: function eval_step: 3 steps

// The casts of parameters (fp16 working copies of the fp32 weights) come first,
// together, in both functions (one multi-tensor launch on a GPU); the cast of the
// input and everything else keep their program order.
// CASTS-LABEL: function train_step: 8 steps
// CASTS-NEXT:  0 cast.0 graph.cast Elementwise f16 shape [4x3]
// CASTS-NEXT:    in0 = t{{[0-9]+}}(fc1.weight):f32[4x3]
// CASTS:       1 cast.1 graph.cast Elementwise f16 shape [2x4]
// CASTS-NEXT:    in0 = t{{[0-9]+}}(fc2.weight):f32[2x4]
// CASTS:       2 cast.2 graph.cast Elementwise f16 shape [2x3]
// CASTS-NEXT:    in0 = t{{[0-9]+}}(x):f32[2x3]
// CASTS:       3 fc1 graph.linear Gemm
// CASTS:       5 fc2 graph.linear Gemm
// CASTS-LABEL: function eval_step: 8 steps
// CASTS-NEXT:  0 cast.0 graph.cast Elementwise f16 shape [4x3]
// CASTS:       1 cast.1 graph.cast Elementwise f16 shape [2x4]

//--- mlp.mlir
module attributes {graph.model = "tiny_mlp", graph.task = "classification", graph.num_classes = 4 : i64} {
  func.func @forward() -> (tensor<f32>, tensor<8x4xf32>) {
    %x = graph.input "x" : tensor<8x3xf32>
    %y = graph.input "y" : tensor<8xi32>
    %w = graph.param "fc.weight" {init = "uniform", bound = 0.5} : tensor<4x3xf32>
    %b = graph.param "fc.bias" {init = "uniform", bound = 0.5} : tensor<4xf32>
    %h = graph.linear %x, %w, %b {graph.name = "fc"} : tensor<8x3xf32>, tensor<4x3xf32>, tensor<4xf32> -> tensor<8x4xf32>
    %r = graph.relu %h : tensor<8x4xf32>
    %l = graph.softmax_cross_entropy %r, %y {graph.name = "loss"} : tensor<8x4xf32>, tensor<8xi32> -> tensor<f32>
    return %l, %r : tensor<f32>, tensor<8x4xf32>
  }
  func.func @train_step() -> tensor<f32> {
    %x = graph.input "x" : tensor<8x3xf32>
    %y = graph.input "y" : tensor<8xi32>
    %w = graph.param "fc.weight" {init = "uniform", bound = 0.5} : tensor<4x3xf32>
    %b = graph.param "fc.bias" {init = "uniform", bound = 0.5} : tensor<4xf32>
    %h = graph.linear %x, %w, %b {graph.name = "fc"} : tensor<8x3xf32>, tensor<4x3xf32>, tensor<4xf32> -> tensor<8x4xf32>
    %r = graph.relu %h : tensor<8x4xf32>
    %l = graph.softmax_cross_entropy %r, %y {graph.name = "loss"} : tensor<8x4xf32>, tensor<8xi32> -> tensor<f32>
    %s = graph.buffer "scaler.scale" {init = "value", value = 65536.0, kind = "scaler"} : tensor<f32>
    %t = graph.buffer "scaler.growth_tracker" {init = "zeros", kind = "scaler"} : tensor<f32>
    %one = graph.constant 1.0 : tensor<f32>
    %seed = graph.mul %one, %s : tensor<f32>, tensor<f32> -> tensor<f32>
    %dr = graph.softmax_cross_entropy_backward %r, %y, %seed : tensor<8x4xf32>, tensor<8xi32>, tensor<f32> -> tensor<8x4xf32>
    %dh = graph.relu_grad %h, %dr : tensor<8x4xf32>
    %dw = graph.matmul %dh, %x {transpose_a = true} : tensor<8x4xf32>, tensor<8x3xf32> -> tensor<4x3xf32>
    %db = graph.reduce_sum %dh {axes = array<i64: 0>} : tensor<8x4xf32> -> tensor<4xf32>
    %inv = graph.div %one, %s : tensor<f32>, tensor<f32> -> tensor<f32>
    %dwu = graph.mul %dw, %inv : tensor<4x3xf32>, tensor<f32> -> tensor<4x3xf32>
    %dbu = graph.mul %db, %inv : tensor<4xf32>, tensor<f32> -> tensor<4xf32>
    %ok = graph.all_finite %dwu, %dbu {graph.found_finite} : tensor<4x3xf32>, tensor<4xf32> -> tensor<f32>
    %step = graph.buffer "optimizer.step" {init = "zeros", kind = "optimizer"} : tensor<f32>
    %mw = graph.buffer "fc.weight.momentum_buffer" {init = "zeros", kind = "optimizer"} : tensor<4x3xf32>
    %mb = graph.buffer "fc.bias.momentum_buffer" {init = "zeros", kind = "optimizer"} : tensor<4xf32>
    %w2, %mw2 = graph.sgd_update %w, %dwu, %mw, %ok, %step {lr = 0.1, momentum = 0.9} : tensor<4x3xf32>, tensor<f32>
    %b2, %mb2 = graph.sgd_update %b, %dbu, %mb, %ok, %step {lr = 0.1, momentum = 0.9} : tensor<4xf32>, tensor<f32>
    %step2 = graph.add %step, %ok : tensor<f32>, tensor<f32> -> tensor<f32>
    %s2, %t2 = graph.loss_scale_update %s, %t, %ok {growth_interval = 2000} : tensor<f32>
    graph.assign "fc.weight", %w2 : tensor<4x3xf32>
    graph.assign "fc.bias", %b2 : tensor<4xf32>
    graph.assign "fc.weight.momentum_buffer", %mw2 : tensor<4x3xf32>
    graph.assign "fc.bias.momentum_buffer", %mb2 : tensor<4xf32>
    graph.assign "optimizer.step", %step2 : tensor<f32>
    graph.assign "scaler.scale", %s2 : tensor<f32>
    graph.assign "scaler.growth_tracker", %t2 : tensor<f32>
    return %l : tensor<f32>
  }
}
//--- cnn.mlir
module attributes {graph.model = "tiny_cnn", graph.task = "classification", graph.num_classes = 3 : i64} {
  func.func @forward() -> (tensor<f32>, tensor<2x3xf32>) {
    %x = graph.input "x" : tensor<2x1x6x6xf32>
    %y = graph.input "y" : tensor<2xi32>
    %w1 = graph.param "conv.weight" {init = "uniform", bound = 0.3} : tensor<4x1x3x3xf32>
    %b1 = graph.param "conv.bias" {init = "uniform", bound = 0.3} : tensor<4xf32>
    %g = graph.param "bn.weight" {init = "ones"} : tensor<4xf32>
    %be = graph.param "bn.bias" {init = "zeros"} : tensor<4xf32>
    %rm = graph.buffer "bn.running_mean" {init = "zeros"} : tensor<4xf32>
    %rv = graph.buffer "bn.running_var" {init = "ones"} : tensor<4xf32>
    %w2 = graph.param "fc.weight" {init = "uniform", bound = 0.16} : tensor<3x36xf32>
    %b2 = graph.param "fc.bias" {init = "uniform", bound = 0.16} : tensor<3xf32>
    %c = graph.conv2d %x, %w1, %b1 {graph.name = "conv", padding = array<i64: 1, 1>} : tensor<2x1x6x6xf32>, tensor<4x1x3x3xf32>, tensor<4xf32> -> tensor<2x4x6x6xf32>
    %n, %mean, %invstd, %rm2, %rv2 = graph.batch_norm %c, %g, %be, %rm, %rv {graph.name = "bn"} : tensor<2x4x6x6xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<2x4x6x6xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>
    graph.assign "bn.running_mean", %rm2 : tensor<4xf32>
    graph.assign "bn.running_var", %rv2 : tensor<4xf32>
    %r = graph.relu %n : tensor<2x4x6x6xf32>
    %p, %idx = graph.max_pool2d %r {graph.name = "pool"} : tensor<2x4x6x6xf32> -> tensor<2x4x3x3xf32>, tensor<2x4x3x3xi32>
    %f = graph.reshape %p : tensor<2x4x3x3xf32> to tensor<2x36xf32>
    %z = graph.linear %f, %w2, %b2 {graph.name = "fc"} : tensor<2x36xf32>, tensor<3x36xf32>, tensor<3xf32> -> tensor<2x3xf32>
    %l = graph.softmax_cross_entropy %z, %y {graph.name = "loss"} : tensor<2x3xf32>, tensor<2xi32> -> tensor<f32>
    return %l, %z : tensor<f32>, tensor<2x3xf32>
  }
  func.func @train_step() -> tensor<f32> {
    %x = graph.input "x" : tensor<2x1x6x6xf32>
    %y = graph.input "y" : tensor<2xi32>
    %w1 = graph.param "conv.weight" {init = "uniform", bound = 0.3} : tensor<4x1x3x3xf32>
    %b1 = graph.param "conv.bias" {init = "uniform", bound = 0.3} : tensor<4xf32>
    %g = graph.param "bn.weight" {init = "ones"} : tensor<4xf32>
    %be = graph.param "bn.bias" {init = "zeros"} : tensor<4xf32>
    %rm = graph.buffer "bn.running_mean" {init = "zeros"} : tensor<4xf32>
    %rv = graph.buffer "bn.running_var" {init = "ones"} : tensor<4xf32>
    %w2 = graph.param "fc.weight" {init = "uniform", bound = 0.16} : tensor<3x36xf32>
    %b2 = graph.param "fc.bias" {init = "uniform", bound = 0.16} : tensor<3xf32>
    %c = graph.conv2d %x, %w1, %b1 {graph.name = "conv", padding = array<i64: 1, 1>} : tensor<2x1x6x6xf32>, tensor<4x1x3x3xf32>, tensor<4xf32> -> tensor<2x4x6x6xf32>
    %n, %mean, %invstd, %rm2, %rv2 = graph.batch_norm %c, %g, %be, %rm, %rv {graph.name = "bn"} : tensor<2x4x6x6xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<2x4x6x6xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>
    %r = graph.relu %n : tensor<2x4x6x6xf32>
    %p, %idx = graph.max_pool2d %r {graph.name = "pool"} : tensor<2x4x6x6xf32> -> tensor<2x4x3x3xf32>, tensor<2x4x3x3xi32>
    %f = graph.reshape %p : tensor<2x4x3x3xf32> to tensor<2x36xf32>
    %z = graph.linear %f, %w2, %b2 {graph.name = "fc"} : tensor<2x36xf32>, tensor<3x36xf32>, tensor<3xf32> -> tensor<2x3xf32>
    %l = graph.softmax_cross_entropy %z, %y {graph.name = "loss"} : tensor<2x3xf32>, tensor<2xi32> -> tensor<f32>
    %seed = graph.constant 1.0 : tensor<f32>
    %dz = graph.softmax_cross_entropy_backward %z, %y, %seed : tensor<2x3xf32>, tensor<2xi32>, tensor<f32> -> tensor<2x3xf32>
    %dw2 = graph.matmul %dz, %f {transpose_a = true} : tensor<2x3xf32>, tensor<2x36xf32> -> tensor<3x36xf32>
    %db2 = graph.reduce_sum %dz {axes = array<i64: 0>} : tensor<2x3xf32> -> tensor<3xf32>
    %df = graph.matmul %dz, %w2 : tensor<2x3xf32>, tensor<3x36xf32> -> tensor<2x36xf32>
    %dp = graph.reshape %df : tensor<2x36xf32> to tensor<2x4x3x3xf32>
    %dr = graph.max_pool2d_backward %dp, %r, %p {kernel = 2 : i64, stride = 2 : i64} : tensor<2x4x3x3xf32>, tensor<2x4x6x6xf32>, tensor<2x4x3x3xf32> -> tensor<2x4x6x6xf32>
    %dn = graph.relu_grad %n, %dr : tensor<2x4x6x6xf32>
    %dc, %dg, %dbe = graph.batch_norm_backward %dn, %c, %g, %mean, %invstd : tensor<2x4x6x6xf32>, tensor<2x4x6x6xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32> -> tensor<2x4x6x6xf32>, tensor<4xf32>, tensor<4xf32>
    %dw1 = graph.conv2d_backward_weight %x, %dc {stride = array<i64: 1, 1>, padding = array<i64: 1, 1>} : tensor<2x1x6x6xf32>, tensor<2x4x6x6xf32> -> tensor<4x1x3x3xf32>
    %db1 = graph.reduce_sum %dc {axes = array<i64: 0, 2, 3>} : tensor<2x4x6x6xf32> -> tensor<4xf32>
    %dx = graph.conv2d_backward_input %dc, %w1 {stride = array<i64: 1, 1>, padding = array<i64: 1, 1>} : tensor<2x4x6x6xf32>, tensor<4x1x3x3xf32> -> tensor<2x1x6x6xf32>
    %ok = graph.constant 1.0 : tensor<f32>
    %step = graph.buffer "optimizer.step" {init = "zeros", kind = "optimizer"} : tensor<f32>
    %m1 = graph.buffer "conv.weight.momentum_buffer" {init = "zeros", kind = "optimizer"} : tensor<4x1x3x3xf32>
    %m2 = graph.buffer "conv.bias.momentum_buffer" {init = "zeros", kind = "optimizer"} : tensor<4xf32>
    %m3 = graph.buffer "bn.weight.momentum_buffer" {init = "zeros", kind = "optimizer"} : tensor<4xf32>
    %m4 = graph.buffer "bn.bias.momentum_buffer" {init = "zeros", kind = "optimizer"} : tensor<4xf32>
    %m5 = graph.buffer "fc.weight.momentum_buffer" {init = "zeros", kind = "optimizer"} : tensor<3x36xf32>
    %m6 = graph.buffer "fc.bias.momentum_buffer" {init = "zeros", kind = "optimizer"} : tensor<3xf32>
    %w1n, %m1n = graph.sgd_update %w1, %dw1, %m1, %ok, %step {lr = 0.05} : tensor<4x1x3x3xf32>, tensor<f32>
    %b1n, %m2n = graph.sgd_update %b1, %db1, %m2, %ok, %step {lr = 0.05} : tensor<4xf32>, tensor<f32>
    %gn, %m3n = graph.sgd_update %g, %dg, %m3, %ok, %step {lr = 0.05} : tensor<4xf32>, tensor<f32>
    %ben, %m4n = graph.sgd_update %be, %dbe, %m4, %ok, %step {lr = 0.05} : tensor<4xf32>, tensor<f32>
    %w2n, %m5n = graph.sgd_update %w2, %dw2, %m5, %ok, %step {lr = 0.05} : tensor<3x36xf32>, tensor<f32>
    %b2n, %m6n = graph.sgd_update %b2, %db2, %m6, %ok, %step {lr = 0.05} : tensor<3xf32>, tensor<f32>
    %step2 = graph.add %step, %ok : tensor<f32>, tensor<f32> -> tensor<f32>
    graph.assign "bn.running_mean", %rm2 : tensor<4xf32>
    graph.assign "bn.running_var", %rv2 : tensor<4xf32>
    graph.assign "conv.weight", %w1n : tensor<4x1x3x3xf32>
    graph.assign "conv.bias", %b1n : tensor<4xf32>
    graph.assign "bn.weight", %gn : tensor<4xf32>
    graph.assign "bn.bias", %ben : tensor<4xf32>
    graph.assign "fc.weight", %w2n : tensor<3x36xf32>
    graph.assign "fc.bias", %b2n : tensor<3xf32>
    graph.assign "conv.weight.momentum_buffer", %m1n : tensor<4x1x3x3xf32>
    graph.assign "conv.bias.momentum_buffer", %m2n : tensor<4xf32>
    graph.assign "bn.weight.momentum_buffer", %m3n : tensor<4xf32>
    graph.assign "bn.bias.momentum_buffer", %m4n : tensor<4xf32>
    graph.assign "fc.weight.momentum_buffer", %m5n : tensor<3x36xf32>
    graph.assign "fc.bias.momentum_buffer", %m6n : tensor<3xf32>
    graph.assign "optimizer.step", %step2 : tensor<f32>
    return %l : tensor<f32>
  }
}
//--- shapes.mlir
module attributes {graph.model = "tiny_regressor", graph.task = "regression"} {
  func.func @forward() -> (tensor<f32>, tensor<2x2x4x4xf32>) {
    %x = graph.input "x" : tensor<2x3x2x2xf32>
    %y = graph.input "y" : tensor<2x2x4x4xf32>
    %w = graph.param "up.weight" {init = "uniform", bound = 0.2} : tensor<3x2x2x2xf32>
    %b = graph.param "up.bias" {init = "zeros"} : tensor<2xf32>
    %u = graph.conv_transpose2d %x, %w, %b {graph.name = "up", stride = array<i64: 2, 2>} : tensor<2x3x2x2xf32>, tensor<3x2x2x2xf32>, tensor<2xf32> -> tensor<2x2x4x4xf32>
    %l = graph.mse %u, %y {graph.name = "loss"} : tensor<2x2x4x4xf32>, tensor<2x2x4x4xf32> -> tensor<f32>
    return %l, %u : tensor<f32>, tensor<2x2x4x4xf32>
  }
  func.func @train_step() -> tensor<f32> {
    %x = graph.input "x" : tensor<2x3x2x2xf32>
    %y = graph.input "y" : tensor<2x2x4x4xf32>
    %w = graph.param "up.weight" {init = "uniform", bound = 0.2} : tensor<3x2x2x2xf32>
    %b = graph.param "up.bias" {init = "zeros"} : tensor<2xf32>
    %u = graph.conv_transpose2d %x, %w, %b {graph.name = "up", stride = array<i64: 2, 2>} : tensor<2x3x2x2xf32>, tensor<3x2x2x2xf32>, tensor<2xf32> -> tensor<2x2x4x4xf32>
    %l = graph.mse %u, %y {graph.name = "loss"} : tensor<2x2x4x4xf32>, tensor<2x2x4x4xf32> -> tensor<f32>
    %seed = graph.constant 1.0 : tensor<f32>
    %du = graph.mse_backward %u, %y, %seed : tensor<2x2x4x4xf32>, tensor<2x2x4x4xf32>, tensor<f32> -> tensor<2x2x4x4xf32>
    %h = graph.cast %du : tensor<2x2x4x4xf32> to tensor<2x2x4x4xf16>
    %t = graph.transpose %h {perm = array<i64: 1, 0, 2, 3>} : tensor<2x2x4x4xf16> -> tensor<2x2x4x4xf16>
    %c = graph.concat %h, %t {axis = 1 : i64} : tensor<2x2x4x4xf16>, tensor<2x2x4x4xf16> -> tensor<2x4x4x4xf16>
    %s = graph.slice %c {axis = 1 : i64, offset = 1 : i64, size = 2 : i64} : tensor<2x4x4x4xf16> -> tensor<2x2x4x4xf16>
    %m = graph.reduce_mean %s {axes = array<i64: 0, 2, 3>} : tensor<2x2x4x4xf16> -> tensor<2xf32>
    %bb = graph.broadcast_to %m : tensor<2xf32> to tensor<3x2xf32>
    %ok = graph.constant 1.0 : tensor<f32>
    %step = graph.buffer "optimizer.step" {init = "zeros", kind = "optimizer"} : tensor<f32>
    %mb = graph.buffer "up.bias.momentum_buffer" {init = "zeros", kind = "optimizer"} : tensor<2xf32>
    %b2, %mb2 = graph.sgd_update %b, %m, %mb, %ok, %step {lr = 0.5} : tensor<2xf32>, tensor<f32>
    %later = graph.mul %b, %b : tensor<2xf32>, tensor<2xf32> -> tensor<2xf32>
    graph.assign "up.bias", %b2 : tensor<2xf32>
    graph.assign "up.bias.momentum_buffer", %mb2 : tensor<2xf32>
    return %l : tensor<f32>
  }
}

//--- casts.mlir
module attributes {graph.model = "casts", graph.task = "regression"} {
  func.func @forward() -> (tensor<f32>, tensor<2x2xf32>) {
    %x = graph.input "x" : tensor<2x3xf32>
    %y = graph.input "y" : tensor<2x2xf32>
    %w1 = graph.param "fc1.weight" {init = "uniform", bound = 0.5} : tensor<4x3xf32>
    %w2 = graph.param "fc2.weight" {init = "uniform", bound = 0.5} : tensor<2x4xf32>
    %xh = graph.cast %x : tensor<2x3xf32> to tensor<2x3xf16>
    %w1h = graph.cast %w1 : tensor<4x3xf32> to tensor<4x3xf16>
    %h = graph.linear %xh, %w1h {graph.name = "fc1"} : tensor<2x3xf16>, tensor<4x3xf16> -> tensor<2x4xf16>
    %r = graph.relu %h : tensor<2x4xf16>
    %w2h = graph.cast %w2 : tensor<2x4xf32> to tensor<2x4xf16>
    %o = graph.linear %r, %w2h {graph.name = "fc2"} : tensor<2x4xf16>, tensor<2x4xf16> -> tensor<2x2xf16>
    %of = graph.cast %o : tensor<2x2xf16> to tensor<2x2xf32>
    %l = graph.mse %of, %y {graph.name = "loss"} : tensor<2x2xf32>, tensor<2x2xf32> -> tensor<f32>
    return %l, %of : tensor<f32>, tensor<2x2xf32>
  }
  func.func @train_step() -> tensor<f32> {
    %x = graph.input "x" : tensor<2x3xf32>
    %y = graph.input "y" : tensor<2x2xf32>
    %w1 = graph.param "fc1.weight" {init = "uniform", bound = 0.5} : tensor<4x3xf32>
    %w2 = graph.param "fc2.weight" {init = "uniform", bound = 0.5} : tensor<2x4xf32>
    %xh = graph.cast %x : tensor<2x3xf32> to tensor<2x3xf16>
    %w1h = graph.cast %w1 : tensor<4x3xf32> to tensor<4x3xf16>
    %h = graph.linear %xh, %w1h {graph.name = "fc1"} : tensor<2x3xf16>, tensor<4x3xf16> -> tensor<2x4xf16>
    %r = graph.relu %h : tensor<2x4xf16>
    %w2h = graph.cast %w2 : tensor<2x4xf32> to tensor<2x4xf16>
    %o = graph.linear %r, %w2h {graph.name = "fc2"} : tensor<2x4xf16>, tensor<2x4xf16> -> tensor<2x2xf16>
    %of = graph.cast %o : tensor<2x2xf16> to tensor<2x2xf32>
    %l = graph.mse %of, %y {graph.name = "loss"} : tensor<2x2xf32>, tensor<2x2xf32> -> tensor<f32>
    return %l : tensor<f32>
  }
}
