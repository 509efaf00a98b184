//===- GraphOps.td - graph dialect ops ---------------------*- tablegen -*-===//
//
// The ops the model zoo needs, forward and gradient. Each op states its
// precision category (the autocast table) and, if elementwise, its per-element
// program; shapes and element types of results are inferred and verified.
//===----------------------------------------------------------------------===//
#ifndef MANTISSA_GRAPH_OPS
#define MANTISSA_GRAPH_OPS

include "mantissa/Graph/GraphDialect.td"
include "mantissa/Graph/GraphInterfaces.td"
include "mlir/IR/OpBase.td"
include "mlir/IR/BuiltinAttributes.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"

def Graph_FloatTensor : RankedTensorOf<[F32, F16, BF16, F64]>;
def Graph_LabelTensor : RankedTensorOf<[I32]>;
def Graph_AnyTensor : RankedTensorOf<[F32, F16, BF16, F64, I32]>;
def Graph_ScalarF32 : 0DTensorOf<[F32, F64]>;

// Base class: `category` is one of Lower, Fp32, Follow, Fixed.
class Graph_Op<string mnemonic, string category, list<Trait> traits = []>
    : Op<Graph_Dialect, mnemonic, !listconcat(traits, [Graph_PrecisionOpInterface])> {
  code categoryDecl = "static ::mantissa::graph::PrecisionCategory getPrecisionCategory() { "
                      "return ::mantissa::graph::PrecisionCategory::" # category # "; }";
  let extraClassDeclaration = categoryDecl;
}

// An elementwise op: `program` is the body of buildScalarProgram(p, in).
class Graph_ElementwiseOp<string mnemonic, string category, code program,
                          list<Trait> traits = []>
    : Graph_Op<mnemonic, category, !listconcat(traits,
        [Pure, Graph_ElementwiseOpInterface])> {
  let extraClassDeclaration = categoryDecl # [{
    ::llvm::SmallVector<int> buildScalarProgram(::mantissa::graph::ScalarProgramBuilder &p,
                                                ::llvm::ArrayRef<int> in) {
  }] # program # [{
    }
  }];
}

//===----------------------------------------------------------------------===//
// Values from outside: parameters, buffers, inputs, constants; writes back.
//===----------------------------------------------------------------------===//

def Graph_ParamOp : Graph_Op<"param", "Fixed"> {
  let summary = "a trainable parameter (fp32 master copy)";
  let description = [{
    `name` is the PyTorch state-dict name. `init` is `uniform` (in ±`bound`, the
    PyTorch default for linear/conv weights and biases: bound = 1/sqrt(fan_in)),
    `zeros` or `ones`.

    ```mlir
    %w = graph.param "fc1.weight" {init = "uniform", bound = 0.125 : f64} : tensor<128x64xf32>
    ```
  }];
  let arguments = (ins StrAttr:$name, StrAttr:$init, OptionalAttr<F64Attr>:$bound);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Graph_BufferOp : Graph_Op<"buffer", "Fixed"> {
  let summary = "persistent non-trainable state (batch-norm running stats, optimizer and loss-scaler state)";
  let description = [{
    ```mlir
    %rm = graph.buffer "b1.running_mean" {init = "zeros"} : tensor<16xf32>
    ```
    `kind` says what the state belongs to: `model` (checkpointed with the
    model's state dict), `optimizer` or `scaler`.
  }];
  let arguments = (ins StrAttr:$name, StrAttr:$init, OptionalAttr<F64Attr>:$value,
                       DefaultValuedStrAttr<StrAttr, "model">:$kind);
  let results = (outs Graph_AnyTensor:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Graph_WorkingCopyOp : Graph_Op<"working_copy", "Fixed"> {
  let summary = "the low-precision working copy of a parameter, kept between steps";
  let description = [{
    The value of `graph.cast` of the fp32 master `param` to this op's element type
    (f16 or bf16), kept in its own storage from one step to the next instead of
    being cast again each step. The runtime makes it from the master when the
    master is initialised or written from outside (a checkpoint); within a step,
    the step that updates the master writes it too (`graph.assign` of `name`).
    `persist-working-copies` introduces it; `name` is `param:f16` or `param:bf16`.

    ```mlir
    %w = graph.working_copy "fc1.weight:f16" of "fc1.weight" : tensor<128x64xf16>
    ```
  }];
  let arguments = (ins StrAttr:$name, StrAttr:$param);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$name `of` $param attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Graph_InputOp : Graph_Op<"input", "Fixed"> {
  let summary = "a batch of the data set: `x` (inputs) or `y` (labels or targets)";
  let description = [{
    ```mlir
    %x = graph.input "x" : tensor<64x64xf32>
    %y = graph.input "y" : tensor<64xi32>
    ```
  }];
  let arguments = (ins StrAttr:$name);
  let results = (outs Graph_AnyTensor:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
}

def Graph_AssignOp : Graph_Op<"assign", "Fixed"> {
  let summary = "write the new value of a parameter or buffer at the end of the step";
  let description = [{
    ```mlir
    graph.assign "fc1.weight", %new : tensor<128x64xf32>
    ```
  }];
  let arguments = (ins StrAttr:$name, Graph_AnyTensor:$value);
  let assemblyFormat = "$name `,` $value attr-dict `:` type($value)";
}

def Graph_ConstantOp : Graph_Op<"constant", "Fixed", [Pure]> {
  let summary = "a tensor filled with one value";
  let description = [{
    ```mlir
    %one = graph.constant 1.0 : tensor<f32>
    ```
  }];
  let arguments = (ins F64Attr:$value);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$value attr-dict `:` type($result)";
}

//===----------------------------------------------------------------------===//
// Elementwise ops (numpy broadcasting, result type inferred).
//===----------------------------------------------------------------------===//

class Graph_BinaryOp<string mnemonic, string category, code program>
    : Graph_ElementwiseOp<mnemonic, category, program,
                          [DeclareOpInterfaceMethods<InferTypeOpInterface>]> {
  let arguments = (ins Graph_FloatTensor:$lhs, Graph_FloatTensor:$rhs);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs) `->` type($result)";
}

class Graph_UnaryOp<string mnemonic, string category, code program>
    : Graph_ElementwiseOp<mnemonic, category, program, [SameOperandsAndResultType]> {
  let arguments = (ins Graph_FloatTensor:$input);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input)";
}

// A gradient helper: f'(input) * grad, elementwise; same shape and type.
class Graph_UnaryGradOp<string mnemonic, code program>
    : Graph_ElementwiseOp<mnemonic, "Follow", program, [SameOperandsAndResultType]> {
  let arguments = (ins Graph_FloatTensor:$input, Graph_FloatTensor:$grad);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$input `,` $grad attr-dict `:` type($input)";
}

def Graph_AddOp : Graph_BinaryOp<"add", "Follow", [{ return {p.emit(ScalarOp::Add, in[0], in[1])}; }]> {
  let summary = "elementwise sum with broadcasting";
}
def Graph_SubOp : Graph_BinaryOp<"sub", "Follow", [{ return {p.emit(ScalarOp::Sub, in[0], in[1])}; }]> {
  let summary = "elementwise difference with broadcasting";
}
def Graph_MulOp : Graph_BinaryOp<"mul", "Follow", [{ return {p.emit(ScalarOp::Mul, in[0], in[1])}; }]> {
  let summary = "elementwise product with broadcasting";
}
def Graph_DivOp : Graph_BinaryOp<"div", "Follow", [{ return {p.emit(ScalarOp::Div, in[0], in[1])}; }]> {
  let summary = "elementwise quotient with broadcasting";
}

def Graph_ReluOp : Graph_UnaryOp<"relu", "Follow", [{ return {p.emit(ScalarOp::Relu, in[0])}; }]> {
  let summary = "max(x, 0)";
}
def Graph_GeluOp : Graph_UnaryOp<"gelu", "Follow", [{ return {p.emit(ScalarOp::Gelu, in[0])}; }]> {
  let summary = "x Φ(x), the exact (erf) GELU";
}
def Graph_SigmoidOp : Graph_UnaryOp<"sigmoid", "Follow", [{ return {p.emit(ScalarOp::Sigmoid, in[0])}; }]> {
  let summary = "1 / (1 + exp(-x))";
}
def Graph_TanhOp : Graph_UnaryOp<"tanh", "Follow", [{ return {p.emit(ScalarOp::Tanh, in[0])}; }]> {
  let summary = "hyperbolic tangent";
}
def Graph_ExpOp : Graph_UnaryOp<"exp", "Fp32", [{ return {p.emit(ScalarOp::Exp, in[0])}; }]> {
  let summary = "e^x (always fp32, as autocast)";
}
def Graph_LogOp : Graph_UnaryOp<"log", "Fp32", [{ return {p.emit(ScalarOp::Log, in[0])}; }]> {
  let summary = "natural logarithm (always fp32, as autocast)";
}
def Graph_NegOp : Graph_UnaryOp<"neg", "Follow", [{ return {p.emit(ScalarOp::Neg, in[0])}; }]> {
  let summary = "-x";
}

def Graph_ReluGradOp : Graph_UnaryGradOp<"relu_grad", [{
    int zero = p.constant(0.0);
    return {p.emit(ScalarOp::Select, p.emit(ScalarOp::CmpGt, in[0], zero), in[1], zero)};
  }]> {
  let summary = "gradient of relu: grad where x > 0, else 0 (x: the relu's input or, equally, its result)";
}
def Graph_GeluGradOp : Graph_UnaryGradOp<"gelu_grad", [{
    return {p.emit(ScalarOp::Mul, p.emit(ScalarOp::GeluDeriv, in[0]), in[1])};
  }]> {
  let summary = "gradient of gelu: (Φ(x) + x φ(x)) grad";
}
def Graph_SigmoidGradOp : Graph_UnaryGradOp<"sigmoid_grad", [{
    int dy = p.emit(ScalarOp::Mul, in[0], p.emit(ScalarOp::Sub, p.constant(1.0), in[0]));
    return {p.emit(ScalarOp::Mul, dy, in[1])};
  }]> {
  let summary = "gradient of sigmoid from its result y = s(x): y(1 - y) grad";
  let description = [{
    As PyTorch's `sigmoid_backward(grad, output)`: it reads the stored result (in
    fp16 or bf16, the rounded one), not the input, so the input can die in the
    forward pass.
  }];
}
def Graph_TanhGradOp : Graph_UnaryGradOp<"tanh_grad", [{
    int d = p.emit(ScalarOp::Sub, p.constant(1.0), p.emit(ScalarOp::Square, in[0]));
    return {p.emit(ScalarOp::Mul, d, in[1])};
  }]> {
  let summary = "gradient of tanh from its result y = tanh(x): (1 - y^2) grad";
  let description = [{
    As PyTorch's `tanh_backward(grad, output)`: it reads the stored result.
  }];
}

def Graph_CastOp : Graph_ElementwiseOp<"cast", "Fixed", [{ return {in[0]}; }]> {
  let summary = "change the element type (rounding to nearest even)";
  let description = [{
    The rounding happens when the result is stored in its element type; the
    gradient of a cast is a cast back.

    ```mlir
    %h = graph.cast %x : tensor<64x64xf32> to tensor<64x64xf16>
    ```
  }];
  let arguments = (ins Graph_FloatTensor:$input);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `to` type($result)";
  let hasVerifier = 1;
  let hasFolder = 1;
}

//===----------------------------------------------------------------------===//
// Linear algebra and convolutions (low precision, fp32 accumulation).
//===----------------------------------------------------------------------===//

def Graph_MatmulOp : Graph_Op<"matmul", "Lower",
    [Pure, DeclareOpInterfaceMethods<InferTypeOpInterface>]> {
  let summary = "2-D matrix product op(a) · op(b), fp32 accumulation";
  let arguments = (ins Graph_FloatTensor:$a, Graph_FloatTensor:$b,
                       DefaultValuedAttr<BoolAttr, "false">:$transpose_a,
                       DefaultValuedAttr<BoolAttr, "false">:$transpose_b);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$a `,` $b attr-dict `:` type($a) `,` type($b) `->` type($result)";
}

def Graph_LinearOp : Graph_Op<"linear", "Lower",
    [Pure, DeclareOpInterfaceMethods<InferTypeOpInterface>]> {
  let summary = "x · wᵀ + b, as torch.nn.Linear (w is [out, in])";
  let arguments = (ins Graph_FloatTensor:$input, Graph_FloatTensor:$weight,
                       Optional<Graph_FloatTensor>:$bias);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$input `,` $weight (`,` $bias^)? attr-dict `:` type($input) `,` type($weight) (`,` type($bias)^)? `->` type($result)";
}

def Graph_Conv2dOp : Graph_Op<"conv2d", "Lower",
    [Pure, DeclareOpInterfaceMethods<InferTypeOpInterface>]> {
  let summary = "2-D convolution, NCHW, weight [out, in, kh, kw], optional bias [out]";
  let arguments = (ins Graph_FloatTensor:$input, Graph_FloatTensor:$weight,
                       Optional<Graph_FloatTensor>:$bias,
                       DefaultValuedAttr<DenseI64ArrayAttr, "{1, 1}">:$stride,
                       DefaultValuedAttr<DenseI64ArrayAttr, "{0, 0}">:$padding);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$input `,` $weight (`,` $bias^)? attr-dict `:` type($input) `,` type($weight) (`,` type($bias)^)? `->` type($result)";
}

def Graph_ConvTranspose2dOp : Graph_Op<"conv_transpose2d", "Lower",
    [Pure, DeclareOpInterfaceMethods<InferTypeOpInterface>]> {
  let summary = "2-D transposed convolution, NCHW, weight [in, out, kh, kw], optional bias [out]";
  let arguments = (ins Graph_FloatTensor:$input, Graph_FloatTensor:$weight,
                       Optional<Graph_FloatTensor>:$bias,
                       DefaultValuedAttr<DenseI64ArrayAttr, "{1, 1}">:$stride,
                       DefaultValuedAttr<DenseI64ArrayAttr, "{0, 0}">:$padding);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$input `,` $weight (`,` $bias^)? attr-dict `:` type($input) `,` type($weight) (`,` type($bias)^)? `->` type($result)";
}

def Graph_Conv2dBackwardInputOp : Graph_Op<"conv2d_backward_input", "Lower", [Pure]> {
  let summary = "gradient of conv2d with respect to its input (a transposed convolution)";
  let arguments = (ins Graph_FloatTensor:$grad, Graph_FloatTensor:$weight,
                       DenseI64ArrayAttr:$stride, DenseI64ArrayAttr:$padding);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$grad `,` $weight attr-dict `:` type($grad) `,` type($weight) `->` type($result)";
  let hasVerifier = 1;
}

def Graph_Conv2dBackwardWeightOp : Graph_Op<"conv2d_backward_weight", "Lower", [Pure]> {
  let summary = "gradient of conv2d with respect to its weight";
  let arguments = (ins Graph_FloatTensor:$input, Graph_FloatTensor:$grad,
                       DenseI64ArrayAttr:$stride, DenseI64ArrayAttr:$padding);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$input `,` $grad attr-dict `:` type($input) `,` type($grad) `->` type($result)";
  let hasVerifier = 1;
}

def Graph_MaxPool2dOp : Graph_Op<"max_pool2d", "Follow",
    [Pure, DeclareOpInterfaceMethods<InferTypeOpInterface>]> {
  let summary = "2-D max pooling (no padding); also returns the argmax in each plane";
  let arguments = (ins Graph_FloatTensor:$input,
                       DefaultValuedAttr<I64Attr, "2">:$kernel,
                       DefaultValuedAttr<I64Attr, "2">:$stride);
  let results = (outs Graph_FloatTensor:$result, Graph_LabelTensor:$indices);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result) `,` type($indices)";
}

def Graph_MaxPool2dBackwardOp : Graph_Op<"max_pool2d_backward", "Follow", [Pure]> {
  let summary = "gradient of max pooling: grad to each window's argmax, found again in the input";
  let description = [{
    `input` and `pooled` are the forward's input and result. The argmax of a window
    is the element max_pool2d picked: the first equal to the pooled value, or the
    last NaN when that value is NaN. So the forward's indices need not be kept from
    the forward pass to the backward one (the input is kept anyway, for the
    activation's gradient before it), as torch.compile's low-memory max pooling
    keeps only small offsets.
  }];
  let arguments = (ins Graph_FloatTensor:$grad, Graph_FloatTensor:$input, Graph_FloatTensor:$pooled,
                       I64Attr:$kernel, I64Attr:$stride);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$grad `,` $input `,` $pooled attr-dict `:` type($grad) `,` type($input) `,` type($pooled) `->` type($result)";
  let hasVerifier = 1;
}

def Graph_BatchNormOp : Graph_Op<"batch_norm", "Follow",
    [Pure, DeclareOpInterfaceMethods<InferTypeOpInterface>]> {
  let summary = "batch normalisation over (N, H, W) per channel, as torch.nn.BatchNorm2d";
  let description = [{
    In training mode normalises by the batch statistics (fp32), and returns them
    (mean, 1/sqrt(var + eps)) for the backward pass together with the updated
    running statistics (momentum, unbiased variance). In eval mode it uses the
    running statistics, and the last four results repeat them.

    ```mlir
    %y, %mean, %invstd, %rm2, %rv2 = graph.batch_norm %x, %g, %b, %rm, %rv {training = true}
        : tensor<8x16x4x4xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32>
        -> tensor<8x16x4x4xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32>, tensor<16xf32>
    ```
  }];
  let arguments = (ins Graph_FloatTensor:$input, Graph_FloatTensor:$gamma, Graph_FloatTensor:$beta,
                       Graph_FloatTensor:$running_mean, Graph_FloatTensor:$running_var,
                       DefaultValuedAttr<F64Attr, "1e-5">:$eps,
                       DefaultValuedAttr<F64Attr, "0.1">:$momentum,
                       DefaultValuedAttr<BoolAttr, "true">:$training);
  let results = (outs Graph_FloatTensor:$result, Graph_FloatTensor:$saved_mean,
                      Graph_FloatTensor:$saved_invstd, Graph_FloatTensor:$new_running_mean,
                      Graph_FloatTensor:$new_running_var);
  let assemblyFormat = "operands attr-dict `:` type(operands) `->` type(results)";
}

def Graph_BatchNormBackwardOp : Graph_Op<"batch_norm_backward", "Follow",
    [Pure, DeclareOpInterfaceMethods<InferTypeOpInterface>]> {
  let summary = "gradient of training-mode batch normalisation: (dx, dgamma, dbeta)";
  let description = [{
    With `mask` (fuse-elementwise folds a relu_grad into it: the relu's result), the
    gradient that flows in is `mask > 0 ? grad : 0`, as relu_grad computes it.
  }];
  let arguments = (ins Graph_FloatTensor:$grad, Graph_FloatTensor:$input, Graph_FloatTensor:$gamma,
                       Graph_FloatTensor:$saved_mean, Graph_FloatTensor:$saved_invstd,
                       Optional<Graph_FloatTensor>:$mask);
  let results = (outs Graph_FloatTensor:$grad_input, Graph_FloatTensor:$grad_gamma,
                      Graph_FloatTensor:$grad_beta);
  let assemblyFormat = "operands attr-dict `:` type(operands) `->` type(results)";
}

//===----------------------------------------------------------------------===//
// Shape ops.
//===----------------------------------------------------------------------===//

def Graph_ConcatOp : Graph_Op<"concat", "Follow",
    [Pure, DeclareOpInterfaceMethods<InferTypeOpInterface>]> {
  let summary = "concatenation along an axis";
  let arguments = (ins Variadic<Graph_FloatTensor>:$inputs, I64Attr:$axis);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$inputs attr-dict `:` type($inputs) `->` type($result)";
}

def Graph_SliceOp : Graph_Op<"slice", "Follow",
    [Pure, DeclareOpInterfaceMethods<InferTypeOpInterface>]> {
  let summary = "the sub-tensor [offset, offset + size) along an axis";
  let arguments = (ins Graph_FloatTensor:$input, I64Attr:$axis, I64Attr:$offset, I64Attr:$size);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
}

def Graph_ReshapeOp : Graph_Op<"reshape", "Follow", [Pure]> {
  let summary = "the same elements in a new shape";
  let arguments = (ins Graph_FloatTensor:$input);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `to` type($result)";
  let hasVerifier = 1;
}

def Graph_TransposeOp : Graph_Op<"transpose", "Follow",
    [Pure, DeclareOpInterfaceMethods<InferTypeOpInterface>]> {
  let summary = "permute the dimensions";
  let arguments = (ins Graph_FloatTensor:$input, DenseI64ArrayAttr:$perm);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
}

def Graph_BroadcastToOp : Graph_Op<"broadcast_to", "Follow", [Pure]> {
  let summary = "broadcast to a larger shape (numpy rules)";
  let arguments = (ins Graph_FloatTensor:$input);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `to` type($result)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Reductions and losses (always fp32).
//===----------------------------------------------------------------------===//

class Graph_ReduceOp<string mnemonic> : Graph_Op<mnemonic, "Fp32",
    [Pure, DeclareOpInterfaceMethods<InferTypeOpInterface>]> {
  let arguments = (ins Graph_FloatTensor:$input, DenseI64ArrayAttr:$axes,
                       DefaultValuedAttr<BoolAttr, "false">:$keepdim);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
}
def Graph_ReduceSumOp : Graph_ReduceOp<"reduce_sum"> { let summary = "sum over axes"; }
def Graph_ReduceMeanOp : Graph_ReduceOp<"reduce_mean"> { let summary = "mean over axes"; }

def Graph_SoftmaxCrossEntropyOp : Graph_Op<"softmax_cross_entropy", "Fp32",
    [Pure, DeclareOpInterfaceMethods<InferTypeOpInterface>]> {
  let summary = "mean softmax cross-entropy of [N, C] logits and [N] integer labels";
  let arguments = (ins Graph_FloatTensor:$logits, Graph_LabelTensor:$labels);
  let results = (outs Graph_ScalarF32:$loss);
  let assemblyFormat = "$logits `,` $labels attr-dict `:` type($logits) `,` type($labels) `->` type($loss)";
}

def Graph_SoftmaxCrossEntropyBackwardOp : Graph_Op<"softmax_cross_entropy_backward", "Fp32", [Pure]> {
  let summary = "gradient of the mean softmax cross-entropy: (softmax - onehot) dloss / N";
  let arguments = (ins Graph_FloatTensor:$logits, Graph_LabelTensor:$labels, Graph_ScalarF32:$grad);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$logits `,` $labels `,` $grad attr-dict `:` type($logits) `,` type($labels) `,` type($grad) `->` type($result)";
}

def Graph_MseOp : Graph_Op<"mse", "Fp32",
    [Pure, DeclareOpInterfaceMethods<InferTypeOpInterface>]> {
  let summary = "mean squared error";
  let arguments = (ins Graph_FloatTensor:$input, Graph_FloatTensor:$target);
  let results = (outs Graph_ScalarF32:$loss);
  let assemblyFormat = "$input `,` $target attr-dict `:` type($input) `,` type($target) `->` type($loss)";
}

def Graph_MseBackwardOp : Graph_Op<"mse_backward", "Fp32", [Pure]> {
  let summary = "gradient of the mean squared error with respect to its input: 2 (x - t) dloss / N";
  let arguments = (ins Graph_FloatTensor:$input, Graph_FloatTensor:$target, Graph_ScalarF32:$grad);
  let results = (outs Graph_FloatTensor:$result);
  let assemblyFormat = "$input `,` $target `,` $grad attr-dict `:` type($input) `,` type($target) `,` type($grad) `->` type($result)";
}

//===----------------------------------------------------------------------===//
// Optimizer updates and loss scaling (fp32, elementwise, skip-aware).
//===----------------------------------------------------------------------===//

def Graph_SgdUpdateOp : Graph_ElementwiseOp<"sgd_update", "Fixed", [{
    // in: param, grad, momentum_buffer, finite, step. PyTorch SGD: g += wd p;
    // b = step > 0 ? mu b + (1 - dampening) g : g; g = nesterov ? g + mu b : b;
    // p -= lr g. A step whose gradients were not finite changes nothing.
    int g = in[1];
    if (getWeightDecay().convertToDouble() != 0.0)
      g = p.emit(ScalarOp::Add, g, p.emit(ScalarOp::Mul, p.constant(getWeightDecay().convertToDouble()), in[0]));
    int buf = g;
    if (getMomentum().convertToDouble() != 0.0) {
      int mb = p.emit(ScalarOp::Add, p.emit(ScalarOp::Mul, p.constant(getMomentum().convertToDouble()), in[2]),
                      p.emit(ScalarOp::Mul, p.constant(1.0 - getDampening().convertToDouble()), g));
      buf = p.emit(ScalarOp::Select, p.emit(ScalarOp::CmpGt, in[4], p.constant(0.0)), mb, g);
      g = getNesterov() ? p.emit(ScalarOp::Add, g, p.emit(ScalarOp::Mul, p.constant(getMomentum().convertToDouble()), buf)) : buf;
    }
    int updated = p.emit(ScalarOp::Sub, in[0], p.emit(ScalarOp::Mul, p.constant(getLr().convertToDouble()), g));
    return {p.emit(ScalarOp::Select, in[3], updated, in[0]),
            p.emit(ScalarOp::Select, in[3], buf, in[2])};
  }], [AllTypesMatch<["param", "grad", "momentum_buffer", "new_param", "new_momentum_buffer"]>, AllTypesMatch<["finite", "step"]>]> {
  let summary = "one SGD step (momentum, dampening, Nesterov, weight decay) as torch.optim.SGD";
  let description = [{
    Operands: the fp32 master parameter, its gradient (already unscaled), the
    momentum buffer, the finite flag (0 skips the step) and the optimizer step
    count before this step. Results: the new parameter and momentum buffer.
  }];
  let arguments = (ins Graph_FloatTensor:$param, Graph_FloatTensor:$grad, Graph_FloatTensor:$momentum_buffer,
                       Graph_ScalarF32:$finite, Graph_ScalarF32:$step,
                       F64Attr:$lr, DefaultValuedAttr<F64Attr, "0.0">:$momentum,
                       DefaultValuedAttr<F64Attr, "0.0">:$dampening,
                       DefaultValuedAttr<F64Attr, "0.0">:$weight_decay,
                       DefaultValuedAttr<BoolAttr, "false">:$nesterov);
  let results = (outs Graph_FloatTensor:$new_param, Graph_FloatTensor:$new_momentum_buffer);
  let assemblyFormat = "operands attr-dict `:` type($param) `,` type($finite)";
  let hasVerifier = 1;
}

def Graph_AdamUpdateOp : Graph_ElementwiseOp<"adam_update", "Fixed", [{
    // in: param, grad, exp_avg, exp_avg_sq, finite, step (count before this step).
    // torch.optim.Adam / AdamW (decoupled weight decay), amsgrad off.
    int param = in[0], g = in[1];
    int t = p.emit(ScalarOp::Add, in[5], p.constant(1.0));
    if (getWeightDecay().convertToDouble() != 0.0) {
      if (getDecoupled())
        param = p.emit(ScalarOp::Mul, param, p.constant(1.0 - getLr().convertToDouble() * getWeightDecay().convertToDouble()));
      else
        g = p.emit(ScalarOp::Add, g, p.emit(ScalarOp::Mul, p.constant(getWeightDecay().convertToDouble()), in[0]));
    }
    int b1 = p.constant(getBeta1().convertToDouble()), b2 = p.constant(getBeta2().convertToDouble());
    int m = p.emit(ScalarOp::Add, p.emit(ScalarOp::Mul, b1, in[2]),
                   p.emit(ScalarOp::Mul, p.constant(1.0 - getBeta1().convertToDouble()), g));
    int v = p.emit(ScalarOp::Add, p.emit(ScalarOp::Mul, b2, in[3]),
                   p.emit(ScalarOp::Mul, p.constant(1.0 - getBeta2().convertToDouble()), p.emit(ScalarOp::Square, g)));
    int one = p.constant(1.0);
    int bc1 = p.emit(ScalarOp::Sub, one, p.emit(ScalarOp::Pow, b1, t));
    int bc2 = p.emit(ScalarOp::Sub, one, p.emit(ScalarOp::Pow, b2, t));
    int denom = p.emit(ScalarOp::Add,
                       p.emit(ScalarOp::Div, p.emit(ScalarOp::Sqrt, v), p.emit(ScalarOp::Sqrt, bc2)),
                       p.constant(getEps().convertToDouble()));
    int stepSize = p.emit(ScalarOp::Div, p.constant(getLr().convertToDouble()), bc1);
    int updated = p.emit(ScalarOp::Sub, param,
                         p.emit(ScalarOp::Mul, stepSize, p.emit(ScalarOp::Div, m, denom)));
    return {p.emit(ScalarOp::Select, in[4], updated, in[0]),
            p.emit(ScalarOp::Select, in[4], m, in[2]),
            p.emit(ScalarOp::Select, in[4], v, in[3])};
  }], [AllTypesMatch<["param", "grad", "exp_avg", "exp_avg_sq", "new_param", "new_exp_avg", "new_exp_avg_sq"]>, AllTypesMatch<["finite", "step"]>]> {
  let summary = "one Adam or AdamW step as torch.optim.Adam / AdamW";
  let description = [{
    Operands: the fp32 master parameter, its gradient (already unscaled),
    exp_avg, exp_avg_sq, the finite flag (0 skips the step) and the step count
    before this step. `decoupled` selects AdamW's weight decay.
  }];
  let arguments = (ins Graph_FloatTensor:$param, Graph_FloatTensor:$grad, Graph_FloatTensor:$exp_avg,
                       Graph_FloatTensor:$exp_avg_sq, Graph_ScalarF32:$finite, Graph_ScalarF32:$step,
                       F64Attr:$lr, DefaultValuedAttr<F64Attr, "0.9">:$beta1,
                       DefaultValuedAttr<F64Attr, "0.999">:$beta2,
                       DefaultValuedAttr<F64Attr, "1e-8">:$eps,
                       DefaultValuedAttr<F64Attr, "0.0">:$weight_decay,
                       DefaultValuedAttr<BoolAttr, "false">:$decoupled);
  let results = (outs Graph_FloatTensor:$new_param, Graph_FloatTensor:$new_exp_avg,
                      Graph_FloatTensor:$new_exp_avg_sq);
  let assemblyFormat = "operands attr-dict `:` type($param) `,` type($finite)";
  let hasVerifier = 1;
}

def Graph_AllFiniteOp : Graph_Op<"all_finite", "Fp32", [Pure, AttrSizedOperandSegments]> {
  let summary = "1 if every element of every operand (times `multiplier`) is finite, else 0";
  let description = [{
    With a `multiplier` (a scalar), the check is of every element times it,
    computed in fp32 as `graph.mul` would: loss scaling checks the unscaled
    gradients this way without storing them unscaled.

    ```mlir
    %ok = graph.all_finite %g1, %g2 : tensor<4x3xf16>, tensor<4xf32> -> tensor<f32>
    %ok2 = graph.all_finite %g1, %g2 times %inv : tensor<4x3xf16>, tensor<4xf32> times tensor<f32> -> tensor<f32>
    ```
  }];
  let arguments = (ins Variadic<Graph_FloatTensor>:$inputs, Optional<Graph_ScalarF32>:$multiplier);
  let results = (outs Graph_ScalarF32:$result);
  let assemblyFormat = "$inputs (`times` $multiplier^)? attr-dict `:` type($inputs) (`times` type($multiplier)^)? `->` type($result)";
}

def Graph_LossScaleUpdateOp : Graph_ElementwiseOp<"loss_scale_update", "Fixed", [{
    // in: scale, growth_tracker, finite. GradScaler.update: on a finite step the
    // tracker counts up and at `growth_interval` the scale grows and the tracker
    // resets; on inf/nan the scale backs off and the tracker resets.
    int zero = p.constant(0.0);
    int tracker = p.emit(ScalarOp::Add, in[1], p.constant(1.0));
    int grow = p.emit(ScalarOp::CmpGe, tracker, p.constant(double(getGrowthInterval())));
    int finiteScale = p.emit(ScalarOp::Select, grow,
                             p.emit(ScalarOp::Mul, in[0], p.constant(getGrowthFactor().convertToDouble())), in[0]);
    int finiteTracker = p.emit(ScalarOp::Select, grow, zero, tracker);
    return {p.emit(ScalarOp::Select, in[2], finiteScale,
                   p.emit(ScalarOp::Mul, in[0], p.constant(getBackoffFactor().convertToDouble()))),
            p.emit(ScalarOp::Select, in[2], finiteTracker, zero)};
  }], [AllTypesMatch<["scale", "growth_tracker", "finite", "new_scale", "new_growth_tracker"]>]> {
  let summary = "dynamic loss-scale update, as torch.amp.GradScaler.update";
  let arguments = (ins Graph_ScalarF32:$scale, Graph_ScalarF32:$growth_tracker, Graph_ScalarF32:$finite,
                       DefaultValuedAttr<F64Attr, "2.0">:$growth_factor,
                       DefaultValuedAttr<F64Attr, "0.5">:$backoff_factor,
                       DefaultValuedAttr<I64Attr, "2000">:$growth_interval);
  let results = (outs Graph_ScalarF32:$new_scale, Graph_ScalarF32:$new_growth_tracker);
  let assemblyFormat = "operands attr-dict `:` type($scale)";
}

//===----------------------------------------------------------------------===//
// Fused elementwise kernels (made by fuse-elementwise).
//===----------------------------------------------------------------------===//

def Graph_FusedOp : Graph_ElementwiseOp<"fused", "Fixed", [{
    return ::mantissa::graph::buildFusedScalarProgram(*this, p, in);
  }], [IsolatedFromAbove]> {
  let summary = "elementwise graph ops computed as one kernel, one pass over the iteration shape";
  let description = [{
    The body's block arguments are the operands; its ops are elementwise graph
    ops over the arguments and each other, in order, ending in a `graph.yield` of
    the values the rest of the function reads. Every result and every op inside
    has the iteration shape; operands broadcast to it (numpy rules). The
    per-element program is the programs of the ops inside, in order; a value
    inside whose element type is f16 or bf16 is rounded to it where another op
    inside reads it, exactly where the unfused ops would have stored it, so the
    fused kernel computes bit for bit what the ops did one by one.

    ```mlir
    %r = graph.fused(%h, %b) {graph.name = "fc1+relu"} : (tensor<64x128xf32>, tensor<128xf32>) -> tensor<64x128xf32> {
    ^bb0(%x: tensor<64x128xf32>, %bias: tensor<128xf32>):
      %0 = graph.add %x, %bias : tensor<64x128xf32>, tensor<128xf32> -> tensor<64x128xf32>
      %1 = graph.relu %0 : tensor<64x128xf32>
      graph.yield %1 : tensor<64x128xf32>
    }
    ```
  }];
  let arguments = (ins Variadic<Graph_AnyTensor>:$inputs);
  let results = (outs Variadic<Graph_FloatTensor>:$results);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "`(` $inputs `)` attr-dict `:` functional-type($inputs, $results) $body";
  let hasVerifier = 1;
}

def Graph_YieldOp : Graph_Op<"yield", "Fixed", [Pure, Terminator, HasParent<"FusedOp">]> {
  let summary = "the values a graph.fused body gives back, one per result";
  let arguments = (ins Variadic<Graph_AnyTensor>:$values);
  let assemblyFormat = "$values attr-dict `:` type($values)";
}

#endif // MANTISSA_GRAPH_OPS
