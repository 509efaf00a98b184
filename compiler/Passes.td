//===- Passes.td - the Mantissa compiler passes ------------*- tablegen -*-===//
//
// The pipeline (mantissa compile runs them in this order):
//   [set-batch ->] assign-precision -> autodiff -> lower-optimizer -> insert-loss-scaling
//   [-> fuse-elementwise] -> emit-plan
// Precision is assigned on the forward graph first and autodiff then follows
// PyTorch's semantics: every backward op computes in the precision of the forward
// op it differentiates, and the gradient of a cast is a cast back. That keeps the
// backward pass exactly what autocast + GradScaler would run.
//===----------------------------------------------------------------------===//
#ifndef MANTISSA_COMPILER_PASSES
#define MANTISSA_COMPILER_PASSES

include "mlir/Pass/PassBase.td"

def SetBatch : Pass<"set-batch", "mlir::ModuleOp"> {
  let summary = "Change the batch size: re-type dimension 0 of every graph.input and re-infer downstream";
  let description = [{
    The zoo's models are written for one batch size; this pass retargets them,
    so that `mantissa compile --batch 128` works on any of them. Every
    `graph.input` must have the same dimension 0 (the batch). Its results are
    re-typed with dimension 0 = `batch`, and the types of every op downstream are
    re-inferred: ops with inferred result types (InferTypeOpInterface) by their
    own inference, and ops with explicit result types (reshape, cast,
    broadcast_to, the gradient ops) by replacing a dimension 0 that equalled the
    old batch. Function result types follow. Runs before autodiff (or after:
    all functions are re-typed).

    Before (`--set-batch=batch=128`):
    ```mlir
    %x = graph.input "x" : tensor<64x64xf32>
    %h = graph.linear %x, %w : tensor<64x64xf32>, tensor<128x64xf32> -> tensor<64x128xf32>
    %f = graph.reshape %h : tensor<64x128xf32> to tensor<64x8x16xf32>
    ```
    After:
    ```mlir
    %x = graph.input "x" : tensor<128x64xf32>
    %h = graph.linear %x, %w : tensor<128x64xf32>, tensor<128x64xf32> -> tensor<128x128xf32>
    %f = graph.reshape %h : tensor<128x128xf32> to tensor<128x8x16xf32>
    ```
  }];
  let options = [
    Option<"batch", "batch", "int64_t", "0", "the new batch size (must be positive)">,
  ];
  let dependentDialects = ["mantissa::graph::GraphDialect", "mlir::func::FuncDialect"];
}

def AssignPrecision : Pass<"assign-precision", "mlir::ModuleOp"> {
  let summary = "Give every op of @forward a precision, inserting casts (autocast semantics)";
  let description = [{
    Reads each op's precision category (GraphOps.td): `Lower` ops (linear,
    matmul, conv) take their operands in the policy's low precision and
    accumulate in fp32; `Fp32` ops (losses, exp/log, reductions) take fp32;
    `Follow` ops take the widest of their inputs. Parameters stay fp32 master
    copies; a cast to the low precision is inserted where they are used, once per
    value and type (casts are de-duplicated). An op's `graph.precision` attribute
    ("fp32", "fp16", "bf16") overrides its category; a policy file overrides by
    op name (the `graph.name` attribute) and names that match no op are an error.

    Policy file (compiler/PrecisionPolicy.h): `{"default": "fp32", "kinds":
    {"batch_norm": "fp32"}, "groups": {"conv2": "bf16"}, "ops": {"fc3": "fp32"},
    "loss_scaling": "dynamic"}`. A kind (a graph op name without `graph.`) sets
    every op of that kind; a group (named by its anchor: a matmul, linear or
    convolution) sets the anchor and the group's `Follow` members. The most
    specific entry wins: ops > groups > kinds > default. An unknown kind is an
    error that lists the valid ones.

    Before (`--assign-precision=policy=fp16`):
    ```mlir
    %w = graph.param "fc1.weight" {...} : tensor<128x64xf32>
    %h = graph.linear %x, %w : tensor<64x64xf32>, tensor<128x64xf32> -> tensor<64x128xf32>
    %r = graph.relu %h : tensor<64x128xf32>
    ```
    After:
    ```mlir
    %0 = graph.cast %x : tensor<64x64xf32> to tensor<64x64xf16>
    %1 = graph.cast %w : tensor<128x64xf32> to tensor<128x64xf16>
    %h = graph.linear %0, %1 : tensor<64x64xf16>, tensor<128x64xf16> -> tensor<64x128xf16>
    %r = graph.relu %h : tensor<64x128xf16>
    ```
  }];
  let options = [
    Option<"policy", "policy", "std::string", /*default=*/"\"fp32\"",
           "fp32, fp16, bf16, or the path of a JSON policy file">,
  ];
  let dependentDialects = ["mantissa::graph::GraphDialect"];
}

def Autodiff : Pass<"autodiff", "mlir::ModuleOp"> {
  let summary = "Derive @train_step (loss and the gradient of every parameter) from @forward by reverse mode";
  let description = [{
    Clones @forward into @train_step and appends the backward pass: the
    adjoint of the loss (the first result of @forward) is seeded with a
    `graph.constant 1.0 {graph.loss_seed}`, every op's gradient rule is applied in
    reverse order, adjoints of values used several times are summed, and
    broadcast operands get their gradients summed back to their shape. The
    gradient of each parameter is returned with a `graph.grad_of` result
    attribute naming it. Batch-norm running statistics keep their `graph.assign`.

    Before:
    ```mlir
    func.func @forward() -> (tensor<f32>, tensor<8x4xf32>) {
      %x = graph.input "x" : tensor<8x3xf32>
      %y = graph.input "y" : tensor<8xi32>
      %w = graph.param "fc.weight" {...} : tensor<4x3xf32>
      %z = graph.linear %x, %w : ... -> tensor<8x4xf32>
      %l = graph.softmax_cross_entropy %z, %y : ... -> tensor<f32>
      return %l, %z : tensor<f32>, tensor<8x4xf32>
    }
    ```
    After (added):
    ```mlir
    func.func @train_step() -> (tensor<f32>, tensor<4x3xf32> {graph.grad_of = "fc.weight"}) {
      ... forward ...
      %seed = graph.constant 1.0 {graph.loss_seed} : tensor<f32>
      %dz = graph.softmax_cross_entropy_backward %z, %y, %seed : ... -> tensor<8x4xf32>
      %dw = graph.matmul %dz, %x {transpose_a = true} : ... -> tensor<4x3xf32>
      return %l, %dw : tensor<f32>, tensor<4x3xf32>
    }
    ```
  }];
  let dependentDialects = ["mantissa::graph::GraphDialect", "mlir::func::FuncDialect"];
}

def LowerOptimizer : Pass<"lower-optimizer", "mlir::ModuleOp"> {
  let summary = "Turn the gradients @train_step returns into optimizer updates of the parameters";
  let description = [{
    For every result of @train_step marked `graph.grad_of`, adds the optimizer's
    state as `graph.buffer`s (kind "optimizer"; PyTorch's state names:
    `momentum_buffer`, `exp_avg`, `exp_avg_sq`, and one shared `step`), a
    `graph.sgd_update` or `graph.adam_update` (PyTorch's update rules and
    defaults), and `graph.assign`s of the new values; @train_step then returns
    the loss only. The updates take a finite flag (`graph.constant 1.0
    {graph.finite_flag}` here; insert-loss-scaling replaces it).

    Before:
    ```mlir
    return %l, %dw : tensor<f32>, tensor<4x3xf32>   // %dw {graph.grad_of = "fc.weight"}
    ```
    After (`--lower-optimizer=optimizer=sgd lr=0.1 momentum=0.9`):
    ```mlir
    %buf = graph.buffer "fc.weight.momentum_buffer" {init = "zeros", kind = "optimizer"} : tensor<4x3xf32>
    %step = graph.buffer "optimizer.step" {init = "zeros", kind = "optimizer"} : tensor<f32>
    %ok = graph.constant 1.0 {graph.finite_flag} : tensor<f32>
    %p2, %b2 = graph.sgd_update %w, %dw, %buf, %ok, %step {lr = 0.1, momentum = 0.9} : tensor<4x3xf32>
    graph.assign "fc.weight", %p2 : tensor<4x3xf32>
    graph.assign "fc.weight.momentum_buffer", %b2 : tensor<4x3xf32>
    return %l : tensor<f32>
    ```
  }];
  let options = [
    Option<"optimizer", "optimizer", "std::string", "\"sgd\"", "sgd, adam or adamw">,
    Option<"lr", "lr", "double", "0.01", "learning rate">,
    Option<"momentum", "momentum", "double", "0.0", "SGD momentum">,
    Option<"dampening", "dampening", "double", "0.0", "SGD dampening">,
    Option<"nesterov", "nesterov", "bool", "false", "SGD Nesterov momentum">,
    Option<"weightDecay", "weight-decay", "double", "-1.0",
           "weight decay (default: 0 for sgd/adam, 0.01 for adamw, as PyTorch)">,
    Option<"beta1", "beta1", "double", "0.9", "Adam beta1">,
    Option<"beta2", "beta2", "double", "0.999", "Adam beta2">,
    Option<"eps", "eps", "double", "1e-8", "Adam epsilon">,
  ];
  let dependentDialects = ["mantissa::graph::GraphDialect", "mlir::func::FuncDialect"];
}

def InsertLossScaling : Pass<"insert-loss-scaling", "mlir::ModuleOp"> {
  let summary = "Scale the loss, unscale the gradients, skip non-finite steps and adapt the scale (GradScaler)";
  let description = [{
    Runs on @train_step after lower-optimizer. Multiplies the loss seed by the
    scale S (a `graph.buffer "scaler.scale"`; scaling the seed of the backward
    pass is scaling the loss), multiplies every gradient by 1/S before its
    update, replaces the updates' finite flag by one `graph.all_finite` over all
    gradients times 1/S, and, in dynamic mode, adds a `graph.loss_scale_update`
    (×growth-factor after growth-interval finite steps, ×backoff-factor on
    inf/nan). The skip is decided inside the step: a non-finite step leaves the
    parameters and optimizer state unchanged. The optimizer step count only
    advances on finite steps. `mode=none` leaves the step as it is.

    The check multiplies by 1/S inside (`times`, in fp32, as the `graph.mul`
    does), reading each gradient as it is stored, before a widening cast from
    fp16 or bf16 (exact): the unscaled gradients are read by their updates only,
    so fuse-elementwise puts each unscale into its update's kernel and no
    unscaled fp32 copy of the gradients is stored (PyTorch's GradScaler stores
    them: `_amp_foreach_non_finite_check_and_unscale_` unscales in place).

    Before:
    ```mlir
    %seed = graph.constant 1.0 {graph.loss_seed} : tensor<f32>
    ...
    %ok = graph.constant 1.0 {graph.finite_flag} : tensor<f32>
    %p2, %b2 = graph.sgd_update %w, %dw, %buf, %ok, %step {...} : tensor<4x3xf32>
    ```
    After (`mode=dynamic`):
    ```mlir
    %s = graph.buffer "scaler.scale" {init = "value", value = 65536.0, kind = "scaler"} : tensor<f32>
    %seed = graph.mul %one, %s : ...
    ...
    %inv = graph.div %one, %s : ...
    %dwu = graph.mul %dw, %inv : ...
    %ok = graph.all_finite %dw times %inv : tensor<4x3xf32> times tensor<f32> -> tensor<f32>
    %p2, %b2 = graph.sgd_update %w, %dwu, %buf, %ok, %step {...} : tensor<4x3xf32>
    %s2, %t2 = graph.loss_scale_update %s, %t, %ok {growth_interval = 2000} : tensor<f32>
    graph.assign "scaler.scale", %s2 : tensor<f32>
    ```
  }];
  let options = [
    Option<"mode", "mode", "std::string", "\"dynamic\"", "dynamic, static or none">,
    Option<"initScale", "scale", "double", "65536.0", "initial (dynamic) or fixed (static) scale">,
    Option<"growthFactor", "growth-factor", "double", "2.0", "dynamic: growth factor">,
    Option<"backoffFactor", "backoff-factor", "double", "0.5", "dynamic: back-off factor">,
    Option<"growthInterval", "growth-interval", "int64_t", "2000",
           "dynamic: consecutive finite steps before the scale grows">,
  ];
  let dependentDialects = ["mantissa::graph::GraphDialect", "mlir::func::FuncDialect"];
}

def RematConcat : Pass<"remat-concat", "mlir::ModuleOp"> {
  let summary = "Backward uses of a concatenation's input read it back out of the concatenation";
  let description = [{
    A U-Net concatenates each skip connection with the upsampled path, and the
    backward pass reads the skip again (the relu's gradient, max pooling's
    gradient): without this pass the skip is kept twice, on its own and inside
    the concatenation. Here every use of a concatenation's input that comes after
    the concatenation reads a `graph.slice` of it instead, taken just before the
    first such use, so the input itself dies at the concatenation. The slice is an
    exact copy (values are unchanged); it moves the input's bytes once more, in
    exchange for keeping them once. torch.compile's partitioner makes the same kind
    of trade (recompute or re-read cheap values instead of saving them). Inputs,
    parameters, working copies, buffers and constants are left alone (they are not
    temporaries).

    Before (the skip %r is read again by the backward's relu_grad):
    ```mlir
    %c = graph.concat %u, %r {axis = 1 : i64} : tensor<2x4x6x6xf32>, tensor<2x4x6x6xf32> -> tensor<2x8x6x6xf32>
    ...
    %d = graph.relu_grad %r, %g : tensor<2x4x6x6xf32>
    ```
    After:
    ```mlir
    %c = graph.concat %u, %r {axis = 1 : i64} : ...
    ...
    %s = graph.slice %c {axis = 1 : i64, offset = 4 : i64, size = 4 : i64} : tensor<2x8x6x6xf32> -> tensor<2x4x6x6xf32>
    %d = graph.relu_grad %s, %g : tensor<2x4x6x6xf32>
    ```
  }];
  let dependentDialects = ["mantissa::graph::GraphDialect", "mlir::func::FuncDialect"];
}

def PersistWorkingCopies : Pass<"persist-working-copies", "mlir::ModuleOp"> {
  let summary = "Keep each parameter's low-precision working copy between steps; the update writes it";
  let description = [{
    After assign-precision, every step casts each fp32 master weight to the
    precision of the ops that read it (the working copy) before the forward
    pass. Here such a cast becomes a `graph.working_copy`, a persistent tensor
    of its own, and the step that updates the master writes it too: a
    `graph.cast` of the new master and a `graph.assign` of the working copy,
    right after the master's assign, which fuse-elementwise joins to the
    optimizer update's kernel. A step then reads 2 bytes per weight (the copy)
    where it read 4 (the master), and writes 2 in the update where it wrote 2
    in the cast; the update reads the master anyway. This is the multi-tensor
    update of Apex's FusedAdam/FusedSGD with an fp16 model copy. A skipped step
    (loss scaling found a non-finite gradient) keeps the master, so the cast
    of it is the old copy: the values are those of casting every step, bit for
    bit. `@forward` (eval_step) reads the same copies.

    A cast is left as it is where the parameter is not assigned in
    `@train_step` (frozen), or where a reader of the cast comes after the
    assign (the copy would already be the new value).

    Before (`@train_step`):
    ```mlir
    %w = graph.param "fc1.weight" {...} : tensor<128x64xf32>
    %c = graph.cast %w : tensor<128x64xf32> to tensor<128x64xf16>
    ...
    %new, %mom = graph.sgd_update %w, %g, %m, %ok, %step {...} : tensor<128x64xf32>, tensor<f32>
    graph.assign "fc1.weight", %new : tensor<128x64xf32>
    ```
    After:
    ```mlir
    %w = graph.param "fc1.weight" {...} : tensor<128x64xf32>
    %c = graph.working_copy "fc1.weight:f16" of "fc1.weight" : tensor<128x64xf16>
    ...
    %new, %mom = graph.sgd_update %w, %g, %m, %ok, %step {...} : tensor<128x64xf32>, tensor<f32>
    graph.assign "fc1.weight", %new : tensor<128x64xf32>
    %n = graph.cast %new : tensor<128x64xf32> to tensor<128x64xf16>
    graph.assign "fc1.weight:f16", %n : tensor<128x64xf16>
    ```
  }];
  let dependentDialects = ["mantissa::graph::GraphDialect", "mlir::func::FuncDialect"];
}

def FuseElementwise : Pass<"fuse-elementwise", "mlir::ModuleOp"> {
  let summary = "Fuse chains of elementwise ops (casts, activations, gradients, optimizer updates) into graph.fused kernels";
  let description = [{
    In every function, in program order, each op that implements ElementwiseOp
    (arithmetic, activations and their gradients, casts, the optimizer updates,
    the loss-scale update) absorbs the elementwise ops that produce its
    operands, greedily, into one `graph.fused`, which emit-plan lowers to ONE
    Elementwise step: the chain's intermediate values stay in registers. A
    producer joins when it iterates over the same shape as the consumer; one of
    a smaller shape that the consumer broadcasts (a bias, a scalar such as
    1/scale) stays a stored input, since fused it would be recomputed once per
    element of the larger shape. A producer result that is also read outside
    the group becomes another result of the fused op. Non-elementwise ops
    (matmul, linear, conv, pooling, batch norm, reductions, losses,
    all_finite) are boundaries: they stay as they are. The fused op goes where
    its last member was (or just before the first outside reader of a member's
    result, when the other operands allow it); a fusion that would break the
    order (e.g. a bias gradient's rounding to fp16, whose result graph.all_finite
    checks before the update reads the flag) is not made. Its `graph.name` joins the
    members' names (or mnemonics) with `+`.

    First, a `graph.linear`'s bias, and a relu that alone reads its result,
    move into the GEMM as its epilogue (`gemm-epilogue`): the linear gets
    `graph.epilogue = "bias"` or `"bias_relu"`, emit-plan writes one Gemm step
    with `bias` and `relu`, and the GPU runs it as cuBLASLt's BIAS or RELU_BIAS
    epilogue (GEMM + bias + relu: 3 kernels become 1). The bias is added to the
    fp32 product and the result rounded once, as PyTorch's addmm does on CUDA;
    the unfused plan rounds the product before the bias add, so in fp16 and
    bf16 (not fp32) this one fold changes the last bits. Only where x, w, b and
    the result share one element type; not for GELU (ours is the exact erf
    GELU; cuBLASLt documents no formula for its GELU epilogue).
    `gemm-epilogue=false` (`mantissa compile --no-gemm-epilogue`) keeps the bits
    of the unfused plan: then the bias of a linear whose result an elementwise
    op reads is split off (`split-bias`) into a `graph.add` after a bias-free
    linear: it is the ".bias_add" step emit-plan would add after the GEMM
    anyway, and now it joins the activation's kernel (3 kernels become 2). The
    bias of a convolution stays on the op (emit-plan lowers it to a bias add
    step, or, where only batch norms read the convolution's result, folds it
    into them: `fold-conv-bias`).

    Inside, a value of element type f16 or bf16 that another member reads is
    rounded to that type (RoundF16/RoundBF16) where the unfused op stored it,
    so the fused plan computes the same bits as the unfused one.

    Before:
    ```mlir
    %h = graph.add %x, %b : tensor<64x128xf32>, tensor<128xf32> -> tensor<64x128xf32>
    %r = graph.relu %h : tensor<64x128xf32>
    %y = graph.cast %r : tensor<64x128xf32> to tensor<64x128xf16>
    ... = graph.relu_grad %h, %g : tensor<64x128xf32>
    ```
    After (`%b` [128] is a broadcast input; `%h` is also read outside):
    ```mlir
    %f:2 = graph.fused(%x, %b) {graph.name = "add+relu+cast"}
        : (tensor<64x128xf32>, tensor<128xf32>) -> (tensor<64x128xf32>, tensor<64x128xf16>) {
    ^bb0(%a0: tensor<64x128xf32>, %a1: tensor<128xf32>):
      %0 = graph.add %a0, %a1 : tensor<64x128xf32>, tensor<128xf32> -> tensor<64x128xf32>
      %1 = graph.relu %0 : tensor<64x128xf32>
      %2 = graph.cast %1 : tensor<64x128xf32> to tensor<64x128xf16>
      graph.yield %0, %2 : tensor<64x128xf32>, tensor<64x128xf16>
    }
    ... = graph.relu_grad %f#0, %g : tensor<64x128xf32>
    ```
  }];
  let options = [
    Option<"gemmEpilogue", "gemm-epilogue", "bool", "true",
           "a linear's bias and the relu that alone reads its result become the GEMM's "
           "epilogue (graph.epilogue; one rounding, as cuBLASLt and PyTorch's addmm)">,
    Option<"splitBias", "split-bias", "bool", "true",
           "split the bias of a graph.linear into a graph.add that can fuse with its consumer">,
  ];
  let dependentDialects = ["mantissa::graph::GraphDialect", "mlir::func::FuncDialect"];
}

def EmitPlan : Pass<"emit-plan", "mlir::ModuleOp"> {
  let summary = "Write the ahead-of-time plan (FlatBuffers) of @train_step and @forward";
  let description = [{
    Lowers every graph op of @train_step and of @forward (as `eval_step`:
    batch normalisation with running statistics, no assigns) to plan steps:
    library calls (GEMM, convolution) and elementwise kernels carrying the
    per-element program the op declares; allocates a tensor per value; stores the
    initial value of every parameter (seeded PyTorch-default initialisation) and
    buffer; and records the model, precision, loss-scaling and optimizer
    configuration. Steps follow the program order, except that the casts of
    parameters (the low-precision working copies of the fp32 weights, where
    persist-working-copies left any) come first, side by side, where one
    multi-tensor launch takes them. The IR is left unchanged.

    A linear that fuse-elementwise gave an epilogue (`graph.epilogue`) is one
    Gemm step with `bias` (and `relu`); another linear's bias is a bias add step
    after its GEMM. A convolution's bias is a bias add step after it, in place of its result,
    except where every reader of the result is a batch norm (forward or
    backward) reading it as its input: then the result is stored without the
    bias and the batch norms read `x + bias[c]`, rounded to x's type as the bias
    add would store it (`BatchNorm.input_bias`), so the numbers are the same
    and one read and one write of the activation per convolution go away (a
    U-Net's conv -> batch norm blocks). `fold-conv-bias=false` (`mantissa
    compile --no-fuse`) keeps the step.

    ```
    mantissa-opt model.mlir --assign-precision --autodiff --lower-optimizer \
        --insert-loss-scaling --emit-plan=output=model.plan
    ```
  }];
  let options = [
    Option<"output", "output", "std::string", "\"-\"", "the plan file to write">,
    Option<"seed", "seed", "uint64_t", "0", "seed of parameter initialisation">,
    Option<"batch", "batch", "int64_t", "0", "expected batch size (0: from the IR)">,
    Option<"policy", "policy", "std::string", "\"\"",
           "the precision policy to record (fp32, fp16, bf16 or a policy file; "
           "empty: read from the IR's element types)">,
    Option<"tf32", "tf32", "bool", "false", "record that fp32 GEMMs may use TF32">,
    Option<"source", "source", "std::string", "\"\"",
           "the source file to record (empty: the module's location)">,
    Option<"foldConvBias", "fold-conv-bias", "bool", "true",
           "a convolution's bias add moves into the batch norms that read its result "
           "(BatchNorm.input_bias), so the activation is not read and written once more">,
  ];
  let dependentDialects = ["mantissa::graph::GraphDialect", "mlir::func::FuncDialect"];
}

#endif // MANTISSA_COMPILER_PASSES
