//===- GraphDialect.cpp - the graph dialect -------------------------------===//
#include "mantissa/Graph/GraphDialect.h"
#include "mantissa/Graph/GraphOps.h"

using namespace mlir;
using namespace mantissa::graph;

#include "mantissa/Graph/GraphOpsDialect.cpp.inc"

void GraphDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "mantissa/Graph/GraphOps.cpp.inc"
      >();
}
