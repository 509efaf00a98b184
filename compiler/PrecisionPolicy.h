//===- PrecisionPolicy.h - precision policy files and op groups -----------===//
//
// A policy file is the hand-editable form of a precision placement:
//
//   {
//     "default": "fp32",                       // the precision of `Lower` ops
//     "kinds": {"batch_norm": "fp32"},           // every op of a kind (graph op name, no "graph.")
//     "groups": {"conv2": "bf16", "fc": "fp16"}, // an op group, by its anchor's graph.name
//     "ops": {"loss": "fp32"},                   // one op, by graph.name
//     "loss_scaling": "dynamic"                  // dynamic | none | a static scale
//   }
//
// The most specific entry wins: ops > groups > kinds > default (then an op's own
// graph.precision attribute, then its precision category). A group sets its anchor
// and its members that follow their inputs (not its Fp32 members: losses, exp, log);
// a kind sets the ops of that kind only. The valid kinds are the graph ops whose
// precision category is not Fixed (policyOpKinds()); a kind the model does not use
// is allowed (one file can serve several models), an unknown kind is an error.
//
// Only "default" is required. `assign-precision` reads the precisions, `mantissa
// compile` the loss scaling, and `mantissa tune` writes such files. Reading and
// writing live here only, so the three agree.
//
// An op group is the unit the tuner searches over: one matmul or convolution (the
// anchor) with the elementwise work around it. Groups are formed in program order:
// a `Lower` op starts a group; any other op joins the group of its first operand
// that has one; an op with no such operand starts an elementwise-only group, which
// has no anchor and no precision of its own (its ops follow their inputs).
//===----------------------------------------------------------------------===//
#pragma once

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/Support/Error.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mantissa {

struct PolicyFile {
  std::string defaultPrecision = "fp32";
  std::map<std::string, std::string> kinds;  // op kind ("conv2d") -> precision
  std::map<std::string, std::string> groups; // anchor graph.name -> precision
  std::map<std::string, std::string> ops;    // op graph.name -> precision
  std::optional<std::string> lossScaling;    // "dynamic", "none" or a positive number

  /// Whether any op may compute in fp16 (dynamic loss scaling is then the default).
  bool usesFp16() const;
};

/// Whether `name` is one of fp32, fp16, bf16.
bool isPrecisionName(llvm::StringRef name);

/// The op kinds a policy's "kinds" may name: the graph dialect's ops, without the
/// "graph." prefix, whose precision category is not Fixed; sorted.
const std::vector<std::string> &policyOpKinds();

/// Parses a policy file's text; errors name `where` and the offending key.
llvm::Expected<PolicyFile> parsePolicyFile(llvm::StringRef text, llvm::StringRef where);
/// Reads and parses the file at `path`.
llvm::Expected<PolicyFile> readPolicyFile(llvm::StringRef path);
/// The file's text (pretty-printed JSON, keys sorted), which parsePolicyFile reads back.
std::string formatPolicyFile(const PolicyFile &policy);

struct OpGroup {
  std::string name;                      // the anchor's graph.name, or "elementwise@<first op>"
  std::string anchorKind;                // e.g. "graph.conv2d"; empty: elementwise-only
  std::vector<mlir::Operation *> members; // in program order, anchor first if any
  std::vector<std::string> memberNames;  // graph.name, or "<op kind>#<index in @forward>"

  bool hasAnchor() const { return !anchorKind.empty(); }
};

/// The op groups of @forward, in program order (see the file comment).
std::vector<OpGroup> listOpGroups(mlir::func::FuncOp forward);

} // namespace mantissa
