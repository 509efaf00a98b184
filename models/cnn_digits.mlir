// cnn_digits: conv3x3(1->16) ReLU maxpool2 -> conv3x3(16->32) ReLU maxpool2 -> linear(128->10),
// softmax cross-entropy, digits as 1x8x8 images, batch 64 (shared/MODELS.md).
module attributes {graph.model = "cnn_digits", graph.task = "classification", graph.num_classes = 10 : i64} {
  func.func @forward() -> (tensor<f32>, tensor<64x10xf32>) {
    %x = graph.input "x" : tensor<64x1x8x8xf32>
    %y = graph.input "y" : tensor<64xi32>
    %w1 = graph.param "conv1.weight" {init = "uniform", bound = 0.3333333333333333} : tensor<16x1x3x3xf32>
    %b1 = graph.param "conv1.bias" {init = "uniform", bound = 0.3333333333333333} : tensor<16xf32>
    %w2 = graph.param "conv2.weight" {init = "uniform", bound = 0.08333333333333333} : tensor<32x16x3x3xf32>
    %b2 = graph.param "conv2.bias" {init = "uniform", bound = 0.08333333333333333} : tensor<32xf32>
    %w3 = graph.param "fc.weight" {init = "uniform", bound = 0.08838834764831845} : tensor<10x128xf32>
    %b3 = graph.param "fc.bias" {init = "uniform", bound = 0.08838834764831845} : tensor<10xf32>
    %c1 = graph.conv2d %x, %w1, %b1 {graph.name = "conv1", padding = array<i64: 1, 1>} : tensor<64x1x8x8xf32>, tensor<16x1x3x3xf32>, tensor<16xf32> -> tensor<64x16x8x8xf32>
    %r1 = graph.relu %c1 : tensor<64x16x8x8xf32>
    %p1, %i1 = graph.max_pool2d %r1 {graph.name = "pool1"} : tensor<64x16x8x8xf32> -> tensor<64x16x4x4xf32>, tensor<64x16x4x4xi32>
    %c2 = graph.conv2d %p1, %w2, %b2 {graph.name = "conv2", padding = array<i64: 1, 1>} : tensor<64x16x4x4xf32>, tensor<32x16x3x3xf32>, tensor<32xf32> -> tensor<64x32x4x4xf32>
    %r2 = graph.relu %c2 : tensor<64x32x4x4xf32>
    %p2, %i2 = graph.max_pool2d %r2 {graph.name = "pool2"} : tensor<64x32x4x4xf32> -> tensor<64x32x2x2xf32>, tensor<64x32x2x2xi32>
    %f = graph.reshape %p2 : tensor<64x32x2x2xf32> to tensor<64x128xf32>
    %z = graph.linear %f, %w3, %b3 {graph.name = "fc"} : tensor<64x128xf32>, tensor<10x128xf32>, tensor<10xf32> -> tensor<64x10xf32>
    %loss = graph.softmax_cross_entropy %z, %y {graph.name = "loss"} : tensor<64x10xf32>, tensor<64xi32> -> tensor<f32>
    return %loss, %z : tensor<f32>, tensor<64x10xf32>
  }
}
