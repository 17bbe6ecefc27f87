#include "engine/first_stage.h"

#include <dirent.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>

#include "engine/error.h"
#include "engine/json.h"
#include "search/cpu/int4_blocks.h"

namespace ivcr::engine {
namespace {

constexpr const char* kTextOrder[] = {"concept", "speech", "subtitle", "ocr"};

std::string fmt_g(float w) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", double(w));
  return buf;
}

// A first-stage copy's files for query rows of `dim` dims, or false when its values (written
// last) are missing. `used` gets the values file before anything is mapped (see FirstStage::stage).
bool load_copy(const std::string& base, size_t dim, Copy& c, std::vector<std::string>& used) {
  used.push_back(base + ".values.npy");
  if (!file_exists(base + ".values.npy") || !file_exists(base + ".scales.npy")) return false;
  c.values = map_npy(base + ".values.npy");
  c.scales = map_npy(base + ".scales.npy", "<f4");
  if (c.values.descr != "|i1" && c.values.descr != "|u1")
    fail(Status::IndexDamaged, base + ".values.npy holds " + c.values.descr + ", expected int8 or packed int4");
  c.int4 = c.values.descr == "|u1";
  c.width = int(c.values.cols()) * (c.int4 ? 2 : 1);
  if (file_exists(base + ".basis.npy")) {
    c.basis = map_npy(base + ".basis.npy", "<f4");
    if (c.basis.cols() != size_t(c.width))  // (its rows against the query's width: Copy::project)
      fail(Status::IndexDamaged, base + ".basis.npy does not match its copy's width");
  } else if (size_t(c.width) != dim) {  // a projected copy whose basis is gone: its scores would be noise
    fail(Status::IndexDamaged, base + ".values.npy holds " + std::to_string(c.width) + " dims and no basis maps the query's " +
                                   std::to_string(dim) + " onto them (`ivcr check --repair` removes a damaged copy)");
  }
  return true;
}

// The base name ("<folder>/<stem>.<N>") of the complete generation of copy `stem` that serves a
// snapshot of `rows` rows: its own (N == rows), else the least later one, or "" when none. Rows
// are appended and never rewritten, and a grown generation keeps its predecessor's rows as they
// are, so a later generation's first `rows` rows are this snapshot's: a handle whose own
// generation the writer replaced after a commit it has not refreshed to still has a first stage.
std::string generation(const std::string& folder, const std::string& stem, int64_t rows) {
  if (file_exists(folder + "/" + stem + "." + std::to_string(rows) + ".values.npy"))
    return folder + "/" + stem + "." + std::to_string(rows);
  const std::string prefix = stem + ".", suffix = ".values.npy";
  int64_t best = -1;
  if (DIR* d = ::opendir(folder.c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name.size() <= prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) != 0 ||
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
        continue;
      const std::string n = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
      if (n.empty() || n.size() > 18 || n.find_first_not_of("0123456789") != std::string::npos) continue;
      const int64_t later = std::stoll(n);
      if (later > rows && (best < 0 || later < best)) best = later;
    }
    ::closedir(d);
  }
  return best < 0 ? "" : folder + "/" + stem + "." + std::to_string(best);
}

// Moves an int4 copy a query scans whole into resident memory in blocks of 16 rows
// (search/cpu/int4_blocks.h): its scan then reads it in order, one row a vector lane, at the rate
// a plain read of it gets (the row-major kernel took 1.1-1.4x that; docs/BENCHMARKS.md).
void make_resident_blocks(Copy& c) {
  const int64_t rows = int64_t(c.values.rows());
  const int dim = c.width;
  const uint8_t* src = c.values.as<uint8_t>();
  c.values.map = Mapping::resident(search::int4_blocks_bytes(rows, dim), [&](void* dst) {
    search::interleave_int4_rows(src, rows, dim, static_cast<uint8_t*>(dst));
  });
  c.values.data = c.values.map->data();
  c.blocked = true;
}

std::vector<uint64_t> bitset(const std::vector<uint8_t>& mask) {
  std::vector<uint64_t> bits((mask.size() + 63) / 64, 0);
  for (size_t v = 0; v < mask.size(); ++v)
    if (mask[v]) bits[v >> 6] |= uint64_t(1) << (v & 63);
  return bits;
}

}  // namespace

search::Channel Copy::channel(int64_t rows) const {
  search::Channel ch;
  ch.dtype = blocked ? search::DType::I4B16 : int4 ? search::DType::I4 : search::DType::I8;
  ch.data = values.data;
  ch.scales = scales.as<float>();
  ch.rows = rows;
  ch.dim = width;
  return ch;
}

std::vector<float> Copy::project(const float* q, size_t batch, size_t dim) const {
  if (!basis.data) return std::vector<float>(q, q + batch * dim);
  if (basis.rows() != dim) fail(Status::IndexDamaged, "a first-stage basis does not match the query's dimension");
  const float* B = basis.as<float>();
  const size_t r = size_t(width);
  std::vector<float> out(batch * r, 0.0f);
  for (size_t b = 0; b < batch; ++b)
    for (size_t i = 0; i < dim; ++i) {
      const float x = q[b * dim + i];
      const float* row = B + i * r;
      float* o = out.data() + b * r;
      for (size_t j = 0; j < r; ++j) o[j] += x * row[j];
    }
  return out;
}

FirstStage::FirstStage(std::shared_ptr<const SnapshotData> snap, std::string folder, const int64_t* offsets,
                       bool prefault)
    : snap_(std::move(snap)), folder_(std::move(folder)), offsets_(offsets), prefault_(prefault) {}

std::shared_ptr<Stage> FirstStage::stage(const std::vector<std::string>& channels, const std::string& fold_tag,
                                         const std::map<std::string, size_t>& dims) {
  std::string key;
  for (const auto& c : channels) key += c + "|";
  key += fold_tag;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = stages_.find(key);
  if (it != stages_.end() && it->second) return it->second;
  // The writer removes a generation only once a later one is complete, its values file first
  // (index/first_stage.py, folded_rows.py), and a mapped file outlives its removal. So a stage
  // whose values files all still exist once it is mapped was read whole (a part found missing
  // was missing before the removal began), and one that lost a file while it was read (a failed
  // open, or a basis gone) is looked for again, when the later generation serves it.
  for (int attempt = 0;; ++attempt) {
    std::vector<std::string> used;  // every values file the stage was read from, listed before it is mapped
    std::shared_ptr<Stage> st;
    try {
      st = load_stage(channels, fold_tag, dims, used);
    } catch (const Error&) {
      if (attempt >= kStageRetries || std::all_of(used.begin(), used.end(), file_exists)) throw;
      continue;
    }
    if (attempt < kStageRetries && !std::all_of(used.begin(), used.end(), file_exists)) continue;
    stages_[key] = st;  // null: absent, looked for again next time (Python builds copies on first use)
    return st;
  }
}

std::shared_ptr<Stage> FirstStage::load_stage(const std::vector<std::string>& channels, const std::string& fold_tag,
                                              const std::map<std::string, size_t>& dims,
                                              std::vector<std::string>& used) const {
  auto st = std::make_shared<Stage>();
  st->channels = channels;
  const std::string rows = std::to_string(snap_->rows);
  bool borrowed = false;  // a later generation's leading rows (see generation)
  for (const auto& c : channels) {
    const std::string tag = c == "text" && !fold_tag.empty() ? fold_tag : c;
    const std::string base = generation(folder_, "first." + tag, snap_->rows);
    Copy copy;
    if (base.empty() || !load_copy(base, dims.at(c), copy, used)) return nullptr;
    if (int64_t(copy.values.rows()) < snap_->rows || int64_t(copy.scales.rows()) < snap_->rows)
      fail(Status::IndexDamaged, base + ".values.npy/.scales.npy hold fewer rows than the index's " + rows +
                                     " (`ivcr check --repair` removes a damaged copy)");
    borrowed = borrowed || base != folder_ + "/first." + tag + "." + rows;
    st->copies.emplace(c, std::move(copy));
  }
  // A borrowed copy serves alone: the coarse copies and lists of its generation hold its later
  // rows too (the lists' rows permuted among them), and a refresh brings this snapshot's own.
  if (channels.size() == 1 && !borrowed) {
    const std::string tag = channels[0] == "text" && !fold_tag.empty() ? fold_tag : channels[0];
    // a coarse copy in front of a wide one: first.<tag>.coarse<N>.<rows>.*
    if (DIR* d = ::opendir(folder_.c_str())) {
      const std::string prefix = "first." + tag + ".coarse", suffix = "." + rows + ".values.npy";
      while (dirent* e = ::readdir(d)) {
        const std::string name = e->d_name;
        if (name.size() > prefix.size() + suffix.size() && name.compare(0, prefix.size(), prefix) == 0 &&
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
          auto coarse = std::make_unique<Copy>();  // (its basis maps the copy's rows onto its own)
          if (load_copy(folder_ + "/" + name.substr(0, name.size() - std::string(".values.npy").size()),
                        size_t(st->copies.at(channels[0]).width), *coarse, used))
            st->coarse = std::move(coarse);
          break;
        }
      }
      ::closedir(d);
    }
    // inverted lists over the copy: first.<tag>.lists.<rows>.*, where the build kept them
    const std::string base = folder_ + "/first." + tag + ".lists." + rows;
    if (file_exists(base + ".json") && file_exists(base + ".values.npy")) {
      used.push_back(base + ".values.npy");
      Json meta;
      const int probe = Json::load(base + ".json", meta) ? int(meta.num("probe", 0)) : 0;
      if (probe > 0) {
        auto lists = std::make_unique<Lists>();
        lists->probe = probe;
        lists->centroids = map_npy(base + ".centroids.npy", "<f4");
        lists->bounds = map_npy(base + ".bounds.npy", "<i8");
        lists->order = map_npy(base + ".order.npy", "<i8");
        lists->scales = map_npy(base + ".scales.npy", "<f4");
        lists->values = map_npy(base + ".values.npy");
        st->lists = std::move(lists);
      }
    }
  }
  // the folded rows in float16 (index/folded_rows.py), of this generation or a later one's leading rows
  if (!fold_tag.empty() && channels.size() == 1) {
    const std::string base = generation(folder_, "first." + fold_tag + ".folded", snap_->rows);
    if (!base.empty() && file_exists(base + ".norms.npy")) {
      used.push_back(base + ".values.npy");
      auto f = std::make_shared<FoldedRows>();
      f->values = map_npy(base + ".values.npy", "<f2");
      f->norms = map_npy(base + ".norms.npy", "<f4");
      if (int64_t(f->values.rows()) < snap_->rows || int64_t(f->norms.rows()) < snap_->rows ||
          f->values.shape.size() != 2 || f->norms.shape.size() != 1)
        fail(Status::IndexDamaged, base + ".values.npy/.norms.npy do not hold the index's " + rows +
                                       " rows (`ivcr check --repair` writes damaged folded rows again)");
      // Locked in memory where the process may (a query reads 3 MB of them, scattered: between
      // queries the pages went cold, and this VM's DAMON reclaim paged them out, so a text
      // turn's pre-rank took 1.5-2.3 ms instead of 0.4; docs/BENCHMARKS.md), else faulted in;
      // their norms too (read at the same rows, and before this never faulted in at all).
      if (prefault_)
        for (const Npy* part : {&f->values, &f->norms}) {
          const bool locked = part->map->lock();
          if (!locked) part->map->populate();
          (locked ? f->locked : f->unlocked) += part->map->size();
        }
      search::Channel ch;
      ch.dtype = search::DType::F16;
      ch.data = f->values.data;
      ch.rows = snap_->rows;
      ch.dim = int(f->values.cols());
      f->corpus = std::make_unique<search::CpuCorpus>(std::vector<search::Channel>{ch}, offsets_,
                                                      int64_t(snap_->videos.size()));
      st->folded = std::move(f);
    }
  }
  if (prefault_) {
    // What a query scans whole (the copies without lists, a coarse copy) is moved into memory
    // of its own on huge pages; what it reads in runs (lists, and the copies behind lists or a
    // coarse pass) is faulted in where it lies, as the channel rows are.
    if (st->lists) {
      for (auto& [_, c] : st->copies) c.values.map->populate();
      st->lists->values.map->populate();
    } else {
      for (auto& [_, c] : st->copies) c.int4 ? make_resident_blocks(c) : make_resident(c.values);
    }
    if (st->coarse) make_resident(st->coarse->values);
  }
  std::vector<search::Channel> chans;
  for (const auto& c : channels) chans.push_back(st->copies.at(c).channel(snap_->rows));
  st->corpus = std::make_unique<search::CpuCorpus>(chans, offsets_, int64_t(snap_->videos.size()));
  if (st->coarse)
    st->coarse_corpus = std::make_unique<search::CpuCorpus>(std::vector<search::Channel>{st->coarse->channel(snap_->rows)},
                                                            offsets_, int64_t(snap_->videos.size()));
  if (st->lists) {
    Lists& lists = *st->lists;
    search::Channel ch = st->copies.begin()->second.channel(snap_->rows);
    ch.dtype = st->copies.begin()->second.int4 ? search::DType::I4 : search::DType::I8;  // the lists' rows: row-major
    ch.data = lists.values.data;
    ch.scales = lists.scales.as<float>();
    lists.corpus = std::make_unique<search::CpuCorpus>(std::vector<search::Channel>{ch}, lists.bounds.as<int64_t>(),
                                                       int64_t(lists.bounds.rows()) - 1);
  }
  return st;
}

void FirstStage::locked_bytes(size_t& locked, size_t& unlocked) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [_, st] : stages_)
    if (st && st->folded) {
      locked += st->folded->locked;
      unlocked += st->folded->unlocked;
    }
}

bool FirstStage::shortlists(const Queries& q, const std::map<std::string, float>& dense_weights, int64_t k,
                            const std::vector<uint8_t>& eligible, const StageParams& p, std::vector<int64_t>& out,
                            size_t& width, std::vector<const char*>& how, Prerank& prerank) {
  auto weight = [&](const std::string& c) {
    auto it = dense_weights.find(c);
    return it == dense_weights.end() ? 0.0f : it->second;
  };
  // Fold the text channels into one when they share the query's embedding (ranking.first_stage_queries).
  std::vector<std::string> text;
  for (const char* c : kTextOrder)
    if (q.rows.count(c) && weight(c) != 0.0f) text.push_back(c);
  std::string presence;
  for (const auto& c : text)
    if (is_presence_channel(c)) {
      presence = c;
      break;
    }
  bool fold = text.size() >= 2 && !presence.empty();
  if (fold) {
    const size_t d1 = q.dims.at(presence), d = d1 - 1;
    const std::vector<float>& ref = q.rows.at(presence);
    for (const auto& c : text) {
      const std::vector<float>& r = q.rows.at(c);
      if (is_presence_channel(c)) {
        fold = fold && q.dims.at(c) == d1 && r == ref;
      } else {
        fold = fold && q.dims.at(c) == d;
        for (size_t b = 0; fold && b < q.batch; ++b)
          fold = std::equal(r.begin() + long(b * d), r.begin() + long((b + 1) * d), ref.begin() + long(b * d1));
      }
    }
  }
  std::map<std::string, std::pair<const float*, size_t>> first_q;  // channel -> rows, dim
  std::map<std::string, float> first_w;
  std::string fold_tag;
  if (fold) {
    for (const auto& [c, r] : q.rows)
      if (!is_text_channel(c)) {
        first_q[c] = {r.data(), q.dims.at(c)};
        first_w[c] = weight(c);
      }
    first_q["text"] = {q.rows.at(presence).data(), q.dims.at(presence)};
    first_w["text"] = 1.0f;
    fold_tag = "text";
    for (const auto& c : text) fold_tag += "-" + c + fmt_g(weight(c));
  } else {
    for (const auto& [c, r] : q.rows) {
      first_q[c] = {r.data(), q.dims.at(c)};
      first_w[c] = weight(c);
    }
  }
  std::vector<std::string> channels;
  for (const auto& [c, _] : first_q) channels.push_back(c);  // sorted, as Python's tuple(sorted(...))
  std::map<std::string, size_t> dims;  // each first-stage channel's query width
  for (const auto& [c, qd] : first_q) dims[c] = qd.second;
  auto st = stage(channels, fold_tag, dims);
  if (!st) return false;
  if (st->folded && fold && channels.size() == 1 &&
      size_t(q.dims.at(presence)) == st->folded->values.cols()) {  // (every other dense channel weighs 0)
    prerank.rows = st->folded;
    prerank.query = q.rows.at(presence).data();
    prerank.dim = q.dims.at(presence);
  }

  const size_t B = q.batch;
  const int64_t n_videos = int64_t(snap_->videos.size());
  const int64_t n_short = std::max(p.shortlist, k);
  width = size_t(n_short);
  out.assign(B * width, -1);
  how.assign(B, "copies");
  std::map<std::string, std::vector<float>> projected;
  for (const auto& [c, qd] : first_q) projected[c] = st->copies.at(c).project(qd.first, B, qd.second);
  size_t n_eligible = 0;
  for (uint8_t e : eligible) n_eligible += e;
  std::vector<size_t> todo;
  if (st->lists && n_short == p.shortlist && double(n_eligible) >= p.lists_min_eligible * double(eligible.size())) {
    // inverted lists: each row reads its `probe` nearest lists only (inverted_lists.InvertedLists.shortlist)
    const Lists& L = *st->lists;
    const auto& [c, rows] = *projected.begin();
    const size_t r = size_t(st->copies.at(c).width), n_lists = L.centroids.rows();
    const int64_t clips = std::min<int64_t>(n_short * p.clips_per_video, snap_->rows);
    std::vector<float> cs(n_lists), sc(static_cast<size_t>(clips));
    std::vector<int64_t> ids(static_cast<size_t>(clips));
    for (size_t b = 0; b < B; ++b) {
      const float* qr = rows.data() + b * r;
      for (size_t l = 0; l < n_lists; ++l) {
        const float* cen = L.centroids.as<float>() + l * r;
        float s = 0.0f;
        for (size_t j = 0; j < r; ++j) s += cen[j] * qr[j];
        cs[l] = s;
      }
      std::vector<size_t> near(n_lists);
      std::iota(near.begin(), near.end(), size_t(0));
      const size_t probe = std::min(size_t(L.probe), n_lists);
      std::nth_element(near.begin(), near.begin() + long(probe) - 1, near.end(),
                       [&](size_t a, size_t z) { return cs[a] != cs[z] ? cs[a] > cs[z] : a < z; });
      std::vector<uint64_t> bits((n_lists + 63) / 64, 0);
      for (size_t i = 0; i < probe; ++i) bits[near[i] >> 6] |= uint64_t(1) << (near[i] & 63);
      search::VideoFilter filter;
      filter.bits = bits.data();
      filter.n_words = int64_t(bits.size());
      filter.allow = true;
      search::QueryBatch qb;
      qb.per_channel = {qr};
      qb.weights = {first_w.at(c)};
      qb.batch = 1;
      L.corpus->topk_clips(qb, clips, filter, sc.data(), ids.data());
      std::vector<int64_t> shortlist;
      std::vector<uint8_t> seen;
      for (int64_t id : ids) {
        if (id < 0) continue;
        const int64_t row = L.order.as<int64_t>()[id];
        const int64_t v = int64_t(std::upper_bound(offsets_, offsets_ + n_videos + 1, row) - offsets_) - 1;
        if (v < 0 || v >= n_videos || !eligible[size_t(v)]) continue;
        if (seen.empty()) seen.assign(size_t(n_videos), 0);
        if (seen[size_t(v)]) continue;
        seen[size_t(v)] = 1;
        shortlist.push_back(v);
        if (int64_t(shortlist.size()) == n_short) break;
      }
      if (int64_t(shortlist.size()) >= k) {
        std::copy(shortlist.begin(), shortlist.end(), out.begin() + long(b * width));
        how[b] = "lists";
      } else {
        todo.push_back(b);  // the probed lists hold fewer than k eligible videos: the scans below
      }
    }
  } else {
    for (size_t b = 0; b < B; ++b) todo.push_back(b);
  }
  if (todo.empty()) return true;
  // the rows left: a whole scan of the copies, or of a coarse copy first where the copy is wide
  search::QueryBatch qb;
  std::map<std::string, std::vector<float>> rest;
  for (const auto& c : channels) {
    const size_t r = size_t(st->copies.at(c).width);
    std::vector<float>& v = rest[c];
    for (size_t b : todo) v.insert(v.end(), projected[c].begin() + long(b * r), projected[c].begin() + long((b + 1) * r));
    qb.per_channel.push_back(v.data());
    qb.weights.push_back(first_w.at(c));
  }
  qb.batch = int64_t(todo.size());
  const bool all = n_eligible == eligible.size();
  std::vector<uint64_t> bits;
  search::VideoFilter filter;
  if (!all) {
    bits = bitset(eligible);
    filter.bits = bits.data();
    filter.n_words = int64_t(bits.size());
    filter.allow = true;
  }
  const int64_t k_out = std::min(n_short, n_videos);
  std::vector<float> sc(todo.size() * size_t(k_out));
  std::vector<int64_t> ids(todo.size() * size_t(k_out));
  if (st->coarse && int64_t(n_eligible) > 4 * p.coarse_shortlist) {
    const std::string& c = channels[0];
    const size_t r = size_t(st->copies.at(c).width);
    std::vector<float> cq = st->coarse->project(rest[c].data(), todo.size(), r);
    search::QueryBatch cb;
    cb.per_channel = {cq.data()};
    cb.weights = {first_w.at(c)};
    cb.batch = qb.batch;
    const int64_t wide = std::min(std::max(p.coarse_shortlist, n_short), n_videos);
    std::vector<float> ws(todo.size() * size_t(wide));
    std::vector<int64_t> wi(todo.size() * size_t(wide));
    st->coarse_corpus->topk_videos(cb, wide, search::Agg::Max, 0.1f, filter, ws.data(), wi.data());
    st->corpus->topk_videos_among(qb, k_out, wi.data(), wide, sc.data(), ids.data());
    for (size_t b : todo) how[b] = "coarse";
  } else {
    st->corpus->topk_videos(qb, k_out, search::Agg::Max, 0.1f, filter, sc.data(), ids.data());
  }
  for (size_t t = 0; t < todo.size(); ++t)
    std::copy(ids.begin() + long(t * size_t(k_out)), ids.begin() + long((t + 1) * size_t(k_out)),
              out.begin() + long(todo[t] * width));
  return true;
}

}  // namespace ivcr::engine
