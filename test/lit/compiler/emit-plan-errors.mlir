// emit-plan reports what it cannot lower at the op concerned.
// RUN: mantissa-opt %s --split-input-file --verify-diagnostics --emit-plan=output=%t.plan -o /dev/null

// expected-error @below {{emit-plan: the module has no func.func @train_step}}
module {
  func.func @forward() -> tensor<f32> {
    %c = graph.constant 1.0 : tensor<f32>
    return %c : tensor<f32>
  }
}

// -----

module {
  func.func private @helper() -> tensor<f32>
  func.func @train_step() -> tensor<f32> {
    // expected-error @below {{emit-plan: no plan lowering for 'func.call'}}
    %c = func.call @helper() : () -> tensor<f32>
    return %c : tensor<f32>
  }
  func.func @forward() -> tensor<f32> {
    %c = graph.constant 1.0 : tensor<f32>
    return %c : tensor<f32>
  }
}

// -----

module {
  func.func @train_step() -> tensor<f64> {
    // expected-error @below {{emit-plan: element type 'f64' has no plan dtype}}
    %c = graph.constant 1.0 : tensor<f64>
    return %c : tensor<f64>
  }
  func.func @forward() -> tensor<f32> {
    %c = graph.constant 1.0 : tensor<f32>
    return %c : tensor<f32>
  }
}

// -----

module {
  func.func @train_step() -> tensor<f32> {
    %x = graph.input "x" : tensor<4x2xf32>
    %c = graph.constant 1.0 : tensor<f32>
    // expected-error @below {{emit-plan: assigns "fc.weight", which no graph.param or graph.buffer declares}}
    graph.assign "fc.weight", %c : tensor<f32>
    return %c : tensor<f32>
  }
  func.func @forward() -> tensor<f32> {
    %c = graph.constant 1.0 : tensor<f32>
    return %c : tensor<f32>
  }
}

// -----

module {
  func.func @train_step() -> tensor<f32> {
    %w = graph.param "w" {init = "zeros"} : tensor<3xf32>
    %c = graph.constant 1.0 : tensor<3xf32>
    graph.assign "w", %c : tensor<3xf32>
    // expected-error @below {{emit-plan: "w" is assigned twice in one step}}
    graph.assign "w", %c : tensor<3xf32>
    %l = graph.constant 0.0 : tensor<f32>
    return %l : tensor<f32>
  }
  func.func @forward() -> tensor<f32> {
    %c = graph.constant 1.0 : tensor<f32>
    return %c : tensor<f32>
  }
}

// -----

// expected-error @below {{emit-plan: the model reads no batched graph.input "x"}}
module {
  func.func @train_step() -> tensor<f32> {
    %c = graph.constant 1.0 : tensor<f32>
    return %c : tensor<f32>
  }
  func.func @forward() -> tensor<f32> {
    %c = graph.constant 1.0 : tensor<f32>
    return %c : tensor<f32>
  }
}
