// .npy files mapped read-only (the first-stage copies and inverted lists Python writes beside an
// index's vectors): the header parsed, the data referenced in place.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/store.h"

namespace ivcr::engine {

struct Npy {
  std::shared_ptr<Mapping> map;
  const void* data = nullptr;
  std::string descr;          // e.g. "<f4", "|i1", "|u1", "<i8"
  std::vector<size_t> shape;
  size_t rows() const { return shape.empty() ? 0 : shape[0]; }
  size_t cols() const { return shape.size() > 1 ? shape[1] : 1; }
  template <class T>
  const T* as() const { return static_cast<const T*>(data); }
};

// Maps `path`; throws IndexDamaged when it is not a C-ordered .npy of `descr` (any descr when empty).
Npy map_npy(const std::string& path, const std::string& descr = "");
bool file_exists(const std::string& path);
// Moves `n`'s data into resident memory (Mapping::resident): for the copies a search scans whole.
void make_resident(Npy& n);

}  // namespace ivcr::engine
