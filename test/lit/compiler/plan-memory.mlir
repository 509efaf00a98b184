// The memory plan: temps share one arena by liveness, 256-byte aligned; train_step and
// eval_step never run at the same time, so their temps share it too. inspect prints
// the peak (temp arena + persistent + inputs) and every temp's offset. The arena is far
// below the sum of the temps' sizes: mlp_digits fp32 169984 of 505400 bytes, fp16
// (with GEMM epilogues) 93696 of 213376. An elementwise result takes the bytes of an input of its size that
// dies at its step (in place): the fused bias add + relu writes over the GEMM's result,
// relu_grad over the relu's result that it reads last. (Compiled without GEMM
// epilogues, which take the bias add and relu into the GEMM: then 374328 bytes of
// temps, same arena.)
// RUN: mantissa compile %models/mlp_digits.mlir -o %t.plan --no-gemm-epilogue
// RUN: mantissa inspect %t.plan --all-tensors | FileCheck %s
// RUN: mantissa compile %models/mlp_digits.mlir -o %t.epilogue.plan
// RUN: mantissa inspect %t.epilogue.plan | FileCheck %s --check-prefix=EPILOGUE
// RUN: mantissa compile %models/mlp_digits.mlir -o %t.fp16.plan --precision fp16
// RUN: mantissa inspect %t.fp16.plan | FileCheck %s --check-prefix=FP16

// CHECK:      plan version 8
// CHECK:        Temp: 25 tensors, 126350 elements, 505400 bytes
// CHECK:      memory: peak 291116 bytes = temps 169984 + persistent 104492 + inputs 16640 (plan peak_bytes 291116)
// CHECK-NEXT:   temp arena: 169984 bytes for 505400 bytes of temps sharing it by liveness (34%)
// Where the most temps are live at once. eval_step, by hand: fc1 writes t28 (32768 bytes),
// fc1+relu writes t29 in its place, fc2 reads t29 and writes t30: 65536 bytes at step 2,
// and the rest of the arena, [65536, 169984), is free there. train_step's peak is within
// 468 bytes of the arena (first fit, 256-byte aligned).
// CHECK-NEXT:   train_step: at most 169516 bytes of temps live at once, at step 15 'reduce_sum.15'; the largest free span of the arena there is 0 bytes
// CHECK-NEXT:   eval_step: at most 65536 bytes of temps live at once, at step 2 'fc2'; the largest free span of the arena there is 104448 bytes
// CHECK:        Param fc1.weight f32[128x64] init uniform
// CHECK-NOT:    Param {{.*}} offset
// fc1's GEMM result t9 and fc1+relu's t10; fc2's t11 and t12.
// CHECK:        t9 Temp - f32[64x128] offset [[FC1:[0-9]+]]
// CHECK-NEXT:   t10 Temp - f32[64x128] offset [[FC1]]
// CHECK-NEXT:   t11 Temp - f32[64x128] offset [[FC2:[0-9]+]]
// CHECK-NEXT:   t12 Temp - f32[64x128] offset [[FC2]]
// relu_grad.12 reads t12 last and writes t20 in its place.
// CHECK:        t20 Temp - f32[64x128] offset [[FC2]]
// The eval_step temps (its prediction t32 and loss t33, both live to its end) reuse
// bytes of the train_step temps.
// CHECK:        t32 Temp - f32[64x10] offset 0
// CHECK-NEXT:   t33 Temp - f32[] offset 2560
// CHECK-NEXT: kernels: {{[0-9]+}} modules

// EPILOGUE:        Temp: 21 tensors, 93582 elements, 374328 bytes
// EPILOGUE:      memory: peak 291116 bytes = temps 169984 + persistent 104492 + inputs 16640 (plan peak_bytes 291116)

// fp16 keeps the weights' fp16 working copies (52244 bytes) among the persistent
// tensors instead of casting them into temps each step, and checks the fp16
// gradients times 1/scale instead of storing unscaled fp32 copies.
// FP16:        Temp: 35 tensors, 104229 elements, 213376 bytes
// FP16:        WorkingCopy: 6 tensors, 26122 elements, 52244 bytes
// FP16:      memory: peak 267080 bytes = temps 93696 + persistent 156744 + inputs 16640 (plan peak_bytes 267080)
// FP16-NEXT:   temp arena: 93696 bytes for 213376 bytes of temps sharing it by liveness (44%)
