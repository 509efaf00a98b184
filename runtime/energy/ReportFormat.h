//===- ReportFormat.h - number formatting shared by the energy reports ----===//
#pragma once

#include <cmath>
#include <cstdio>
#include <string>

namespace mantissa::report {

inline std::string fmt(const char *f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

/// A JSON number (null for NaN/inf, which JSON cannot carry).
inline std::string num(double v) {
  if (!std::isfinite(v))
    return "null";
  return fmt("%.17g", v);
}

inline std::string csvField(const std::string &s) {
  if (s.find_first_of(",\"\n") == std::string::npos)
    return s;
  std::string o = "\"";
  for (char c : s) {
    if (c == '"')
      o += '"';
    o += c;
  }
  return o + "\"";
}

/// `s` right-aligned in `width` display columns: printf's `%Ns` pads by bytes, so a
/// UTF-8 header such as "°C" (3 bytes, 2 columns) would come out one column short.
inline std::string padLeft(const std::string &s, size_t width) {
  size_t columns = 0;
  for (unsigned char c : s)
    columns += (c & 0xC0) != 0x80; // count code points, not continuation bytes
  return columns >= width ? s : std::string(width - columns, ' ') + s;
}

inline std::string seconds(double s) {
  if (s >= 1.0)
    return fmt("%.3f s", s);
  if (s >= 1e-3)
    return fmt("%.3f ms", s * 1e3);
  return fmt("%.3f us", s * 1e6);
}

} // namespace mantissa::report
