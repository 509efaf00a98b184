//===- PrecisionPolicy.cpp - precision policy files and op groups ---------===//
#include "compiler/PrecisionPolicy.h"

#include "mantissa/Graph/GraphOps.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <set>

using namespace mlir;

namespace mantissa {

bool isPrecisionName(llvm::StringRef name) {
  return name == "fp32" || name == "fp16" || name == "bf16";
}

namespace {

/// The names of the ops in `Ops` (without "graph.") whose category is not Fixed.
template <typename... Ops> std::vector<std::string> kindsOf() {
  std::vector<std::string> kinds;
  auto add = [&](llvm::StringRef name, graph::PrecisionCategory category) {
    if (category != graph::PrecisionCategory::Fixed)
      kinds.push_back(name.drop_front(llvm::StringRef("graph.").size()).str());
  };
  (add(Ops::getOperationName(), Ops::getPrecisionCategory()), ...);
  std::sort(kinds.begin(), kinds.end());
  return kinds;
}

} // namespace

const std::vector<std::string> &policyOpKinds() {
  // The dialect's op list (ODS), so a new op is a valid kind without a second list.
  static const std::vector<std::string> kinds = kindsOf<
#define GET_OP_LIST
#include "mantissa/Graph/GraphOps.cpp.inc"
      >();
  return kinds;
}

bool PolicyFile::usesFp16() const {
  if (defaultPrecision == "fp16")
    return true;
  for (const auto *map : {&kinds, &groups, &ops})
    for (const auto &[name, precision] : *map)
      if (precision == "fp16")
        return true;
  return false;
}

namespace {

llvm::Error policyError(llvm::StringRef where, const llvm::Twine &what) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 "policy file '" + where + "': " + what);
}

/// Reads {"name": "fp16", ...} into `out`.
llvm::Error readPrecisionMap(const llvm::json::Object &root, llvm::StringRef key,
                             llvm::StringRef where, std::map<std::string, std::string> &out) {
  const llvm::json::Value *value = root.get(key);
  if (!value)
    return llvm::Error::success();
  const llvm::json::Object *map = value->getAsObject();
  if (!map)
    return policyError(where, "\"" + key + "\" must be an object of name to precision");
  for (const auto &entry : *map) {
    std::optional<llvm::StringRef> precision = entry.second.getAsString();
    if (!precision || !isPrecisionName(*precision))
      return policyError(where, "\"" + key + "\": \"" + llvm::StringRef(entry.first) +
                                    "\" needs \"fp32\", \"fp16\" or \"bf16\"");
    out[entry.first.str()] = precision->str();
  }
  return llvm::Error::success();
}

bool isLossScalingName(llvm::StringRef s) {
  if (s == "dynamic" || s == "none")
    return true;
  char *end = nullptr;
  std::string str = s.str();
  double v = std::strtod(str.c_str(), &end);
  return !str.empty() && *end == '\0' && v > 0 && std::isfinite(v);
}

/// llvm::json keeps the last of a repeated key, so {"ops": {"fc1": "fp16", "fc1": "fp32"}}
/// would silently mean fp32. Finds the first key repeated in one object of `text`, which
/// llvm::json::parse accepted (so strings are terminated and brackets balance).
llvm::Error checkNoDuplicateKeys(llvm::StringRef text, llvm::StringRef where) {
  struct Frame {
    bool object;
    std::string name; // the key this object is the value of ("" at the top or in an array)
    std::set<std::string> keys;
    bool expectKey = true;
  };
  std::vector<Frame> stack;
  std::string lastKey;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '{' || c == '[') {
      bool inObject = !stack.empty() && stack.back().object;
      stack.push_back({c == '{', inObject ? lastKey : std::string(), {}});
    } else if (c == '}' || c == ']') {
      stack.pop_back();
    } else if (c == ',' && !stack.empty()) {
      stack.back().expectKey = true;
    } else if (c == '"') {
      size_t start = i;
      for (++i; text[i] != '"'; ++i)
        if (text[i] == '\\')
          ++i;
      if (stack.empty() || !stack.back().object || !stack.back().expectKey)
        continue; // a string value
      Frame &frame = stack.back();
      frame.expectKey = false;
      llvm::StringRef literal = text.slice(start, i + 1);
      std::string key = literal.drop_front().drop_back().str();
      if (literal.contains('\\')) { // compare decoded keys: "f\u0063" is "fc"
        llvm::Expected<llvm::json::Value> decoded = llvm::json::parse(literal);
        if (!decoded)
          llvm::consumeError(decoded.takeError());
        else if (std::optional<llvm::StringRef> s = decoded->getAsString())
          key = s->str();
      }
      if (!frame.keys.insert(key).second) {
        size_t line = 1 + text.take_front(start).count('\n');
        // 1-based; on line 1 rfind is npos and start - npos wraps to start + 1.
        size_t column = start - text.take_front(start).rfind('\n');
        std::string in = frame.name.empty() ? "" : " in \"" + frame.name + "\"";
        return policyError(where, "line " + llvm::Twine(line) + ", column " + llvm::Twine(column) +
                                      ": duplicate key \"" + key + "\"" + in +
                                      "; each key may appear once");
      }
      lastKey = key;
    }
  }
  return llvm::Error::success();
}

} // namespace

llvm::Expected<PolicyFile> parsePolicyFile(llvm::StringRef text, llvm::StringRef where) {
  llvm::Expected<llvm::json::Value> json = llvm::json::parse(text);
  if (!json)
    return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                   "policy file '" + where + "' is not valid JSON: " +
                                       llvm::toString(json.takeError()));
  if (llvm::Error e = checkNoDuplicateKeys(text, where))
    return std::move(e);
  const llvm::json::Object *root = json->getAsObject();
  if (!root)
    return policyError(where, "must hold an object {\"default\": ..., \"kinds\": {...}, "
                              "\"groups\": {...}, \"ops\": {...}, \"loss_scaling\": ...}");
  for (const auto &entry : *root)
    if (entry.first != "default" && entry.first != "kinds" && entry.first != "groups" &&
        entry.first != "ops" && entry.first != "loss_scaling")
      return policyError(where, "unknown key \"" + llvm::StringRef(entry.first) +
                                    "\" (expected \"default\", \"kinds\", \"groups\", \"ops\", "
                                    "\"loss_scaling\")");
  PolicyFile policy;
  std::optional<llvm::StringRef> def = root->getString("default");
  if (!def || !isPrecisionName(*def))
    return policyError(where, "needs \"default\": \"fp32\", \"fp16\" or \"bf16\"");
  policy.defaultPrecision = def->str();
  if (llvm::Error e = readPrecisionMap(*root, "kinds", where, policy.kinds))
    return std::move(e);
  const std::vector<std::string> &known = policyOpKinds();
  for (const auto &[kind, precision] : policy.kinds)
    if (!std::binary_search(known.begin(), known.end(), kind)) {
      std::string list;
      for (const std::string &k : known)
        list += (list.empty() ? "" : ", ") + k;
      std::string hint =
          llvm::StringRef(kind).starts_with("graph.") ? " (drop the \"graph.\" prefix)" : "";
      return policyError(where, "\"kinds\": unknown op kind \"" + kind + "\"" + hint +
                                    "; the kinds are: " + list);
    }
  if (llvm::Error e = readPrecisionMap(*root, "groups", where, policy.groups))
    return std::move(e);
  if (llvm::Error e = readPrecisionMap(*root, "ops", where, policy.ops))
    return std::move(e);
  if (const llvm::json::Value *ls = root->get("loss_scaling")) {
    std::optional<llvm::StringRef> s = ls->getAsString();
    std::string text;
    if (std::optional<double> number = ls->getAsNumber()) {
      llvm::raw_string_ostream os(text);
      os << *number;
      s = text;
    }
    if (!s || !isLossScalingName(*s))
      return policyError(where, "\"loss_scaling\" must be \"dynamic\", \"none\" or a positive finite number");
    policy.lossScaling = s->str();
  }
  return policy;
}

llvm::Expected<PolicyFile> readPolicyFile(llvm::StringRef path) {
  auto buffer = llvm::MemoryBuffer::getFile(path);
  if (!buffer)
    return policyError(path, "cannot read it (" + buffer.getError().message() + ")");
  return parsePolicyFile((*buffer)->getBuffer(), path);
}

std::string formatPolicyFile(const PolicyFile &policy) {
  llvm::json::Object root;
  root["default"] = policy.defaultPrecision;
  auto map = [](const std::map<std::string, std::string> &m) {
    llvm::json::Object o;
    for (const auto &[name, precision] : m)
      o[name] = precision;
    return o;
  };
  if (!policy.kinds.empty())
    root["kinds"] = map(policy.kinds);
  if (!policy.groups.empty())
    root["groups"] = map(policy.groups);
  if (!policy.ops.empty())
    root["ops"] = map(policy.ops);
  if (policy.lossScaling)
    root["loss_scaling"] = *policy.lossScaling;
  std::string text;
  llvm::raw_string_ostream os(text);
  os << llvm::formatv("{0:2}", llvm::json::Value(std::move(root))) << "\n";
  return text;
}

std::vector<OpGroup> listOpGroups(func::FuncOp forward) {
  std::vector<OpGroup> groups;
  llvm::DenseMap<Value, size_t> groupOf; // the group whose op defined the value
  unsigned index = 0;
  for (Operation &op : forward.getBody().getOps()) {
    unsigned position = index++;
    auto precisionOp = dyn_cast<graph::PrecisionOp>(&op);
    if (!precisionOp)
      continue; // return
    if (precisionOp.getPrecisionCategory() == graph::PrecisionCategory::Fixed) {
      // Inputs, parameters and constants start no group; a cast passes its
      // operand's group on.
      if (auto cast = dyn_cast<graph::CastOp>(&op)) {
        auto it = groupOf.find(cast.getInput());
        if (it != groupOf.end())
          groupOf[cast.getResult()] = it->second;
      }
      continue;
    }
    std::string name;
    if (auto attr = op.getAttrOfType<StringAttr>("graph.name"))
      name = attr.getValue().str();
    else
      name = op.getName().getStringRef().str() + "#" + std::to_string(position);

    size_t group;
    if (precisionOp.getPrecisionCategory() == graph::PrecisionCategory::Lower) {
      group = groups.size();
      groups.push_back({name, op.getName().getStringRef().str(), {}, {}});
    } else {
      group = groups.size();
      for (Value operand : op.getOperands()) {
        auto it = groupOf.find(operand);
        if (it != groupOf.end()) {
          group = it->second;
          break;
        }
      }
      if (group == groups.size())
        groups.push_back({"elementwise@" + name, "", {}, {}});
    }
    groups[group].members.push_back(&op);
    groups[group].memberNames.push_back(name);
    for (Value result : op.getResults())
      groupOf[result] = group;
  }
  return groups;
}

} // namespace mantissa
