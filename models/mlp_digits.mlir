// mlp_digits: 64 -> 128 -> 128 -> 10 with ReLU, softmax cross-entropy, batch 64.
// The default demo (shared/MODELS.md). Parameter names are torch.nn.Linear's.
module attributes {graph.model = "mlp_digits", graph.task = "classification", graph.num_classes = 10 : i64} {
  func.func @forward() -> (tensor<f32>, tensor<64x10xf32>) {
    %x = graph.input "x" : tensor<64x64xf32>
    %y = graph.input "y" : tensor<64xi32>
    %w1 = graph.param "fc1.weight" {init = "uniform", bound = 0.125} : tensor<128x64xf32>
    %b1 = graph.param "fc1.bias" {init = "uniform", bound = 0.125} : tensor<128xf32>
    %w2 = graph.param "fc2.weight" {init = "uniform", bound = 0.08838834764831845} : tensor<128x128xf32>
    %b2 = graph.param "fc2.bias" {init = "uniform", bound = 0.08838834764831845} : tensor<128xf32>
    %w3 = graph.param "fc3.weight" {init = "uniform", bound = 0.08838834764831845} : tensor<10x128xf32>
    %b3 = graph.param "fc3.bias" {init = "uniform", bound = 0.08838834764831845} : tensor<10xf32>
    %h1 = graph.linear %x, %w1, %b1 {graph.name = "fc1"} : tensor<64x64xf32>, tensor<128x64xf32>, tensor<128xf32> -> tensor<64x128xf32>
    %r1 = graph.relu %h1 : tensor<64x128xf32>
    %h2 = graph.linear %r1, %w2, %b2 {graph.name = "fc2"} : tensor<64x128xf32>, tensor<128x128xf32>, tensor<128xf32> -> tensor<64x128xf32>
    %r2 = graph.relu %h2 : tensor<64x128xf32>
    %z = graph.linear %r2, %w3, %b3 {graph.name = "fc3"} : tensor<64x128xf32>, tensor<10x128xf32>, tensor<10xf32> -> tensor<64x10xf32>
    %loss = graph.softmax_cross_entropy %z, %y {graph.name = "loss"} : tensor<64x10xf32>, tensor<64xi32> -> tensor<f32>
    return %loss, %z : tensor<f32>, tensor<64x10xf32>
  }
}
