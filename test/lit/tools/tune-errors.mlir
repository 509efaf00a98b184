// mantissa tune: a bad option is one clear error before any training run.
// RUN: rm -rf %t && split-file %s %t
// RUN: not mantissa tune %models/mlp_digits.mlir -o %t/p.json --budget 0 2>&1 | FileCheck %s --check-prefix=BUDGET
// RUN: not mantissa tune %models/mlp_digits.mlir -o %t/p.json --max-metric-gap abc 2>&1 | FileCheck %s --check-prefix=GAP
// RUN: not mantissa tune %models/mlp_digits.mlir -o %t/p.json --max-metric-gap -0.1 2>&1 | FileCheck %s --check-prefix=NEGGAP
// RUN: not mantissa tune %models/mlp_digits.mlir -o %t/p.json --select %t/partial.json 2>&1 | FileCheck %s --check-prefix=PARTIAL
// RUN: not mantissa tune %models/mlp_digits.mlir -o %t/p.json --select %t/noplans.json 2>&1 | FileCheck %s --check-prefix=NOPLANS
// RUN: not mantissa tune %models/mlp_digits.mlir -o %t/p.json --max-metric-gap inf 2>&1 | FileCheck %s --check-prefix=INFGAP
// RUN: not mantissa tune %models/mlp_digits.mlir -o %t/p.json --max-grad-underflow 1.5 2>&1 | FileCheck %s --check-prefix=SHARE
// RUN: not mantissa tune %models/mlp_digits.mlir -o %t/p.json --max-metric-gap nan 2>&1 | FileCheck %s --check-prefix=NANGAP
// RUN: not mantissa tune %models/mlp_digits.mlir -o %t/p.json --lr inf 2>&1 | FileCheck %s --check-prefix=INFLR
// RUN: mkdir -p %t/adir
// RUN: not mantissa tune %models/mlp_digits.mlir -o %t/p.json --select %t/adir 2>&1 | FileCheck %s --check-prefix=DIR
// RUN: not mantissa tune %models/mlp_digits.mlir -o %t/p.json --device %t/adir 2>&1 | FileCheck %s --check-prefix=DEVDIR
// RUN: not mantissa tune %models/mlp_digits.mlir -o %t/p.json --select %t/dup.json 2>&1 | FileCheck %s --check-prefix=DUP
// RUN: not test -e %t/p.json
// RUN: not mantissa tune %models/mlp_digits.mlir -o %t/nofolder/p.json 2>&1 | FileCheck %s --check-prefix=NOFOLDER
// RUN: not mantissa tune %models/mlp_digits.mlir -o %t/adir 2>&1 | FileCheck %s --check-prefix=ODIR
// RUN: not mantissa tune %models/mlp_digits.mlir -o %t/p.json --plot %t/nofolder/front.svg 2>&1 | FileCheck %s --check-prefix=NOPLOTFOLDER
// RUN: not mantissa tune %models/mlp_digits.mlir -o %t/p.json --emit-candidates %t/dup.json/c 2>&1 | FileCheck %s --check-prefix=EMITFILE
// RUN: not test -e %t/p.json
// RUN: not mantissa tune %models/mlp_digits.mlir -o %t/p.json --select %t/zero.json 2>&1 | FileCheck %s --check-prefix=ZEROMS
// RUN: not mantissa tune %models/mlp_digits.mlir -o %t/p.json --select %t/hugej.json 2>&1 | FileCheck %s --check-prefix=HUGEJ
// RUN: not test -e %t/p.json
// RUN: cp %t/noplans.json %t/same.json
// RUN: not mantissa tune %models/mlp_digits.mlir --select %t/same.json -o %t/same.json 2>&1 | FileCheck %s --check-prefix=SAME
// RUN: cmp %t/noplans.json %t/same.json

// BUDGET: error: option '--budget' needs an integer >= 1, got '0'
// GAP: error: option '--max-metric-gap' needs a finite number >= 0, got 'abc'
// NEGGAP: error: option '--max-metric-gap' needs a finite number >= 0, got '-0.1'
// INFGAP: error: option '--max-metric-gap' needs a finite number >= 0, got 'inf'
// SHARE: error: option '--max-grad-underflow' is a share of the gradients, a number in [0, 1]; got '1.5'
// NANGAP: error: option '--max-metric-gap' needs a finite number >= 0, got 'nan'
// INFLR: error: option '--lr' needs a finite number >= 0, got 'inf'
// DIR: error: {{.*}}adir: is a directory, expected a file
// DEVDIR: error: {{.*}}adir: is a directory, expected a file
// DUP: error: {{.*}}dup.json: duplicate key "ms_per_step" at byte 53 (line 2, column 42); each key may appear once
// NOFOLDER: error: -o {{.*}}nofolder/p.json: no folder {{.*}}nofolder to write it in
// ODIR: error: -o {{.*}}adir: is a directory; name a file
// NOPLOTFOLDER: error: --plot {{.*}}nofolder/front.svg: no folder {{.*}}nofolder to write it in
// EMITFILE: error: --emit-candidates {{.*}}dup.json/c: cannot make it a directory (Not a directory)
// PARTIAL: error: {{.*}}partial.json: invalid JSON at byte 34: control character in string
// SAME: error: -o {{.*}}same.json is the input {{.*}}same.json; name the policy differently
// ZEROMS: error: {{.*}}zero.json: "ms_per_step" is 0; expected a finite number > 0
// HUGEJ: error: {{.*}}hugej.json: "joules_per_step" is 1e999; expected a finite number >= 0
// NOPLANS: error: {{.*}}noplans.json: needs "plans": [{"plan", "ms_per_step"}, ...] (mantissa-run measure --json)

//--- partial.json
{"plans": [{"plan": "a.plan", "ms_
//--- noplans.json
{"results": []}
//--- dup.json
{"plans": [
  {"plan": "a.plan", "ms_per_step": 1.5, "ms_per_step": 2.5}]}
//--- zero.json
{"plans": [{"plan": "a.plan", "ms_per_step": 0}]}
//--- hugej.json
{"plans": [{"plan": "a.plan", "ms_per_step": 2.5, "joules_per_step": 1e999}]}
