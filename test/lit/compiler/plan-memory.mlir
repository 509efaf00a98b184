// The memory plan: temps share one arena by liveness, 256-byte aligned; train_step and
// eval_step never run at the same time, so their temps share it too. inspect prints
// the peak (temp arena + persistent + inputs) and every temp's offset. The arena is far
// below the sum of the temps' sizes: mlp_digits fp32 202752 of 675424 bytes, fp16
// 142848 of 623548.
// RUN: mantissa compile %models/mlp_digits.mlir -o %t.plan
// RUN: mantissa inspect %t.plan --all-tensors | FileCheck %s
// RUN: mantissa compile %models/mlp_digits.mlir -o %t.fp16.plan --precision fp16
// RUN: mantissa inspect %t.fp16.plan | FileCheck %s --check-prefix=FP16

// CHECK:      plan version 4
// CHECK:        Temp: 33 tensors, 168856 elements, 675424 bytes
// CHECK:      memory: peak 323884 bytes = temps 202752 + persistent 104492 + inputs 16640 (plan peak_bytes 323884)
// CHECK-NEXT:   temp arena: 202752 bytes for 675424 bytes of temps sharing it by liveness (30%)
// CHECK:        Param fc1.weight f32[128x64] init uniform
// CHECK-NOT:    Param {{.*}} offset
// The eval_step temps (its prediction t40 and loss t41, both live to its end) reuse
// bytes of the train_step temps (t9, t12 and t15 are at offset 0 too).
// CHECK:        t9 Temp - f32[64x128] offset 0
// CHECK:        t40 Temp - f32[64x10] offset 0
// CHECK-NEXT:   t41 Temp - f32[] offset 2560
// CHECK-NEXT: kernels: {{[0-9]+}} modules

// FP16:        Temp: 59 tensors, 257337 elements, 623548 bytes
// FP16:      memory: peak 263988 bytes = temps 142848 + persistent 104500 + inputs 16640 (plan peak_bytes 263988)
// FP16-NEXT:   temp arena: 142848 bytes for 623548 bytes of temps sharing it by liveness (23%)
