// mantissa compile: a user's mistake is one clear error (file:line:col where the
// IR is at fault) and a non-zero exit; no plan is written.
// RUN: split-file %s %t
// RUN: not mantissa compile %t/syntax.mlir -o %t/syntax.plan 2>&1 | FileCheck %s --check-prefix=SYNTAX
// RUN: not test -e %t/syntax.plan
// RUN: not mantissa compile %t/shape.mlir -o %t/shape.plan 2>&1 | FileCheck %s --check-prefix=SHAPE
// RUN: not mantissa compile %models/mlp_digits.mlir -o %t/policy.plan --precision %t/policy.json 2>&1 | FileCheck %s --check-prefix=POLICY
// RUN: not test -e %t/policy.plan
// RUN: not mantissa compile %models/mlp_digits.mlir -o %t/policy.plan --precision %t/dup-policy.json 2>&1 | FileCheck %s --check-prefix=DUPPOLICY
// RUN: mkdir -p %t/adir
// RUN: not mantissa compile %models/mlp_digits.mlir -o %t/policy.plan --precision %t/adir 2>&1 | FileCheck %s --check-prefix=POLICYDIR
// RUN: not test -e %t/policy.plan
// RUN: not mantissa compile %t/batch.mlir -o %t/batch.plan --batch 32 2>&1 | FileCheck %s --check-prefix=BATCH
// RUN: not mantissa compile %t/missing.mlir -o %t/x.plan 2>&1 | FileCheck %s --check-prefix=MISSING
// RUN: not mantissa compile %models/mlp_digits.mlir -o %t/x.plan --precision fp8 2>&1 | FileCheck %s --check-prefix=PRECISION
// RUN: not mantissa compile %models/mlp_digits.mlir -o %t/x.plan --loss-scale lots 2>&1 | FileCheck %s --check-prefix=SCALE
// RUN: not mantissa compile %models/mlp_digits.mlir -o %t/x.plan --loss-scale inf 2>&1 | FileCheck %s --check-prefix=INFSCALE
// RUN: not test -e %t/x.plan
// RUN: not mantissa compile %models/mlp_digits.mlir -o %t/x.plan --optimizer lbfgs 2>&1 | FileCheck %s --check-prefix=OPTIMIZER
// RUN: not mantissa compile %models/mlp_digits.mlir -o %t/x.plan --batch -3 2>&1 | FileCheck %s --check-prefix=BADBATCH
// RUN: not mantissa compile %models/mlp_digits.mlir 2>&1 | FileCheck %s --check-prefix=NOOUT
// RUN: cp %t/batch.mlir %t/same.mlir
// RUN: not mantissa compile %t/same.mlir -o %t/same.mlir 2>&1 | FileCheck %s --check-prefix=SAME
// RUN: cmp %t/batch.mlir %t/same.mlir
// RUN: not mantissa compile %models/mlp_digits.mlir -o %t/x.plan --frobnicate 2>&1 | FileCheck %s --check-prefix=OPTION
// RUN: not mantissa compile %models/mlp_digits.mlir --arch -o %t/x.plan 2>&1 | FileCheck %s --check-prefix=NOARCH
// RUN: not mantissa frobnicate 2>&1 | FileCheck %s --check-prefix=COMMAND
// RUN: not mantissa 2>&1 | FileCheck %s --check-prefix=NOCOMMAND
// RUN: not mantissa inspect %t/syntax.mlir 2>&1 | FileCheck %s --check-prefix=NOTPLAN

// SYNTAX: syntax.mlir:4:42: error: expected '>' in tensor type
// SHAPE: shape.mlir:6:10: error: 'graph.linear' input has 3 features but the weight [4x5] expects 5
// POLICY: error: assign-precision: policy file '{{.*}}policy.json' names op "fc9", but no op of @forward has that graph.name
// DUPPOLICY: error: policy file '{{.*}}dup-policy.json': line 3, column 3: duplicate key "fc1" in "ops"; each key may appear once
// POLICYDIR: error: policy file '{{.*}}adir': cannot read it (Is a directory)
// BATCH: batch.mlir:5:10: error: set-batch: input "y" has batch 8 (dimension 0) but input "x" has 4
// MISSING: error: cannot open '{{.*}}missing.mlir': No such file or directory
// PRECISION: error: --precision must be fp32, fp16, bf16 or a policy file; 'fp8' is none of them (no such file)
// SCALE: error: --loss-scale must be dynamic, none or a positive finite number, got 'lots'
// INFSCALE: error: --loss-scale must be dynamic, none or a positive finite number, got 'inf'
// OPTIMIZER: error: --optimizer must be sgd, adam or adamw, got 'lbfgs'
// BADBATCH: error: option '--batch' needs a positive integer
// NOOUT: error: compile needs -o OUT.plan
// NOOUT-NEXT: usage: mantissa <command> ...
// SAME: error: -o {{.*}}same.mlir is the model file itself; name the plan differently
// OPTION: error: unknown option '--frobnicate'
// NOARCH: error: option '--arch' needs a list of architectures like sm_90,sm_80, or none
// OPTION-NEXT: usage: mantissa <command> ...
// COMMAND: error: unknown command 'frobnicate'
// COMMAND-NEXT: usage: mantissa <command> ...
// NOCOMMAND: error: missing command
// NOTPLAN: error: {{.*}}syntax.mlir: not a Mantissa plan

//--- syntax.mlir
module {
  func.func @forward() -> (tensor<f32>) {
    // The type is not closed.
    %x = graph.input "x" : tensor<8x3xf32
  }
}
//--- shape.mlir
module {
  func.func @forward() -> (tensor<f32>, tensor<8x4xf32>) {
    %x = graph.input "x" : tensor<8x3xf32>
    %y = graph.input "y" : tensor<8xi32>
    %w = graph.param "w" {init = "uniform", bound = 0.5} : tensor<4x5xf32>
    %h = graph.linear %x, %w : tensor<8x3xf32>, tensor<4x5xf32> -> tensor<8x4xf32>
    %l = graph.softmax_cross_entropy %h, %y : tensor<8x4xf32>, tensor<8xi32> -> tensor<f32>
    return %l, %h : tensor<f32>, tensor<8x4xf32>
  }
}
//--- batch.mlir
module {
  func.func @forward() -> (tensor<f32>, tensor<4x4xf32>) {
    %x = graph.input "x" : tensor<4x3xf32>
    %w = graph.param "w" {init = "uniform", bound = 0.5} : tensor<4x3xf32>
    %y = graph.input "y" : tensor<8xi32>
    %h = graph.linear %x, %w : tensor<4x3xf32>, tensor<4x3xf32> -> tensor<4x4xf32>
    %c = graph.constant 0.0 : tensor<f32>
    return %c, %h : tensor<f32>, tensor<4x4xf32>
  }
}
//--- policy.json
{"default": "fp16", "ops": {"fc9": "fp32"}}
//--- dup-policy.json
{"default": "fp16", "ops": {
  "fc1": "fp16",
  "fc1": "fp32"}}
