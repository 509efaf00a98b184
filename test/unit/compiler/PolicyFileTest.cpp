//===- PolicyFileTest.cpp - policy files: parse, format, op kinds ----------===//
#include "compiler/PrecisionPolicy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

using namespace mantissa;

namespace {

PolicyFile parse(const std::string &text) {
  llvm::Expected<PolicyFile> p = parsePolicyFile(text, "test.json");
  if (!p) {
    ADD_FAILURE() << llvm::toString(p.takeError());
    return {};
  }
  return *p;
}

std::string parseError(const std::string &text) {
  llvm::Expected<PolicyFile> p = parsePolicyFile(text, "dir/test.json");
  if (p)
    return "(parsed)";
  return llvm::toString(p.takeError());
}

void expectSame(const PolicyFile &a, const PolicyFile &b) {
  EXPECT_EQ(a.defaultPrecision, b.defaultPrecision);
  EXPECT_EQ(a.kinds, b.kinds);
  EXPECT_EQ(a.groups, b.groups);
  EXPECT_EQ(a.ops, b.ops);
  EXPECT_EQ(a.lossScaling, b.lossScaling);
}

TEST(PolicyFile, EveryKeyFormatsAndParsesBack) {
  PolicyFile p;
  p.defaultPrecision = "fp16";
  p.kinds = {{"batch_norm", "fp32"}, {"conv2d", "bf16"}};
  p.groups = {{"conv1", "fp16"}};
  p.ops = {{"loss", "fp32"}};
  p.lossScaling = "dynamic";
  std::string text = formatPolicyFile(p);
  PolicyFile back = parse(text);
  expectSame(p, back);
  EXPECT_EQ(formatPolicyFile(back), text);
  EXPECT_TRUE(back.usesFp16());
}

// What `mantissa tune` writes (groups and loss scaling, no kinds) reads back unchanged,
// and a hand-added "kinds" entry survives a rewrite.
TEST(PolicyFile, TheTunersPolicyRoundTrips) {
  PolicyFile tuned;
  tuned.groups = {{"fc2", "fp16"}, {"head", "bf16"}};
  tuned.lossScaling = "dynamic";
  std::string text = formatPolicyFile(tuned);
  EXPECT_EQ(text.find("kinds"), std::string::npos) << text;
  expectSame(tuned, parse(text));

  PolicyFile edited =
      parse(R"({"default": "fp32", "kinds": {"linear": "fp16"}, "groups": {"fc2": "bf16"}})");
  EXPECT_EQ(edited.kinds.at("linear"), "fp16");
  EXPECT_TRUE(edited.usesFp16()); // through its kinds alone
  expectSame(edited, parse(formatPolicyFile(edited)));
}

TEST(PolicyFile, KindsAreTheDialectsOpsWithAPrecisionChoice) {
  const std::vector<std::string> &kinds = policyOpKinds();
  EXPECT_TRUE(std::is_sorted(kinds.begin(), kinds.end()));
  for (const char *k : {"conv2d", "conv_transpose2d", "linear", "matmul", "batch_norm", "relu",
                        "add", "softmax_cross_entropy"})
    EXPECT_TRUE(std::binary_search(kinds.begin(), kinds.end(), k)) << k;
  // Fixed ops keep their types; no policy can move them.
  for (const char *k :
       {"param", "input", "buffer", "constant", "cast", "sgd_update", "adam_update", "fused"})
    EXPECT_FALSE(std::binary_search(kinds.begin(), kinds.end(), k)) << k;
}

TEST(PolicyFile, AnUnknownKindNamesTheKindTheFileAndTheValidKinds) {
  std::string e = parseError(R"({"default": "fp32", "kinds": {"conv3d": "fp16"}})");
  EXPECT_NE(e.find("dir/test.json"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown op kind \"conv3d\""), std::string::npos) << e;
  EXPECT_NE(e.find("conv2d, conv2d_backward_input"), std::string::npos) << e;

  e = parseError(R"({"default": "fp32", "kinds": {"graph.conv2d": "fp16"}})");
  EXPECT_NE(e.find("drop the \"graph.\" prefix"), std::string::npos) << e;
  e = parseError(R"({"default": "fp32", "kinds": {"cast": "fp16"}})");
  EXPECT_NE(e.find("unknown op kind \"cast\""), std::string::npos) << e;
  e = parseError(R"({"default": "fp32", "kinds": {"conv2d": "fp8"}})");
  EXPECT_NE(e.find("\"kinds\": \"conv2d\" needs \"fp32\", \"fp16\" or \"bf16\""), std::string::npos)
      << e;
  e = parseError(R"({"default": "fp32", "kinds": ["conv2d"]})");
  EXPECT_NE(e.find("\"kinds\" must be an object"), std::string::npos) << e;
}

TEST(PolicyFile, AnInfiniteOrNonPositiveLossScaleIsTheFilesError) {
  // Not left to `mantissa compile`, whose message would name --loss-scale, not the file.
  for (const char *text : {R"({"default": "fp16", "loss_scaling": "inf"})",
                           R"({"default": "fp16", "loss_scaling": 1e999})",
                           R"({"default": "fp16", "loss_scaling": "nan"})",
                           R"({"default": "fp16", "loss_scaling": -5})"}) {
    std::string e = parseError(text);
    EXPECT_NE(e.find("dir/test.json"), std::string::npos) << text << ": " << e;
    EXPECT_NE(e.find("\"loss_scaling\" must be \"dynamic\", \"none\" or a positive finite number"),
              std::string::npos)
        << text << ": " << e;
  }
  std::optional<std::string> scale = parse(R"({"default": "fp16", "loss_scaling": 1024})").lossScaling;
  ASSERT_TRUE(scale.has_value());
  EXPECT_EQ(std::stod(*scale), 1024.0);
}

// A repeated key would silently mean its last value (llvm::json keeps the last): the file's
// error, naming the key, the line and column, and the object it repeats in. Oracle: the
// positions counted by hand.
TEST(PolicyFile, ARepeatedKeyIsTheFilesError) {
  EXPECT_EQ(parseError("{\"default\": \"fp16\",\n \"ops\": {\"fc1\": \"fp16\",\n   \"fc1\": \"fp32\"}}"),
            "policy file 'dir/test.json': line 3, column 4: duplicate key \"fc1\" in \"ops\"; "
            "each key may appear once");
  EXPECT_EQ(parseError(R"({"default": "fp16", "default": "fp32"})"),
            "policy file 'dir/test.json': line 1, column 21: duplicate key \"default\"; "
            "each key may appear once");
  // The same name spelt with an escape is the same key.
  std::string e = parseError(R"({"default": "fp16", "groups": {"fc": "fp16", "f\u0063": "bf16"}})");
  EXPECT_NE(e.find("duplicate key \"fc\" in \"groups\""), std::string::npos) << e;
  // One name in "kinds", "groups" and "ops" is no repeat, nor a key that is also a value, nor
  // a colon, brace or quote inside a string.
  PolicyFile p = parse(R"({"default": "fp32", "kinds": {"linear": "fp16"}, "groups": {"linear": "bf16"},
                          "ops": {"linear": "fp32", "a\"}{,:": "fp16", "fp16": "fp16"}})");
  EXPECT_EQ(p.kinds.at("linear"), "fp16");
  EXPECT_EQ(p.groups.at("linear"), "bf16");
  EXPECT_EQ(p.ops.size(), 3u);
}

} // namespace
