// A linear classifier of the digits whose loss is multiplied by 1e-6: in fp16 its
// logit gradients (about 1e-8) underflow to zero unless the loss is scaled.
module attributes {graph.model = "underflow", graph.task = "classification", graph.num_classes = 10 : i64} {
  func.func @forward() -> (tensor<f32>, tensor<64x10xf32>) {
    %x = graph.input "x" : tensor<64x64xf32>
    %y = graph.input "y" : tensor<64xi32>
    %w = graph.param "fc.weight" {init = "uniform", bound = 0.125} : tensor<10x64xf32>
    %b = graph.param "fc.bias" {init = "uniform", bound = 0.125} : tensor<10xf32>
    %z = graph.linear %x, %w, %b {graph.name = "fc"} : tensor<64x64xf32>, tensor<10x64xf32>, tensor<10xf32> -> tensor<64x10xf32>
    %ce = graph.softmax_cross_entropy %z, %y : tensor<64x10xf32>, tensor<64xi32> -> tensor<f32>
    %tiny = graph.constant 1.0e-6 : tensor<f32>
    %loss = graph.mul %ce, %tiny : tensor<f32>, tensor<f32> -> tensor<f32>
    return %loss, %z : tensor<f32>, tensor<64x10xf32>
  }
}
