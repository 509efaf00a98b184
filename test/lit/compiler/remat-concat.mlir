// RUN: mantissa-opt %s --remat-concat | FileCheck %s
// The skip %r is read again after the concatenation (as the backward's relu_grad
// and max-pool gradient read it): those uses read a slice of the concatenation,
// taken just before the first of them, so %r itself dies at the concatenation.
// %u is read only before: it stays. A parameter is not a temporary: it stays.
// In the U-Net this lowers the fp16 plan's peak by 283 MB (README).

// CHECK-LABEL: func.func @skip
//       CHECK:   %[[R:.*]] = graph.relu %{{.*}} : tensor<2x4x6x6xf32>
//       CHECK:   %[[P:.*]], %{{.*}} = graph.max_pool2d %[[R]]
//       CHECK:   %[[U:.*]] = graph.relu %{{.*}} : tensor<2x4x6x6xf32>
//       CHECK:   %[[Y:.*]] = graph.neg %[[U]]
//       CHECK:   %[[C:.*]] = graph.concat %[[U]], %[[R]], %[[W:.*]] {axis = 1 : i64}
//       CHECK:   %[[S:.*]] = graph.slice %[[C]] {axis = 1 : i64, offset = 4 : i64, size = 4 : i64} : tensor<2x10x6x6xf32> -> tensor<2x4x6x6xf32>
//  CHECK-NEXT:   %[[D:.*]] = graph.max_pool2d_backward %{{.*}}, %[[S]], %[[P]]
//  CHECK-NEXT:   %[[G:.*]] = graph.relu_grad %[[S]], %[[D]]
//  CHECK-NEXT:   %[[WN:.*]] = graph.neg %[[W]]
//   CHECK-NOT:   graph.slice
//       CHECK:   return %[[C]], %[[Y]], %[[G]], %[[WN]]
// CHECK-LABEL: func.func @only_before
//   CHECK-NOT:   graph.slice
func.func @skip(%x: tensor<2x4x6x6xf32>, %dp: tensor<2x4x3x3xf32>) -> (tensor<2x10x6x6xf32>, tensor<2x4x6x6xf32>, tensor<2x4x6x6xf32>, tensor<2x2x6x6xf32>) {
  %r = graph.relu %x : tensor<2x4x6x6xf32>
  %p, %i = graph.max_pool2d %r : tensor<2x4x6x6xf32> -> tensor<2x4x3x3xf32>, tensor<2x4x3x3xi32>
  %u = graph.relu %r : tensor<2x4x6x6xf32>
  %w = graph.param "w" {init = "zeros"} : tensor<2x2x6x6xf32>
  %y = graph.neg %u : tensor<2x4x6x6xf32>
  %c = graph.concat %u, %r, %w {axis = 1 : i64} : tensor<2x4x6x6xf32>, tensor<2x4x6x6xf32>, tensor<2x2x6x6xf32> -> tensor<2x10x6x6xf32>
  %d = graph.max_pool2d_backward %dp, %r, %p {kernel = 2 : i64, stride = 2 : i64} : tensor<2x4x3x3xf32>, tensor<2x4x6x6xf32>, tensor<2x4x3x3xf32> -> tensor<2x4x6x6xf32>
  %g = graph.relu_grad %r, %d : tensor<2x4x6x6xf32>
  %wn = graph.neg %w : tensor<2x2x6x6xf32>
  return %c, %y, %g, %wn : tensor<2x10x6x6xf32>, tensor<2x4x6x6xf32>, tensor<2x4x6x6xf32>, tensor<2x2x6x6xf32>
}

func.func @only_before(%x: tensor<2x4xf32>) -> tensor<2x8xf32> {
  %a = graph.relu %x : tensor<2x4xf32>
  %b = graph.neg %a : tensor<2x4xf32>
  %c = graph.concat %a, %b {axis = 1 : i64} : tensor<2x4xf32>, tensor<2x4xf32> -> tensor<2x8xf32>
  return %c : tensor<2x8xf32>
}
