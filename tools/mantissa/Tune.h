//===- Tune.h - mantissa tune: the precision auto-tuner -------------------===//
#pragma once

namespace mantissa {

/// The `tune` subcommand (argv after it). Returns the exit code.
int tuneMain(int argc, char **argv);

/// The help text of `tune`.
const char *tuneUsage();

} // namespace mantissa
