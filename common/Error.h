//===- Error.h - the one error type users see -----------------------------===//
//
// A user's mistake (bad file, bad shape, bad option) is reported by throwing
// mantissa::Error with a message that says what and where; the tools catch it at
// the top, print "error: <message>" once and exit non-zero.
//===----------------------------------------------------------------------===//
#pragma once

#include <stdexcept>
#include <string>

namespace mantissa {

class Error : public std::runtime_error {
public:
  explicit Error(const std::string &message) : std::runtime_error(message) {}
};

} // namespace mantissa
