// mantissa compile runs the whole pipeline on a zoo model; inspect shows the plan.
// RUN: mantissa compile %models/mlp_digits.mlir -o %t.plan --precision fp16 --batch 32 --lr 0.1 --momentum 0.9 --seed 5
// RUN: mantissa inspect %t.plan | FileCheck %s
// RUN: mantissa compile %models/mlp_digits.mlir -o %t.adamw.plan --precision bf16 --optimizer adamw --loss-scale 1024 --tf32 --emit-ir | FileCheck %s --check-prefix=IR
// RUN: mantissa inspect %t.adamw.plan | FileCheck %s --check-prefix=ADAMW
// remat-concat slices the skip connections back out of the U-Net's concatenations (two
// slices of the forward's concats, read by the backward); --no-remat-concat keeps the
// inputs alive instead: more memory, two kernels fewer. The concatenations' gradients
// are slices either way.
// RUN: mantissa compile %models/unet_small.mlir -o %t.remat.plan --precision fp16 --arch none
// RUN: mantissa inspect %t.remat.plan | FileCheck %s --check-prefix=REMAT
// RUN: mantissa compile %models/unet_small.mlir -o %t.noremat.plan --precision fp16 --arch none --no-remat-concat
// RUN: mantissa inspect %t.noremat.plan | FileCheck %s --check-prefix=NOREMAT

// CHECK:      model: mlp_digits (classification, 10 classes), batch 32, input [64], label [], seed 5
// CHECK:      precision: fp16, tf32 off
// CHECK-NEXT: loss scaling: dynamic, init scale 65536, growth x2 after 2000 finite steps, backoff x0.5
// CHECK:      optimizer: sgd, lr 0.1, momentum 0.9, weight decay 0
// CHECK:      parameters: 26122
// CHECK:      Input x f32[32x64]
// CHECK-LABEL: function train_step:
// CHECK:      fc1 graph.linear Gemm f16 {{.*}} m=32 n=128 k=64 trans_a=false trans_b=true
// CHECK:      AllFinite
// CHECK:      loss_scale_update
// CHECK-LABEL: function eval_step:
// CHECK:      fc3 graph.linear Gemm f16

// IR: func.func @train_step()
// IR: graph.adam_update {{.*}}decoupled = true

// ADAMW:      precision: bf16, tf32 on
// ADAMW-NEXT: loss scaling: static, scale 1024
// ADAMW:      optimizer: adamw, lr 0.01, betas (0.9, 0.999), eps 1e-08, weight decay 0.01

// REMAT:       memory: peak 2650876 bytes
// REMAT:       function train_step: 179 steps
// REMAT-COUNT-6: graph.slice Slice
// REMAT-NOT:   graph.slice Slice
// REMAT-LABEL: function eval_step:
// NOREMAT:     memory: peak 2749180 bytes
// NOREMAT:     function train_step: 177 steps
// NOREMAT-COUNT-4: graph.slice Slice
// NOREMAT-NOT: graph.slice Slice
// NOREMAT-LABEL: function eval_step:
