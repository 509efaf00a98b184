// compile --arch caches NVRTC's output on disk (MANTISSA_CACHE_DIR): a second compile
// of the same model compiles nothing, and writes the same plan.
// RUN: rm -rf %t.cache
// RUN: env MANTISSA_CACHE_DIR=%t.cache mantissa compile %models/mlp_digits.mlir -o %t.1.plan --arch sm_90 -v 2>&1 | FileCheck %s --check-prefix=COLD
// RUN: env MANTISSA_CACHE_DIR=%t.cache mantissa compile %models/mlp_digits.mlir -o %t.2.plan --arch sm_90 -v 2>&1 | FileCheck %s --check-prefix=WARM
// RUN: cmp %t.1.plan %t.2.plan

// COLD: kernels: 5 modules for sm_90 + PTX, 10 compilations, 0 from the cache ({{.*}}.cache)
// WARM: kernels: 5 modules for sm_90 + PTX, 10 compilations, 10 from the cache ({{.*}}.cache)
