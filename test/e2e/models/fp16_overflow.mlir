// A digits classifier with one layer fp16 cannot carry: "big" has weights of scale
// 1e6 (rescaled by 1e-6 after the product), so in fp16 its weights and activations
// overflow to infinity (fp16's largest finite value is 65504) while bf16 and fp32
// carry them. The other layers are ordinary. The tuner must keep "big" in fp32 or
// bf16 and may demote the rest.
module attributes {graph.model = "fp16_overflow", graph.task = "classification", graph.num_classes = 10 : i64} {
  func.func @forward() -> (tensor<f32>, tensor<64x10xf32>) {
    %x = graph.input "x" : tensor<64x64xf32>
    %y = graph.input "y" : tensor<64xi32>
    %w1 = graph.param "big.weight" {init = "uniform", bound = 1.0e6} : tensor<256x64xf32>
    %w2 = graph.param "fc2.weight" {init = "uniform", bound = 0.0625} : tensor<256x256xf32>
    %b2 = graph.param "fc2.bias" {init = "uniform", bound = 0.0625} : tensor<256xf32>
    %w3 = graph.param "head.weight" {init = "uniform", bound = 0.0625} : tensor<10x256xf32>
    %b3 = graph.param "head.bias" {init = "uniform", bound = 0.0625} : tensor<10xf32>
    %h1 = graph.linear %x, %w1 {graph.name = "big"} : tensor<64x64xf32>, tensor<256x64xf32> -> tensor<64x256xf32>
    %s = graph.constant 1.0e-6 : tensor<f32>
    %h1s = graph.mul %h1, %s {graph.name = "big.rescale"} : tensor<64x256xf32>, tensor<f32> -> tensor<64x256xf32>
    %r1 = graph.relu %h1s : tensor<64x256xf32>
    %h2 = graph.linear %r1, %w2, %b2 {graph.name = "fc2"} : tensor<64x256xf32>, tensor<256x256xf32>, tensor<256xf32> -> tensor<64x256xf32>
    %r2 = graph.relu %h2 : tensor<64x256xf32>
    %z = graph.linear %r2, %w3, %b3 {graph.name = "head"} : tensor<64x256xf32>, tensor<10x256xf32>, tensor<10xf32> -> tensor<64x10xf32>
    %loss = graph.softmax_cross_entropy %z, %y {graph.name = "loss"} : tensor<64x10xf32>, tensor<64xi32> -> tensor<f32>
    return %loss, %z : tensor<f32>, tensor<64x10xf32>
  }
}
