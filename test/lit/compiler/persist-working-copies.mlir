// RUN: mantissa-opt %s --persist-working-copies | FileCheck %s
// RUN: mantissa-opt %models/mlp_digits.mlir --assign-precision=policy=fp16 --autodiff --lower-optimizer="optimizer=sgd lr=0.05 momentum=0.9" --insert-loss-scaling --persist-working-copies --fuse-elementwise | FileCheck %s --check-prefix=FUSED
// RUN: mantissa compile %models/mlp_digits.mlir --precision bf16 --arch none -o %t.plan
// RUN: mantissa inspect %t.plan --all-tensors | FileCheck %s --check-prefix=PLAN
//
// "w" is assigned once, after every reader of its casts: both casts (f16 and bf16)
// become working copies, in @forward too, and each is written from the new master
// right after the master's assign. "frozen" is never assigned and "late"'s cast is
// read after its assign: their casts stay.

// CHECK-LABEL: func.func @forward
//       CHECK:   %[[W:.*]] = graph.working_copy "w:f16" of "w" : tensor<4x4xf16>
//       CHECK:   %[[L:.*]] = graph.param "late"
//  CHECK-NEXT:   %[[CL:.*]] = graph.cast %[[L]] : tensor<4x4xf32> to tensor<4x4xf16>
//  CHECK-NEXT:   graph.add %[[W]], %[[CL]]
// CHECK-LABEL: func.func @train_step
//   CHECK-DAG:   %[[W16:.*]] = graph.working_copy "w:f16" of "w" : tensor<4x4xf16>
//   CHECK-DAG:   %[[W8:.*]] = graph.working_copy "w:bf16" of "w" : tensor<4x4xbf16>
//   CHECK-DAG:   %[[F:.*]] = graph.param "frozen"
//   CHECK-DAG:   %[[CF:.*]] = graph.cast %[[F]] : tensor<4x4xf32> to tensor<4x4xbf16>
//   CHECK-DAG:   graph.cast %{{.*}} : tensor<4x4xf32> to tensor<4x4xf16>
//       CHECK:   %[[A:.*]] = graph.neg %[[W16]] : tensor<4x4xf16>
//  CHECK-NEXT:   graph.add %[[W8]], %[[CF]]
//       CHECK:   %[[NEW:.*]] = graph.sub
//  CHECK-NEXT:   graph.assign "w", %[[NEW]] : tensor<4x4xf32>
//   CHECK-DAG:   %[[N16:.*]] = graph.cast %[[NEW]] : tensor<4x4xf32> to tensor<4x4xf16>
//   CHECK-DAG:   graph.assign "w:f16", %[[N16]] : tensor<4x4xf16>
//   CHECK-DAG:   %[[N8:.*]] = graph.cast %[[NEW]] : tensor<4x4xf32> to tensor<4x4xbf16>
//   CHECK-DAG:   graph.assign "w:bf16", %[[N8]] : tensor<4x4xbf16>
//       CHECK:   graph.assign "late"
//   CHECK-NOT:   graph.working_copy
//   CHECK-NOT:   graph.assign "late:

// With insert-loss-scaling's check of the fp16 gradients times 1/scale, the unscale
// (widen, times 1/scale) and the cast of the new master join the update: one kernel
// reads the fp16 gradient and the fp32 master and writes the master, its momentum
// and its fp16 working copy.
// FUSED-LABEL: func.func @train_step
//       FUSED:   %[[P:.*]] = graph.param "fc1.weight"
//  FUSED-NEXT:   %[[C:.*]] = graph.working_copy "fc1.weight:f16" of "fc1.weight" : tensor<128x64xf16>
//   FUSED-NOT:   graph.cast %[[P]]
//       FUSED:   graph.linear %{{.*}}, %[[C]]
//       FUSED:   %[[DW:.*]] = graph.matmul %{{.*}}, %{{.*}} {transpose_a = true} : tensor<64x128xf16>, tensor<64x64xf16> -> tensor<128x64xf16>
//       FUSED:   %[[INV:.*]] = graph.div
//       FUSED:   %[[OK:.*]] = graph.all_finite %[[DW]], {{.*}} times %[[INV]] {graph.found_finite}
//  FUSED-NEXT:   %[[U:.*]]:3 = graph.fused(%[[DW]], %[[INV]], %[[P]], %{{.*}}, %[[OK]], %{{.*}}) {graph.name = "cast+mul+sgd_update+cast"} {{.*}} -> (tensor<128x64xf32>, tensor<128x64xf32>, tensor<128x64xf16>)
//       FUSED:   graph.assign "fc1.weight", %[[U]]#0
//  FUSED-NEXT:   graph.assign "fc1.weight:f16", %[[U]]#2

// In the plan, a WorkingCopy tensor per cast parameter names its master; the update
// writes it, and nothing casts a parameter any more.
//  PLAN: WorkingCopy: 6 tensors, 26122 elements, 52244 bytes
//  PLAN: t[[M:[0-9]+]] Param fc1.weight f32[128x64]
//  PLAN: t[[C:[0-9]+]] WorkingCopy fc1.weight:bf16 bf16[128x64] = t[[M]](fc1.weight) rounded
//  PLAN: function train_step:
//  PLAN-NOT: in0 = t[[M]](fc1.weight):f32[128x64] strides [64, 1]{{$}}
//  PLAN: sgd_update+cast graph.fused Elementwise f32 shape [128x64]
//  PLAN: out{{[0-9]}} t[[C]](fc1.weight:bf16):bf16[128x64]
//  PLAN: function eval_step:
//  PLAN: graph.linear Gemm bf16 a={{.*}} b=t[[C]](fc1.weight:bf16)
func.func @forward() -> tensor<4x4xf16> {
  %w = graph.param "w" {init = "zeros"} : tensor<4x4xf32>
  %l = graph.param "late" {init = "zeros"} : tensor<4x4xf32>
  %cw = graph.cast %w : tensor<4x4xf32> to tensor<4x4xf16>
  %cl = graph.cast %l : tensor<4x4xf32> to tensor<4x4xf16>
  %y = graph.add %cw, %cl : tensor<4x4xf16>, tensor<4x4xf16> -> tensor<4x4xf16>
  return %y : tensor<4x4xf16>
}

func.func @train_step() -> (tensor<4x4xf16>, tensor<4x4xbf16>, tensor<4x4xbf16>) {
  %w = graph.param "w" {init = "zeros"} : tensor<4x4xf32>
  %f = graph.param "frozen" {init = "zeros"} : tensor<4x4xf32>
  %l = graph.param "late" {init = "zeros"} : tensor<4x4xf32>
  %cw = graph.cast %w : tensor<4x4xf32> to tensor<4x4xf16>
  %cwb = graph.cast %w : tensor<4x4xf32> to tensor<4x4xbf16>
  %cf = graph.cast %f : tensor<4x4xf32> to tensor<4x4xbf16>
  %cl = graph.cast %l : tensor<4x4xf32> to tensor<4x4xf16>
  %a = graph.neg %cw : tensor<4x4xf16>
  %b = graph.add %cwb, %cf : tensor<4x4xbf16>, tensor<4x4xbf16> -> tensor<4x4xbf16>
  %g = graph.cast %a : tensor<4x4xf16> to tensor<4x4xf32>
  %w2 = graph.sub %w, %g : tensor<4x4xf32>, tensor<4x4xf32> -> tensor<4x4xf32>
  graph.assign "w", %w2 : tensor<4x4xf32>
  %l2 = graph.neg %l : tensor<4x4xf32>
  graph.assign "late", %l2 : tensor<4x4xf32>
  %r = graph.add %cl, %a : tensor<4x4xf16>, tensor<4x4xf16> -> tensor<4x4xf16>
  %fb = graph.neg %cf : tensor<4x4xbf16>
  return %r, %b, %fb : tensor<4x4xf16>, tensor<4x4xbf16>, tensor<4x4xbf16>
}
