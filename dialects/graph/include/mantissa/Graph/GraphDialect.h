//===- GraphDialect.h - the graph dialect ---------------------------------===//
#pragma once

#include "mlir/IR/Dialect.h"

#include "mantissa/Graph/GraphOpsDialect.h.inc"
