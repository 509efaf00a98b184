// A digits classifier with one layer whose weight gradients fp16 cannot carry
// without loss scaling: "fc1" reads its input scaled by 1e-5 (with its weight scaled
// by 1e5, so it computes an ordinary linear map of ordinary-sized parameters).
// Forward, every value is within fp16's range (the inputs as subnormals, good to
// about 1%); backward, fc1's weight gradient is the product of those inputs and the
// gradient at its output, about 1e-8, below fp16's smallest subnormal (6e-8), so in
// fp16 without a loss scale most of it rounds to zero. Dynamic loss scaling (x65536)
// or bf16 (fp32's exponent range) carries it; fc2 and head are ordinary in any
// precision. (fc1 has no bias, whose ordinary gradient would dominate its group's.)
module attributes {graph.model = "grad_underflow", graph.task = "classification", graph.num_classes = 10 : i64} {
  func.func @forward() -> (tensor<f32>, tensor<64x10xf32>) {
    %x = graph.input "x" : tensor<64x64xf32>
    %y = graph.input "y" : tensor<64xi32>
    %w1 = graph.param "fc1.weight" {init = "uniform", bound = 0.125} : tensor<256x64xf32>
    %w2 = graph.param "fc2.weight" {init = "uniform", bound = 0.0625} : tensor<256x256xf32>
    %b2 = graph.param "fc2.bias" {init = "uniform", bound = 0.0625} : tensor<256xf32>
    %w3 = graph.param "head.weight" {init = "uniform", bound = 0.0625} : tensor<10x256xf32>
    %b3 = graph.param "head.bias" {init = "uniform", bound = 0.0625} : tensor<10xf32>
    %down = graph.constant 1.0e-5 : tensor<f32>
    %xs = graph.mul %x, %down {graph.name = "x.scale"} : tensor<64x64xf32>, tensor<f32> -> tensor<64x64xf32>
    %up = graph.constant 1.0e5 : tensor<f32>
    %w1s = graph.mul %w1, %up {graph.name = "fc1.weight_scale"} : tensor<256x64xf32>, tensor<f32> -> tensor<256x64xf32>
    %h1 = graph.linear %xs, %w1s {graph.name = "fc1"} : tensor<64x64xf32>, tensor<256x64xf32> -> tensor<64x256xf32>
    %r1 = graph.relu %h1 : tensor<64x256xf32>
    %h2 = graph.linear %r1, %w2, %b2 {graph.name = "fc2"} : tensor<64x256xf32>, tensor<256x256xf32>, tensor<256xf32> -> tensor<64x256xf32>
    %r2 = graph.relu %h2 : tensor<64x256xf32>
    %z = graph.linear %r2, %w3, %b3 {graph.name = "head"} : tensor<64x256xf32>, tensor<10x256xf32>, tensor<10xf32> -> tensor<64x10xf32>
    %loss = graph.softmax_cross_entropy %z, %y {graph.name = "loss"} : tensor<64x10xf32>, tensor<64xi32> -> tensor<f32>
    return %loss, %z : tensor<f32>, tensor<64x10xf32>
  }
}
