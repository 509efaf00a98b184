//===- GraphOps.cpp - verifiers and shape inference of graph ops ----------===//
//
// Every op's result type follows from its operands and attributes; a mismatch is
// reported at the op's location (file:line:col) with the shapes involved.
//===----------------------------------------------------------------------===//
#include "mantissa/Graph/GraphOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/ScopedPrinter.h"

using namespace mlir;
using namespace mantissa;
using namespace mantissa::graph;

#include "mantissa/Graph/GraphInterfaces.cpp.inc"

FailureOr<SmallVector<int64_t>> mantissa::graph::broadcastShapes(ArrayRef<int64_t> a,
                                                                ArrayRef<int64_t> b) {
  size_t rank = std::max(a.size(), b.size());
  SmallVector<int64_t> out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1)
      return failure();
    out[i] = da == 1 ? db : da;
  }
  return out;
}

static unsigned floatRank(Type t) {
  if (t.isF64())
    return 3;
  if (t.isF32())
    return 2;
  return 1; // f16, bf16
}

Type mantissa::graph::promoteFloatTypes(Type a, Type b) {
  if (a == b)
    return a;
  if (floatRank(a) == floatRank(b)) // f16 with bf16: neither holds the other
    return Float32Type::get(a.getContext());
  return floatRank(a) > floatRank(b) ? a : b;
}

static std::string shapeStr(ArrayRef<int64_t> shape) {
  std::string s = "[";
  for (auto [i, d] : llvm::enumerate(shape))
    s += (i ? "x" : "") + std::to_string(d);
  return s + "]";
}

static RankedTensorType tensorOf(ArrayRef<int64_t> shape, Type element) {
  return RankedTensorType::get(shape, element);
}

static RankedTensorType rankedType(Value v) { return cast<RankedTensorType>(v.getType()); }

static LogicalResult emitInferError(std::optional<Location> loc, const Twine &message) {
  if (loc)
    return emitError(*loc, message);
  return failure();
}

//===----------------------------------------------------------------------===//
// Leaves
//===----------------------------------------------------------------------===//

LogicalResult ParamOp::verify() {
  StringRef init = getInit();
  if (init != "uniform" && init != "zeros" && init != "ones")
    return emitOpError("init must be \"uniform\", \"zeros\" or \"ones\", got \"") << init << "\"";
  if (init == "uniform" && (!getBound() || getBound()->convertToDouble() <= 0.0))
    return emitOpError("init \"uniform\" needs a positive `bound` attribute");
  if (!getResult().getType().getElementType().isF32())
    return emitOpError("parameters are fp32 master copies; got ") << getResult().getType();
  if (getName().empty())
    return emitOpError("needs a non-empty name");
  return success();
}

LogicalResult WorkingCopyOp::verify() {
  Type element = getResult().getType().getElementType();
  if (!element.isF16() && !element.isBF16())
    return emitOpError("a working copy is f16 or bf16; got ") << getResult().getType();
  if (getName().empty() || getParam().empty())
    return emitOpError("needs a non-empty name and param");
  if (getName() == getParam())
    return emitOpError("needs a name of its own, not its parameter's (\"") << getParam() << "\")";
  return success();
}

LogicalResult BufferOp::verify() {
  StringRef init = getInit();
  if (init != "zeros" && init != "ones" && init != "value")
    return emitOpError("init must be \"zeros\", \"ones\" or \"value\", got \"") << init << "\"";
  if (init == "value" && !getValue())
    return emitOpError("init \"value\" needs a `value` attribute");
  StringRef kind = getKind();
  if (kind != "model" && kind != "optimizer" && kind != "scaler")
    return emitOpError("kind must be \"model\", \"optimizer\" or \"scaler\", got \"") << kind << "\"";
  return success();
}

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

static LogicalResult inferBinary(std::optional<Location> loc, ValueRange operands,
                                 SmallVectorImpl<Type> &inferred) {
  auto a = rankedType(operands[0]), b = rankedType(operands[1]);
  auto shape = broadcastShapes(a.getShape(), b.getShape());
  if (failed(shape))
    return emitInferError(loc, "operand shapes " + shapeStr(a.getShape()) + " and " +
                                   shapeStr(b.getShape()) + " do not broadcast");
  inferred.push_back(
      tensorOf(*shape, promoteFloatTypes(a.getElementType(), b.getElementType())));
  return success();
}

#define GRAPH_BINARY_INFER(OpClass)                                                            \
  LogicalResult OpClass::inferReturnTypes(MLIRContext *, std::optional<Location> loc,          \
                                          ValueRange operands, DictionaryAttr, OpaqueProperties, \
                                          RegionRange, SmallVectorImpl<Type> &inferred) {      \
    return inferBinary(loc, operands, inferred);                                               \
  }
GRAPH_BINARY_INFER(AddOp)
GRAPH_BINARY_INFER(SubOp)
GRAPH_BINARY_INFER(MulOp)
GRAPH_BINARY_INFER(DivOp)
#undef GRAPH_BINARY_INFER

LogicalResult CastOp::verify() {
  if (getInput().getType().getShape() != getResult().getType().getShape())
    return emitOpError("cannot change the shape: ")
           << getInput().getType() << " to " << getResult().getType();
  return success();
}

OpFoldResult CastOp::fold(FoldAdaptor) {
  if (getInput().getType() == getResult().getType())
    return getInput();
  // cast(cast(x)) to x's own type where the middle type is wider loses nothing.
  if (auto inner = getInput().getDefiningOp<CastOp>()) {
    Type src = inner.getInput().getType().getElementType();
    Type mid = getInput().getType().getElementType();
    if (inner.getInput().getType() == getResult().getType() &&
        promoteFloatTypes(src, mid) == mid && floatRank(mid) > floatRank(src))
      return inner.getInput();
  }
  return {};
}

//===----------------------------------------------------------------------===//
// Linear algebra and convolutions
//===----------------------------------------------------------------------===//

static LogicalResult requireSameElement(std::optional<Location> loc, StringRef op, Value a,
                                        Value b) {
  if (rankedType(a).getElementType() != rankedType(b).getElementType())
    return emitInferError(loc, Twine("'graph.") + op + "' operands must have one element type (insert a graph.cast); got " +
                                   llvm::to_string(rankedType(a).getElementType()) + " and " +
                                   llvm::to_string(rankedType(b).getElementType()));
  return success();
}

LogicalResult MatmulOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                         ValueRange operands, DictionaryAttr attrs,
                                         OpaqueProperties props, RegionRange,
                                         SmallVectorImpl<Type> &inferred) {
  MatmulOp::Adaptor adaptor(operands, attrs, props);
  auto a = rankedType(adaptor.getA()), b = rankedType(adaptor.getB());
  if (a.getRank() != 2 || b.getRank() != 2)
    return emitInferError(loc, "'graph.matmul' needs 2-D operands, got " +
                                   shapeStr(a.getShape()) + " and " + shapeStr(b.getShape()));
  if (failed(requireSameElement(loc, "matmul", adaptor.getA(), adaptor.getB())))
    return failure();
  int64_t m = a.getDimSize(adaptor.getTransposeA() ? 1 : 0);
  int64_t ka = a.getDimSize(adaptor.getTransposeA() ? 0 : 1);
  int64_t kb = b.getDimSize(adaptor.getTransposeB() ? 1 : 0);
  int64_t n = b.getDimSize(adaptor.getTransposeB() ? 0 : 1);
  if (ka != kb)
    return emitInferError(loc, "'graph.matmul' inner dimensions differ: " +
                                   shapeStr(a.getShape()) + " and " + shapeStr(b.getShape()) +
                                   " (transpose_a=" + std::to_string(adaptor.getTransposeA()) +
                                   ", transpose_b=" + std::to_string(adaptor.getTransposeB()) + ")");
  inferred.push_back(tensorOf({m, n}, a.getElementType()));
  return success();
}

LogicalResult LinearOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                         ValueRange operands, DictionaryAttr attrs,
                                         OpaqueProperties props, RegionRange regions,
                                         SmallVectorImpl<Type> &inferred) {
  LinearOp::Adaptor adaptor(operands, attrs, props, regions);
  auto x = rankedType(adaptor.getInput()), w = rankedType(adaptor.getWeight());
  if (x.getRank() != 2 || w.getRank() != 2)
    return emitInferError(loc, "'graph.linear' needs a 2-D input and a 2-D [out, in] weight, got " +
                                   shapeStr(x.getShape()) + " and " + shapeStr(w.getShape()));
  if (x.getDimSize(1) != w.getDimSize(1))
    return emitInferError(loc, "'graph.linear' input has " + std::to_string(x.getDimSize(1)) +
                                   " features but the weight " + shapeStr(w.getShape()) +
                                   " expects " + std::to_string(w.getDimSize(1)));
  if (failed(requireSameElement(loc, "linear", adaptor.getInput(), adaptor.getWeight())))
    return failure();
  if (Value bias = adaptor.getBias()) {
    auto b = rankedType(bias);
    if (b.getRank() != 1 || b.getDimSize(0) != w.getDimSize(0))
      return emitInferError(loc, "'graph.linear' bias must be [" + std::to_string(w.getDimSize(0)) +
                                     "], got " + shapeStr(b.getShape()));
  }
  inferred.push_back(tensorOf({x.getDimSize(0), w.getDimSize(0)}, x.getElementType()));
  return success();
}

static int64_t convOut(int64_t in, int64_t k, int64_t stride, int64_t pad) {
  return (in + 2 * pad - k) / stride + 1;
}

static LogicalResult checkPair(std::optional<Location> loc, StringRef op, StringRef what,
                               ArrayRef<int64_t> v, int64_t minimum) {
  if (v.size() != 2 || v[0] < minimum || v[1] < minimum)
    return emitInferError(loc, Twine("'graph.") + op + "' " + what + " must be two integers >= " +
                                   Twine(minimum));
  return success();
}

LogicalResult Conv2dOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                         ValueRange operands, DictionaryAttr attrs,
                                         OpaqueProperties props, RegionRange regions,
                                         SmallVectorImpl<Type> &inferred) {
  Conv2dOp::Adaptor adaptor(operands, attrs, props, regions);
  auto x = rankedType(adaptor.getInput()), w = rankedType(adaptor.getWeight());
  if (x.getRank() != 4 || w.getRank() != 4)
    return emitInferError(loc, "'graph.conv2d' needs a 4-D NCHW input and a 4-D [out, in, kh, kw] weight, got " +
                                   shapeStr(x.getShape()) + " and " + shapeStr(w.getShape()));
  ArrayRef<int64_t> stride = adaptor.getStride(), pad = adaptor.getPadding();
  if (failed(checkPair(loc, "conv2d", "stride", stride, 1)) ||
      failed(checkPair(loc, "conv2d", "padding", pad, 0)))
    return failure();
  if (x.getDimSize(1) != w.getDimSize(1))
    return emitInferError(loc, "'graph.conv2d' input has " + std::to_string(x.getDimSize(1)) +
                                   " channels but the weight " + shapeStr(w.getShape()) +
                                   " expects " + std::to_string(w.getDimSize(1)));
  if (failed(requireSameElement(loc, "conv2d", adaptor.getInput(), adaptor.getWeight())))
    return failure();
  int64_t p = convOut(x.getDimSize(2), w.getDimSize(2), stride[0], pad[0]);
  int64_t q = convOut(x.getDimSize(3), w.getDimSize(3), stride[1], pad[1]);
  if (p <= 0 || q <= 0)
    return emitInferError(loc, "'graph.conv2d' kernel " + shapeStr(w.getShape()) +
                                   " does not fit the input " + shapeStr(x.getShape()));
  if (Value bias = adaptor.getBias()) {
    auto b = rankedType(bias);
    if (b.getRank() != 1 || b.getDimSize(0) != w.getDimSize(0))
      return emitInferError(loc, "'graph.conv2d' bias must be [" + std::to_string(w.getDimSize(0)) +
                                     "], got " + shapeStr(b.getShape()));
  }
  inferred.push_back(tensorOf({x.getDimSize(0), w.getDimSize(0), p, q}, x.getElementType()));
  return success();
}

LogicalResult ConvTranspose2dOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                                  ValueRange operands, DictionaryAttr attrs,
                                                  OpaqueProperties props, RegionRange regions,
                                                  SmallVectorImpl<Type> &inferred) {
  ConvTranspose2dOp::Adaptor adaptor(operands, attrs, props, regions);
  auto x = rankedType(adaptor.getInput()), w = rankedType(adaptor.getWeight());
  if (x.getRank() != 4 || w.getRank() != 4)
    return emitInferError(loc, "'graph.conv_transpose2d' needs a 4-D NCHW input and a 4-D [in, out, kh, kw] weight, got " +
                                   shapeStr(x.getShape()) + " and " + shapeStr(w.getShape()));
  ArrayRef<int64_t> stride = adaptor.getStride(), pad = adaptor.getPadding();
  if (failed(checkPair(loc, "conv_transpose2d", "stride", stride, 1)) ||
      failed(checkPair(loc, "conv_transpose2d", "padding", pad, 0)))
    return failure();
  if (x.getDimSize(1) != w.getDimSize(0))
    return emitInferError(loc, "'graph.conv_transpose2d' input has " + std::to_string(x.getDimSize(1)) +
                                   " channels but the weight " + shapeStr(w.getShape()) +
                                   " expects " + std::to_string(w.getDimSize(0)));
  if (failed(requireSameElement(loc, "conv_transpose2d", adaptor.getInput(), adaptor.getWeight())))
    return failure();
  int64_t h = (x.getDimSize(2) - 1) * stride[0] - 2 * pad[0] + w.getDimSize(2);
  int64_t wd = (x.getDimSize(3) - 1) * stride[1] - 2 * pad[1] + w.getDimSize(3);
  if (h <= 0 || wd <= 0)
    return emitInferError(loc, "'graph.conv_transpose2d' gives an empty output");
  if (Value bias = adaptor.getBias()) {
    auto b = rankedType(bias);
    if (b.getRank() != 1 || b.getDimSize(0) != w.getDimSize(1))
      return emitInferError(loc, "'graph.conv_transpose2d' bias must be [" +
                                     std::to_string(w.getDimSize(1)) + "], got " + shapeStr(b.getShape()));
  }
  inferred.push_back(tensorOf({x.getDimSize(0), w.getDimSize(1), h, wd}, x.getElementType()));
  return success();
}

LogicalResult Conv2dBackwardInputOp::verify() {
  auto dy = getGrad().getType(), w = getWeight().getType(), dx = getResult().getType();
  if (dy.getRank() != 4 || w.getRank() != 4 || dx.getRank() != 4)
    return emitOpError("needs 4-D operands and result");
  auto s = getStride(), pd = getPadding();
  if (s.size() != 2 || pd.size() != 2)
    return emitOpError("stride and padding need two values each");
  if (dx.getDimSize(1) != w.getDimSize(1) || dy.getDimSize(1) != w.getDimSize(0) ||
      dy.getDimSize(0) != dx.getDimSize(0) ||
      convOut(dx.getDimSize(2), w.getDimSize(2), s[0], pd[0]) != dy.getDimSize(2) ||
      convOut(dx.getDimSize(3), w.getDimSize(3), s[1], pd[1]) != dy.getDimSize(3))
    return emitOpError("shapes do not match a convolution: grad ")
           << dy << ", weight " << w << ", input " << dx;
  return success();
}

LogicalResult Conv2dBackwardWeightOp::verify() {
  auto x = getInput().getType(), dy = getGrad().getType(), dw = getResult().getType();
  if (x.getRank() != 4 || dy.getRank() != 4 || dw.getRank() != 4)
    return emitOpError("needs 4-D operands and result");
  auto s = getStride(), pd = getPadding();
  if (s.size() != 2 || pd.size() != 2)
    return emitOpError("stride and padding need two values each");
  if (dw.getDimSize(1) != x.getDimSize(1) || dw.getDimSize(0) != dy.getDimSize(1) ||
      convOut(x.getDimSize(2), dw.getDimSize(2), s[0], pd[0]) != dy.getDimSize(2) ||
      convOut(x.getDimSize(3), dw.getDimSize(3), s[1], pd[1]) != dy.getDimSize(3))
    return emitOpError("shapes do not match a convolution: input ")
           << x << ", grad " << dy << ", weight " << dw;
  return success();
}

LogicalResult MaxPool2dOp::inferReturnTypes(MLIRContext *ctx, std::optional<Location> loc,
                                            ValueRange operands, DictionaryAttr attrs,
                                            OpaqueProperties props, RegionRange regions,
                                            SmallVectorImpl<Type> &inferred) {
  MaxPool2dOp::Adaptor adaptor(operands, attrs, props, regions);
  auto x = rankedType(adaptor.getInput());
  int64_t k = adaptor.getKernel(), s = adaptor.getStride();
  if (x.getRank() != 4)
    return emitInferError(loc, "'graph.max_pool2d' needs a 4-D NCHW input, got " + shapeStr(x.getShape()));
  if (k < 1 || s < 1 || x.getDimSize(2) < k || x.getDimSize(3) < k)
    return emitInferError(loc, "'graph.max_pool2d' kernel " + std::to_string(k) + " stride " +
                                   std::to_string(s) + " does not fit " + shapeStr(x.getShape()));
  SmallVector<int64_t> shape = {x.getDimSize(0), x.getDimSize(1), (x.getDimSize(2) - k) / s + 1,
                                (x.getDimSize(3) - k) / s + 1};
  inferred.push_back(tensorOf(shape, x.getElementType()));
  inferred.push_back(tensorOf(shape, IntegerType::get(ctx, 32)));
  return success();
}

LogicalResult MaxPool2dBackwardOp::verify() {
  auto dy = getGrad().getType(), y = getPooled().getType(), dx = getResult().getType(),
       x = getInput().getType();
  if (dy.getShape() != y.getShape())
    return emitOpError("grad ") << dy << " and pooled " << y << " differ in shape";
  if (x.getShape() != dx.getShape())
    return emitOpError("input ") << x << " and result " << dx << " differ in shape";
  if (x.getElementType() != y.getElementType())
    return emitOpError("input ") << x << " and pooled " << y << " differ in element type";
  if (dx.getRank() != 4 || dy.getRank() != 4 || dx.getDimSize(0) != dy.getDimSize(0) ||
      dx.getDimSize(1) != dy.getDimSize(1) ||
      (dx.getDimSize(2) - getKernel()) / getStride() + 1 != dy.getDimSize(2) ||
      (dx.getDimSize(3) - getKernel()) / getStride() + 1 != dy.getDimSize(3))
    return emitOpError("result ") << dx << " is not the pooled input of grad " << dy;
  return success();
}

LogicalResult BatchNormOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                            ValueRange operands, DictionaryAttr attrs,
                                            OpaqueProperties props, RegionRange regions,
                                            SmallVectorImpl<Type> &inferred) {
  BatchNormOp::Adaptor adaptor(operands, attrs, props, regions);
  auto x = rankedType(adaptor.getInput());
  if (x.getRank() != 4 && x.getRank() != 2)
    return emitInferError(loc, "'graph.batch_norm' needs a 4-D NCHW or 2-D NC input, got " + shapeStr(x.getShape()));
  int64_t c = x.getDimSize(1);
  for (Value v : {adaptor.getGamma(), adaptor.getBeta(), adaptor.getRunningMean(),
                  adaptor.getRunningVar()}) {
    auto t = rankedType(v);
    if (t.getRank() != 1 || t.getDimSize(0) != c)
      return emitInferError(loc, "'graph.batch_norm' per-channel operands must be [" +
                                     std::to_string(c) + "], got " + shapeStr(t.getShape()));
  }
  inferred.push_back(x);
  for (int i = 0; i < 4; ++i)
    inferred.push_back(rankedType(adaptor.getRunningMean()));
  return success();
}

LogicalResult BatchNormBackwardOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                                    ValueRange operands, DictionaryAttr attrs,
                                                    OpaqueProperties props, RegionRange regions,
                                                    SmallVectorImpl<Type> &inferred) {
  BatchNormBackwardOp::Adaptor adaptor(operands, attrs, props, regions);
  auto dy = rankedType(adaptor.getGrad()), x = rankedType(adaptor.getInput());
  if (dy.getShape() != x.getShape())
    return emitInferError(loc, "'graph.batch_norm_backward' grad " + shapeStr(dy.getShape()) +
                                   " and input " + shapeStr(x.getShape()) + " differ");
  if (Value mask = adaptor.getMask(); mask && rankedType(mask).getShape() != dy.getShape())
    return emitInferError(loc, "'graph.batch_norm_backward' mask " +
                                   shapeStr(rankedType(mask).getShape()) + " and grad " +
                                   shapeStr(dy.getShape()) + " differ");
  inferred.push_back(x);
  inferred.push_back(rankedType(adaptor.getGamma()));
  inferred.push_back(rankedType(adaptor.getGamma()));
  return success();
}

//===----------------------------------------------------------------------===//
// Shape ops
//===----------------------------------------------------------------------===//

LogicalResult ConcatOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                         ValueRange operands, DictionaryAttr attrs,
                                         OpaqueProperties props, RegionRange regions,
                                         SmallVectorImpl<Type> &inferred) {
  ConcatOp::Adaptor adaptor(operands, attrs, props, regions);
  if (operands.empty())
    return emitInferError(loc, "'graph.concat' needs at least one input");
  auto first = rankedType(operands[0]);
  int64_t axis = adaptor.getAxis();
  if (axis < 0 || axis >= first.getRank())
    return emitInferError(loc, "'graph.concat' axis " + std::to_string(axis) + " out of range for rank " +
                                   std::to_string(first.getRank()));
  SmallVector<int64_t> shape(first.getShape());
  Type element = first.getElementType();
  for (Value v : operands.drop_front()) {
    auto t = rankedType(v);
    bool ok = t.getRank() == first.getRank();
    for (int64_t d = 0; ok && d < t.getRank(); ++d)
      ok = d == axis || t.getDimSize(d) == first.getDimSize(d);
    if (!ok)
      return emitInferError(loc, "'graph.concat' inputs " + shapeStr(first.getShape()) + " and " +
                                     shapeStr(t.getShape()) + " differ off axis " + std::to_string(axis));
    shape[axis] += t.getDimSize(axis);
    element = promoteFloatTypes(element, t.getElementType());
  }
  inferred.push_back(tensorOf(shape, element));
  return success();
}

LogicalResult SliceOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                        ValueRange operands, DictionaryAttr attrs,
                                        OpaqueProperties props, RegionRange regions,
                                        SmallVectorImpl<Type> &inferred) {
  SliceOp::Adaptor adaptor(operands, attrs, props, regions);
  auto x = rankedType(adaptor.getInput());
  int64_t axis = adaptor.getAxis(), off = adaptor.getOffset(), size = adaptor.getSize();
  if (axis < 0 || axis >= x.getRank() || off < 0 || size < 1 || off + size > x.getDimSize(axis))
    return emitInferError(loc, "'graph.slice' [" + std::to_string(off) + ", " + std::to_string(off + size) +
                                   ") on axis " + std::to_string(axis) + " is outside " + shapeStr(x.getShape()));
  SmallVector<int64_t> shape(x.getShape());
  shape[axis] = size;
  inferred.push_back(tensorOf(shape, x.getElementType()));
  return success();
}

LogicalResult ReshapeOp::verify() {
  if (getInput().getType().getNumElements() != getResult().getType().getNumElements())
    return emitOpError("cannot reshape ") << getInput().getType() << " (" << getInput().getType().getNumElements()
                                          << " elements) to " << getResult().getType();
  if (getInput().getType().getElementType() != getResult().getType().getElementType())
    return emitOpError("cannot change the element type (use graph.cast)");
  return success();
}

LogicalResult TransposeOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                            ValueRange operands, DictionaryAttr attrs,
                                            OpaqueProperties props, RegionRange regions,
                                            SmallVectorImpl<Type> &inferred) {
  TransposeOp::Adaptor adaptor(operands, attrs, props, regions);
  auto x = rankedType(adaptor.getInput());
  ArrayRef<int64_t> perm = adaptor.getPerm();
  SmallVector<bool> seen(x.getRank(), false);
  if (static_cast<int64_t>(perm.size()) != x.getRank())
    return emitInferError(loc, "'graph.transpose' perm has " + std::to_string(perm.size()) +
                                   " entries for rank " + std::to_string(x.getRank()));
  SmallVector<int64_t> shape;
  for (int64_t p : perm) {
    if (p < 0 || p >= x.getRank() || seen[p])
      return emitInferError(loc, "'graph.transpose' perm is not a permutation");
    seen[p] = true;
    shape.push_back(x.getDimSize(p));
  }
  inferred.push_back(tensorOf(shape, x.getElementType()));
  return success();
}

LogicalResult BroadcastToOp::verify() {
  auto in = getInput().getType(), out = getResult().getType();
  auto shape = broadcastShapes(in.getShape(), out.getShape());
  if (failed(shape) || ArrayRef<int64_t>(*shape) != out.getShape())
    return emitOpError("cannot broadcast ") << in << " to " << out;
  if (in.getElementType() != out.getElementType())
    return emitOpError("cannot change the element type (use graph.cast)");
  return success();
}

//===----------------------------------------------------------------------===//
// Reductions and losses
//===----------------------------------------------------------------------===//

static LogicalResult inferReduce(StringRef op, std::optional<Location> loc, Value input,
                                 ArrayRef<int64_t> axes, bool keepdim,
                                 SmallVectorImpl<Type> &inferred) {
  auto x = rankedType(input);
  SmallVector<bool> reduced(x.getRank(), false);
  for (int64_t a : axes) {
    if (a < 0 || a >= x.getRank() || reduced[a])
      return emitInferError(loc, Twine("'graph.") + op + "' axis " + Twine(a) +
                                     " is out of range or repeated for " + shapeStr(x.getShape()));
    reduced[a] = true;
  }
  SmallVector<int64_t> shape;
  for (int64_t d = 0; d < x.getRank(); ++d) {
    if (!reduced[d])
      shape.push_back(x.getDimSize(d));
    else if (keepdim)
      shape.push_back(1);
  }
  // Reductions accumulate and return fp32 (autocast's "always fp32").
  Type element = x.getElementType().isF64() ? x.getElementType()
                                            : Float32Type::get(input.getContext());
  inferred.push_back(tensorOf(shape, element));
  return success();
}

LogicalResult ReduceSumOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                            ValueRange operands, DictionaryAttr attrs,
                                            OpaqueProperties props, RegionRange regions,
                                            SmallVectorImpl<Type> &inferred) {
  ReduceSumOp::Adaptor adaptor(operands, attrs, props, regions);
  return inferReduce("reduce_sum", loc, adaptor.getInput(), adaptor.getAxes(),
                     adaptor.getKeepdim(), inferred);
}

LogicalResult ReduceMeanOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                             ValueRange operands, DictionaryAttr attrs,
                                             OpaqueProperties props, RegionRange regions,
                                             SmallVectorImpl<Type> &inferred) {
  ReduceMeanOp::Adaptor adaptor(operands, attrs, props, regions);
  return inferReduce("reduce_mean", loc, adaptor.getInput(), adaptor.getAxes(),
                     adaptor.getKeepdim(), inferred);
}

LogicalResult SoftmaxCrossEntropyOp::inferReturnTypes(MLIRContext *ctx, std::optional<Location> loc,
                                                      ValueRange operands, DictionaryAttr,
                                                      OpaqueProperties, RegionRange,
                                                      SmallVectorImpl<Type> &inferred) {
  auto logits = rankedType(operands[0]), labels = rankedType(operands[1]);
  if (logits.getRank() != 2 || labels.getRank() != 1 || labels.getDimSize(0) != logits.getDimSize(0))
    return emitInferError(loc, "'graph.softmax_cross_entropy' needs [N, C] logits and [N] labels, got " +
                                   shapeStr(logits.getShape()) + " and " + shapeStr(labels.getShape()));
  inferred.push_back(RankedTensorType::get({}, Float32Type::get(ctx)));
  return success();
}

LogicalResult MseOp::inferReturnTypes(MLIRContext *ctx, std::optional<Location> loc,
                                      ValueRange operands, DictionaryAttr, OpaqueProperties,
                                      RegionRange, SmallVectorImpl<Type> &inferred) {
  auto a = rankedType(operands[0]), b = rankedType(operands[1]);
  if (a.getShape() != b.getShape())
    return emitInferError(loc, "'graph.mse' input " + shapeStr(a.getShape()) + " and target " +
                                   shapeStr(b.getShape()) + " differ in shape");
  inferred.push_back(RankedTensorType::get({}, Float32Type::get(ctx)));
  return success();
}

//===----------------------------------------------------------------------===//
// Optimizer updates
//===----------------------------------------------------------------------===//

static LogicalResult verifyUpdate(Operation *op, ValueRange sameAsParam) {
  Type param = sameAsParam.front().getType();
  if (!cast<RankedTensorType>(param).getElementType().isF32() &&
      !cast<RankedTensorType>(param).getElementType().isF64())
    return op->emitOpError("updates fp32 master weights; got ") << param;
  for (Value v : sameAsParam)
    if (v.getType() != param)
      return op->emitOpError("operand ") << v.getType() << " differs from the parameter " << param;
  for (Type t : op->getResultTypes())
    if (t != param)
      return op->emitOpError("result ") << t << " differs from the parameter " << param;
  return success();
}

LogicalResult SgdUpdateOp::verify() {
  return verifyUpdate(*this, {getParam(), getGrad(), getMomentumBuffer()});
}

LogicalResult AdamUpdateOp::verify() {
  return verifyUpdate(*this, {getParam(), getGrad(), getExpAvg(), getExpAvgSq()});
}

//===----------------------------------------------------------------------===//
// Fused elementwise kernels
//===----------------------------------------------------------------------===//

LogicalResult FusedOp::verify() {
  Block &body = getBody().front();
  if (body.getNumArguments() != getNumOperands())
    return emitOpError("body has ") << body.getNumArguments() << " arguments for "
                                    << getNumOperands() << " operands";
  for (auto [arg, operand] : llvm::zip(body.getArguments(), getOperands()))
    if (arg.getType() != operand.getType())
      return emitOpError("body argument ") << arg.getType() << " differs from its operand "
                                           << operand.getType();
  if (getNumResults() == 0)
    return emitOpError("needs at least one result");
  auto yield = dyn_cast<YieldOp>(body.getTerminator());
  if (!yield)
    return emitOpError("body must end in graph.yield");
  if (yield.getValues().getTypes() != getResultTypes())
    return emitOpError("yields ") << yield.getValues().getTypes() << " for results "
                                  << getResultTypes();
  ArrayRef<int64_t> shape = rankedType(getResult(0)).getShape();
  for (Value r : getResults())
    if (rankedType(r).getShape() != shape)
      return emitOpError("results differ in shape: ")
             << shapeStr(rankedType(r).getShape()) << " and " << shapeStr(shape)
             << " (one kernel iterates over one shape)";
  for (Value v : getOperands()) {
    auto b = broadcastShapes(rankedType(v).getShape(), shape);
    if (failed(b) || ArrayRef<int64_t>(*b) != shape)
      return emitOpError("operand ") << v.getType() << " does not broadcast to the iteration shape "
                                     << shapeStr(shape);
  }
  for (Operation &op : body.without_terminator()) {
    if (!isa<ElementwiseOp>(op) || isa<FusedOp>(op))
      return op.emitOpError("cannot be inside graph.fused (only elementwise graph ops can)");
    for (Value r : op.getResults())
      if (rankedType(r).getShape() != shape)
        return op.emitOpError("result shape ")
               << shapeStr(rankedType(r).getShape()) << " differs from the fused iteration shape "
               << shapeStr(shape);
  }
  return success();
}

SmallVector<int> mantissa::graph::buildFusedScalarProgram(FusedOp op, ScalarProgramBuilder &p,
                                                          ArrayRef<int> in) {
  Block &body = op.getBody().front();
  DenseMap<Value, int> reg;
  for (auto [arg, r] : llvm::zip(body.getArguments(), in))
    reg[arg] = r;
  for (Operation &inner : body.without_terminator()) {
    SmallVector<int> operands;
    for (Value v : inner.getOperands())
      operands.push_back(reg.lookup(v));
    SmallVector<int> results = cast<ElementwiseOp>(inner).buildScalarProgram(p, operands);
    for (auto [value, r] : llvm::zip(inner.getResults(), results)) {
      // Unfused, this value would be stored in its element type (and the output
      // store still rounds it); an op inside that reads it must see that value.
      Type element = rankedType(value).getElementType();
      bool readInside =
          llvm::any_of(value.getUsers(), [](Operation *u) { return !isa<YieldOp>(u); });
      if (readInside && element.isF16())
        r = p.emit(ScalarOp::RoundF16, r);
      else if (readInside && element.isBF16())
        r = p.emit(ScalarOp::RoundBF16, r);
      reg[value] = r;
    }
  }
  SmallVector<int> outputs;
  for (Value v : body.getTerminator()->getOperands())
    outputs.push_back(reg.lookup(v));
  return outputs;
}

#define GET_OP_CLASSES
#include "mantissa/Graph/GraphOps.cpp.inc"
