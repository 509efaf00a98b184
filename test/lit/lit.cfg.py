# lit configuration of Mantissa's IR tests (dialect and passes).
#
# Run through the build tree, whose lit.site.cfg.py says where the tools are:
#   ctest -R lit            or    lit -v <build>/test/lit
# or from the sources with the build directory given:
#   lit -v test/lit --param build=<build>
import os
import re
import shutil

import lit.formats

config.name = "Mantissa"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir"]
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py"]
config.test_source_root = os.path.dirname(os.path.abspath(__file__))

if not hasattr(config, "mantissa_tools_dirs"):
    build = lit_config.params.get("build") or os.environ.get("MANTISSA_BUILD_DIR")
    if not build:
        lit_config.fatal("run lit on the build tree (lit -v <build>/test/lit, as ctest does) "
                         "or pass --param build=<build directory>")
    build = os.path.abspath(build)
    config.mantissa_obj_root = build
    config.mantissa_tools_dirs = [os.path.join(build, d)
                                  for d in ("bin", "tools/mantissa-opt", "tools/mantissa")]
    config.llvm_tools_dir = "/usr/lib/llvm-22/bin"
    config.test_exec_root = os.path.join(build, "test", "lit")
else:
    config.test_exec_root = config.mantissa_lit_obj_root

# The tools are found on PATH: this build's first, then LLVM's (FileCheck, not).
path = os.pathsep.join([d for d in config.mantissa_tools_dirs if os.path.isdir(d)] +
                       [config.llvm_tools_dir, config.environment.get("PATH", os.environ["PATH"])])
config.environment["PATH"] = path

for tool in ("mantissa-opt", "mantissa"):
    found = shutil.which(tool, path=path)
    if found:
        config.available_features.add(tool)
        config.substitutions.append(("%" + re.escape(tool) + r"(?![-\w])", found))
    elif tool == "mantissa-opt":
        lit_config.fatal("mantissa-opt is not built; looked in " + ", ".join(config.mantissa_tools_dirs))

config.substitutions.append(("%models", os.path.join(config.test_source_root, "..", "..", "models")))

# `mantissa compile` compiles kernels with NVRTC (--arch, default sm_90): one cache in
# the build tree, so each distinct kernel is compiled once per build, not per test.
config.environment["MANTISSA_CACHE_DIR"] = os.path.join(config.mantissa_obj_root, "nvrtc-cache")
