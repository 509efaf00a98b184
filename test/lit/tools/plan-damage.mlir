// A plan damaged after compiling is refused on load, by the runtime and by inspect,
// with one message; a damaged value (here one letter of a function's name) passes
// FlatBuffers verification, and the checksum (plan version 8) is what finds it.
// RUN: mantissa compile %models/mlp_digits.mlir -o %t.plan --arch none
// RUN: mantissa inspect %t.plan | FileCheck %s --check-prefix=GOOD
// RUN: python3 -c "import sys; p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); i = b.index(b'eval_step'); b[i + 1] ^= 0x01; open(p + '.bad', 'wb').write(b)" %t.plan
// RUN: not mantissa-run train %t.plan.bad --data digits --steps 1 2>&1 | FileCheck %s -DPLAN=%t.plan.bad
// RUN: not mantissa inspect %t.plan.bad 2>&1 | FileCheck %s -DPLAN=%t.plan.bad
// RUN: head -c 100 %t.plan > %t.short.plan
// RUN: not mantissa-run train %t.short.plan --data digits --steps 1 2>&1 | FileCheck %s --check-prefix=SHORT

// GOOD: plan version 8, {{[0-9]+}} bytes, checksum {{[0-9a-f]+}} (holds)

// CHECK: [[PLAN]]: corrupt plan (its {{[0-9]+}} bytes hash to {{[0-9a-f]+}}, but it records checksum {{[0-9a-f]+}}: damaged or modified after compiling; copy or compile it again)
// CHECK-NOT: step

// SHORT: corrupt plan (100 bytes fail FlatBuffers verification: truncated or damaged file)
