// A small JSON reader for the few documents the engine reads: an index's settings (SQLite meta)
// and model cards (card.json). Values are parsed into a tree; errors throw std::runtime_error.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ivcr::engine {

struct Json {
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<Json> array;
  std::map<std::string, Json> object;

  static Json parse(const std::string& text);
  // The document in a file: false when there is no such file; a malformed one throws
  // std::runtime_error naming the file.
  static bool load(const std::string& path, Json& out);
  // Lookups that fall back to a default when the key is missing or of another kind.
  const Json* find(const std::string& key) const;
  std::string str(const std::string& key, const std::string& fallback = "") const;
  double num(const std::string& key, double fallback) const;
};

}  // namespace ivcr::engine
