// How a text model's unit query vectors become the rows an index scores with (one definition, for
// the Python path's ONNX vectors and the native encoder's alike):
//
//   c    = the query's own chance: the model's chance similarity (its card's chance_similarity)
//          moved by how far the query's cosine to the model's mean passage (the frame model's
//          ImageNet class names in this text space) lies from a typical query's, clipped to
//          [-0.5, 0.95] (without the class texts: the model's chance alone);
//   rows = u / (1 - c) for the concept channel (scores calibrated to (s - c) / (1 - c)), and
//          [u / (1 - c), -TEXT_BASELINE - c / (1 - c)] for the presence channels (speech,
//          subtitle, ocr), whose last dimension only clips with text carry.
#pragma once
#include <string>
#include <vector>

#include "engine/query.h"

namespace ivcr::engine {

class QueryShape {
 public:
  // The text model's card (chance) and, where present, the frame model's class texts in it (an
  // empty frame model: none, as for an index whose settings name none).
  QueryShape(const std::string& model_dir, const std::string& text_model, const std::string& frame_model);
  float chance() const { return chance_; }
  // Rows of every text channel among `channels` for n unit vectors of `dim` dims.
  Queries rows(const float* unit, size_t n, size_t dim, const std::vector<std::string>& channels) const;

 private:
  float chance_ = 0.0f;
  std::vector<float> mean_;  // empty: no class texts
};

}  // namespace ivcr::engine
