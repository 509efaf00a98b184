// Shared helpers for the io and data unit tests: a scratch directory and running
// /usr/bin/python3 (Debian's, with numpy) to make fixtures.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

namespace mantissa {
namespace testutil {

#ifndef MANTISSA_TEST_PYTHON
#define MANTISSA_TEST_PYTHON "/usr/bin/python3"
#endif

/// A fresh directory under $TMPDIR (or /tmp), removed at destruction.
struct ScratchDir {
  std::string path;
  ScratchDir() {
    const char *base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/mantissa-test-XXXXXX";
    char *p = ::mkdtemp(&tmpl[0]);
    if (!p)
      throw std::runtime_error("mkdtemp failed");
    path = p;
  }
  ~ScratchDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string file(const std::string &name) const { return path + "/" + name; }
};

inline void writeText(const std::string &path, const std::string &text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

/// Runs `script` with /usr/bin/python3 in `dir` (as its working directory); returns
/// the exit status (127 when python is missing).
inline int runPython(const ScratchDir &dir, const std::string &script) {
  std::string file = dir.file("fixture.py");
  writeText(file, script);
  std::string cmd = "cd '" + dir.path + "' && " MANTISSA_TEST_PYTHON " '" + file + "'";
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

/// Whether /usr/bin/python3 can import every module in `modules` (space-separated).
inline bool pythonHas(const std::string &modules) {
  std::string imports;
  std::string m;
  for (char c : modules + " ") {
    if (c == ' ') {
      if (!m.empty())
        imports += "import " + m + "\n";
      m.clear();
    } else {
      m += c;
    }
  }
  ScratchDir d;
  return runPython(d, imports) == 0;
}

#define MANTISSA_REQUIRE_PYTHON(modules)                                                           \
  do {                                                                                             \
    if (!::mantissa::testutil::pythonHas(modules))                                                 \
      GTEST_SKIP() << MANTISSA_TEST_PYTHON " with " << (modules)                                   \
                   << " is not available (apt-get install python3-numpy / python3-sklearn)"        \
                   << "; skipping the check against files written by Python";                      \
  } while (0)

/// Expects `fn` to throw mantissa::Error whose message contains every piece.
template <typename Fn> std::string expectError(Fn fn, std::initializer_list<std::string> pieces) {
  try {
    fn();
  } catch (const mantissa::Error &e) {
    std::string msg = e.what();
    for (const std::string &p : pieces)
      EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nmissing: " << p;
    return msg;
  }
  ADD_FAILURE() << "expected mantissa::Error";
  return "";
}

} // namespace testutil
} // namespace mantissa
