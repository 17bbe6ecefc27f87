// UTF-8 to code points and back (the lexical channel's words, JSON's \u escapes).
#pragma once
#include <string>

namespace ivcr::engine {

void append_utf8(std::string& out, char32_t cp);
std::string utf8_encode(const std::u32string& s);
std::u32string utf8_decode(const std::string& s);  // throws InvalidArgument on malformed UTF-8

}  // namespace ivcr::engine
