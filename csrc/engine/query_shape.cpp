#include "engine/query_shape.h"


#include <algorithm>

#include "engine/error.h"
#include "engine/json.h"
#include "engine/text_encoder.h"

namespace ivcr::engine {
namespace {

bool read_json(const std::string& path, Json& out) {
  try {
    return Json::load(path, out);
  } catch (const std::exception& e) {
    fail(Status::NotFound, std::string(e.what()) + "; run `ivcr models prepare` again");
  }
}

}  // namespace

QueryShape::QueryShape(const std::string& model_dir, const std::string& text_model, const std::string& frame_model) {
  Json card;
  if (read_json(model_dir + "/" + text_model + "/card.json", card)) chance_ = float(card.num("chance_similarity", 0.0));
  Json frame;
  if (frame_model.empty() || !read_json(model_dir + "/" + frame_model + "/card.json", frame)) return;
  const Json* texts = frame.find("class_text");
  const std::string name = texts ? texts->str(text_model) : "";
  if (name.empty()) return;
  size_t r = 0, c = 0;
  std::vector<float> all = read_npy(model_dir + "/" + frame_model + "/" + name, &r, &c);
  std::vector<double> sum(c, 0.0);
  for (size_t i = 0; i < r; ++i)
    for (size_t j = 0; j < c; ++j) sum[j] += all[i * c + j];
  mean_.resize(c);
  for (size_t j = 0; j < c; ++j) mean_[j] = float(sum[j] / double(r));
}

Queries QueryShape::rows(const float* unit, size_t n, size_t dim, const std::vector<std::string>& channels) const {
  Queries q(n);
  const bool mean = mean_.size() == dim;
  float mm = 0.0f;
  for (float x : mean_) mm += x * x;
  std::vector<float> plain(n * dim), presence(n * (dim + 1));
  for (size_t i = 0; i < n; ++i) {
    const float* u = unit + i * dim;
    float c = chance_;
    if (mean) {
      float dot = 0.0f;
      for (size_t j = 0; j < dim; ++j) dot += u[j] * mean_[j];
      c = std::clamp(chance_ + (dot - mm), -0.5f, 0.95f);
    }
    const float scale = 1.0f - c;
    for (size_t j = 0; j < dim; ++j) {
      plain[i * dim + j] = u[j] / scale;
      presence[i * (dim + 1) + j] = plain[i * dim + j];
    }
    presence[i * (dim + 1) + dim] = -kTextBaseline - c / scale;
  }
  for (const std::string& c : channels) {
    if (!is_text_channel(c)) continue;
    const bool p = is_presence_channel(c);
    q.rows[c] = p ? presence : plain;
    q.dims[c] = p ? dim + 1 : dim;
  }
  return q;
}

}  // namespace ivcr::engine
