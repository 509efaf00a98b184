//===- Args.h - small helpers for the tools' argument lists ---------------===//
#pragma once

#include <cstring>

namespace mantissa {

/// Whether `flag` is one of the arguments (subcommands that switch on a flag,
/// e.g. `inspect --numerics`, look before parsing).
inline bool hasFlag(int argc, char **argv, const char *flag) {
  for (int i = 0; i < argc; ++i)
    if (!std::strcmp(argv[i], flag))
      return true;
  return false;
}

} // namespace mantissa
