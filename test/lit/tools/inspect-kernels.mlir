// compile --arch stores every kernel in the plan (CUBIN per architecture, PTX of the
// oldest); inspect lists them with what each fuses and prints one's source or PTX.
// (Without GEMM epilogues, so that fc1's bias add and relu are a kernel, k2.)
// RUN: mantissa compile %models/mlp_digits.mlir -o %t.plan --precision fp16 --arch sm_90,sm_80 --no-gemm-epilogue
// RUN: mantissa inspect %t.plan | FileCheck %s
// RUN: mantissa inspect %t.plan --source k2 | FileCheck %s --check-prefix=SOURCE
// RUN: mantissa inspect %t.plan --ptx k2 | FileCheck %s --check-prefix=PTX
// RUN: mantissa inspect %t.plan --source prelude | FileCheck %s --check-prefix=PRELUDE
// RUN: not mantissa inspect %t.plan --ptx k99 2>&1 | FileCheck %s --check-prefix=NOKERNEL
// RUN: mantissa compile %models/mlp_digits.mlir -o %t.none.plan --arch none
// RUN: mantissa inspect %t.none.plan | FileCheck %s --check-prefix=NONE
// RUN: not mantissa compile %models/mlp_digits.mlir -o %t.bad.plan --arch sm90 2>&1 | FileCheck %s --check-prefix=BADARCH

// CHECK:      plan version 8
// CHECK:      memory: peak {{[0-9]+}} bytes = temps
// CHECK:      kernels: 13 modules, {{[0-9]+}} KiB (sources, CUBIN, PTX), NVRTC {{[0-9.]+}}, archs sm_90 sm_80, options --std=c++17 --fmad=false
// CHECK-NEXT: k0 mantissa_fixed f32 fuses [im2col, pooling, batch norm, losses, reductions, data movement], {{[0-9]+}} entry points; source {{.*}}; cubin sm_90 {{[0-9]+}} KiB; cubin sm_80 {{[0-9]+}} KiB; ptx compute_80 {{[0-9]+}} KiB
// A linear kernel has its multi-tensor entry beside it; a broadcast one does not.
// CHECK-NEXT: k1 mt_ew_{{[0-9a-f]+}} f16 fuses [Copy], 2 entry points; source {{[0-9]+}} B hash {{[0-9a-f]+}}; cubin sm_90 {{[0-9]+}} B; cubin sm_80 {{[0-9]+}} B; ptx compute_80
// CHECK-NEXT: k2 mt_ew_{{[0-9a-f]+}} f16 fuses [Add, RoundF16, Relu]; source
// CHECK-LABEL: function train_step:

// SOURCE:      // mt_ew_[[NAME:[0-9a-f]+]]: compiled after the plan's prelude
// SOURCE:      static __device__ __forceinline__ void mt_ew_[[NAME]]_body(
// SOURCE:      // Add
// SOURCE:      // Relu
// SOURCE:      extern "C" __global__ void __launch_bounds__(256) mt_ew_[[NAME]](

// PTX:         .version
// PTX:         .target sm_80
// PTX:         .entry mt_ew_

// PRELUDE:     Mantissa CUDA prelude

// NOKERNEL:    error: {{.*}}.plan: no kernel 'k99' in the plan

// NONE:        kernels: none compiled (--arch none): the CUDA backend compiles them with NVRTC at startup

// BADARCH:     error: --arch: 'sm90' is not an architecture like sm_90
