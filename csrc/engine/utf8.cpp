#include "engine/utf8.h"

#include "engine/error.h"

namespace ivcr::engine {

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += char(c);
  } else if (c < 0x800) {
    out += char(0xC0 | (c >> 6));
    out += char(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += char(0xE0 | (c >> 12));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  } else {
    out += char(0xF0 | (c >> 18));
    out += char(0x80 | ((c >> 12) & 0x3F));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  }
}

std::string utf8_encode(const std::u32string& s) {
  std::string out;
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

std::u32string utf8_decode(const std::string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
    if (n < 0 || (n > 0 && i + size_t(n) >= s.size())) fail(Status::InvalidArgument, "a query is not valid UTF-8");
    char32_t cp = n == 0 ? c : c & (0x3F >> n);
    for (int j = 1; j <= n; ++j) {
      const unsigned char d = static_cast<unsigned char>(s[i + size_t(j)]);
      if ((d >> 6) != 2) fail(Status::InvalidArgument, "a query is not valid UTF-8");
      cp = (cp << 6) | (d & 0x3F);
    }
    static constexpr char32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      fail(Status::InvalidArgument, "a query is not valid UTF-8");
    out.push_back(cp);
    i += size_t(n) + 1;
  }
  return out;
}

}  // namespace ivcr::engine
