//===- MiniJson.cpp -------------------------------------------------------===//
#include "runtime/io/MiniJson.h"

#include "common/Error.h"
#include "runtime/io/AtomicFile.h"

#include <limits>
#include <unordered_set>

namespace mantissa {
namespace json {

const char *Value::kindName() const {
  switch (kind) {
  case Kind::Null:
    return "null";
  case Kind::Bool:
    return "boolean";
  case Kind::Number:
    return "number";
  case Kind::String:
    return "string";
  case Kind::Array:
    return "array";
  case Kind::Object:
    return "object";
  }
  return "?";
}

bool Value::asInt64(int64_t &out) const {
  if (kind != Kind::Number || text.empty())
    return false;
  size_t i = 0;
  bool neg = text[0] == '-';
  if (neg)
    i = 1;
  if (i >= text.size())
    return false;
  uint64_t v = 0;
  for (; i < text.size(); ++i) {
    char c = text[i];
    if (c < '0' || c > '9')
      return false;
    if (v > (static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) - (c - '0')) / 10)
      return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  out = neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
  return true;
}

namespace {

struct Parser {
  const std::string &s;
  const std::string &where;
  size_t i = 0;
  int depth = 0;

  [[noreturn]] void fail(const std::string &what) const {
    throw Error(where + ": invalid JSON at byte " + std::to_string(i) + ": " + what);
  }
  [[noreturn]] void duplicate(const std::string &key, size_t at) const {
    size_t line = 1, column = 1;
    for (size_t k = 0; k < at; ++k, ++column)
      if (s[k] == '\n') {
        ++line;
        column = 0;
      }
    throw Error(where + ": duplicate key " + quote(key) + " at byte " + std::to_string(at) +
                " (line " + std::to_string(line) + ", column " + std::to_string(column) +
                "); each key may appear once");
  }
  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
      ++i;
  }
  bool lit(const char *w) {
    size_t n = std::char_traits<char>::length(w);
    if (s.compare(i, n, w) == 0) {
      i += n;
      return true;
    }
    return false;
  }
  static void appendUtf8(std::string &out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  uint32_t hex4() {
    if (i + 4 > s.size())
      fail("truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s[i++];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= static_cast<uint32_t>(c - 'A' + 10);
      else
        fail("bad hex digit in \\u escape");
    }
    return v;
  }
  std::string str() {
    if (i >= s.size() || s[i] != '"')
      fail("expected a string");
    ++i;
    std::string out;
    while (true) {
      if (i >= s.size())
        fail("unterminated string");
      unsigned char c = static_cast<unsigned char>(s[i]);
      if (c == '"') {
        ++i;
        return out;
      }
      if (c < 0x20)
        fail("control character in string");
      if (c != '\\') {
        out += static_cast<char>(c);
        ++i;
        continue;
      }
      ++i;
      if (i >= s.size())
        fail("unterminated escape");
      char e = s[i++];
      switch (e) {
      case '"':
        out += '"';
        break;
      case '\\':
        out += '\\';
        break;
      case '/':
        out += '/';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'u': {
        uint32_t cp = hex4();
        if (cp >= 0xD800 && cp < 0xDC00) {
          if (!lit("\\u"))
            fail("unpaired surrogate in \\u escape");
          uint32_t lo = hex4();
          if (lo < 0xDC00 || lo >= 0xE000)
            fail("bad low surrogate in \\u escape");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp < 0xE000) {
          fail("unpaired surrogate in \\u escape");
        }
        appendUtf8(out, cp);
        break;
      }
      default:
        fail(std::string("bad escape \\") + e);
      }
    }
  }
  Value value() {
    ws();
    if (i >= s.size())
      fail("unexpected end");
    if (++depth > 64)
      fail("nesting too deep");
    Value v;
    char c = s[i];
    if (c == '{') {
      v.kind = Value::Kind::Object;
      ++i;
      ws();
      if (i < s.size() && s[i] == '}') {
        ++i;
      } else {
        // RFC 8259 leaves a repeated key's meaning to the reader; here it is an error, not
        // "the last one wins": each key names one setting, tensor or field.
        std::unordered_set<std::string> keys;
        while (true) {
          ws();
          size_t keyAt = i;
          std::string key = str();
          if (!keys.insert(key).second)
            duplicate(key, keyAt);
          ws();
          if (i >= s.size() || s[i] != ':')
            fail("expected ':'");
          ++i;
          Value m = value();
          v.members.emplace_back(std::move(key), std::move(m));
          ws();
          if (i < s.size() && s[i] == ',') {
            ++i;
            continue;
          }
          if (i < s.size() && s[i] == '}') {
            ++i;
            break;
          }
          fail("expected ',' or '}'");
        }
      }
    } else if (c == '[') {
      v.kind = Value::Kind::Array;
      ++i;
      ws();
      if (i < s.size() && s[i] == ']') {
        ++i;
      } else {
        while (true) {
          v.items.push_back(value());
          ws();
          if (i < s.size() && s[i] == ',') {
            ++i;
            continue;
          }
          if (i < s.size() && s[i] == ']') {
            ++i;
            break;
          }
          fail("expected ',' or ']'");
        }
      }
    } else if (c == '"') {
      v.kind = Value::Kind::String;
      v.text = str();
    } else if (lit("true")) {
      v.kind = Value::Kind::Bool;
      v.boolean = true;
    } else if (lit("false")) {
      v.kind = Value::Kind::Bool;
    } else if (lit("null")) {
      v.kind = Value::Kind::Null;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      size_t start = i;
      if (s[i] == '-')
        ++i;
      size_t digits = i;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9')
        ++i;
      if (i == digits)
        fail("bad number");
      if (i < s.size() && s[i] == '.') {
        ++i;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9')
          ++i;
      }
      if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
        ++i;
        if (i < s.size() && (s[i] == '+' || s[i] == '-'))
          ++i;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9')
          ++i;
      }
      v.kind = Value::Kind::Number;
      v.text = s.substr(start, i - start);
    } else {
      fail(std::string("unexpected character '") + c + "'");
    }
    --depth;
    return v;
  }
};

} // namespace

Value parse(const std::string &text, const std::string &where) {
  Parser p{text, where};
  Value v = p.value();
  p.ws();
  if (p.i != text.size())
    p.fail("trailing characters after the JSON value");
  return v;
}

Value parseFile(const std::string &path) {
  std::vector<uint8_t> bytes = readFileBytes(path); // names a missing file or a directory
  return parse(std::string(bytes.begin(), bytes.end()), path);
}

std::string quote(const std::string &s) {
  static const char *hex = "0123456789abcdef";
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
    case '"':
      out += "\\\"";
      break;
    case '\\':
      out += "\\\\";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\t':
      out += "\\t";
      break;
    case '\b':
      out += "\\b";
      break;
    case '\f':
      out += "\\f";
      break;
    default:
      if (c < 0x20) {
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 15];
      } else {
        out += static_cast<char>(c);
      }
    }
  }
  return out + "\"";
}

} // namespace json
} // namespace mantissa
