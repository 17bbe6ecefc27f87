// The index folder as the engine reads it: SQLite metadata (videos, channels, timed lines, clip
// concepts, settings) and the memory-mapped row files, exactly as ivcr_engine/index/store.py
// writes them (Python ingest stays the writer). A Snapshot is one committed state read in one
// transaction and mapped up to its committed row counts (never by file size), so rows an ingest
// appends meanwhile stay invisible until their commit.
#pragma once
#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/json.h"

namespace ivcr::engine {

// A read-only mapping of a file's first `bytes` bytes (unmapped on destruction).
class Mapping {
 public:
  Mapping(const std::string& path, size_t bytes);
  // Fault every page in now (MADV_POPULATE_READ; a read-ahead hint where the kernel lacks it) and
  // read each once, so later random reads cost no page faults: for a long-running server.
  void populate() const;
  // Faults every page in and locks it in memory (mlock) until unmapped, so no reclaim pages it
  // out; false where the process may not lock this much (RLIMIT_MEMLOCK), nothing locked then.
  bool lock() const;
  // `bytes` of anonymous memory backed by huge pages where the kernel gives them, written once by
  // `fill` and read-only after: a whole-scanned copy read through 2 MB pages instead of the page
  // cache's 4 KB ones, which took a sixth off the int4 text copy's scan (first_stage.cpp).
  static std::shared_ptr<Mapping> resident(size_t bytes, const std::function<void(void*)>& fill);
  ~Mapping();
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  const void* data() const { return data_; }
  size_t size() const { return bytes_; }

 private:
  Mapping() = default;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

struct ChannelRows {
  std::string name;
  int dim = 0;
  bool f16 = true;  // float16 rows (the store's default), else float32
  std::string model, model_sha256;
  std::shared_ptr<Mapping> map;
  const void* data() const { return map ? map->data() : nullptr; }
  float at(int64_t row, int j) const;  // one value as float32
};

struct Video {
  int64_t id = 0;
  std::string id_text, path;
  double duration = 0.0;
  int64_t first_row = 0, n_clips = 0;
  bool removed = false;
};

struct Line {
  std::string source, text;
  double start = 0.0, end = 0.0;
  std::vector<float> vec;  // empty: no vector (stored before lines had vectors, or not usable)
  int64_t rowid = 0;
};

struct SnapshotData {
  int64_t rows = 0;
  std::vector<Video> videos;  // by first_row; a ref is a position here
  std::map<std::string, ChannelRows> channels;
  int64_t data_version = 0;
  Json settings;
  std::shared_ptr<Mapping> times_map;  // rows x 2 float64
  const double* times() const { return static_cast<const double*>(times_map ? times_map->data() : nullptr); }
  // What a reader's mapping depends on (store.Snapshot.key without the aliases).
  std::string key;
};

// One SQLite connection to meta.sqlite, every use serialised by its own mutex.
class Store {
 public:
  explicit Store(const std::string& root);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& root() const { return root_; }
  int64_t data_version();
  std::shared_ptr<SnapshotData> snapshot(bool prefault = false);
  // A video's timed lines in time order (with vectors when `vectors`, float16 in the store).
  std::vector<Line> lines(int64_t video_id, bool vectors);
  // The top_concepts text of each clip row ("" where none).
  std::vector<std::string> concepts(const std::vector<int64_t>& rows);

  // The lexical table (index/store_lexical.py), read as lexical.py reads it: whether it exists
  // and was built under the segmentation `version`; how many lines the index holds; how many
  // lines match an FTS5 query, counted up to `cap`; up to `limit` of them as (line rowid, video
  // id), by rowid. Like Python's, these read the latest commit, not a snapshot.
  bool lexical_ready(const std::string& version);
  int64_t line_total();
  int64_t count_matching(const std::string& match, int64_t cap);
  std::vector<std::pair<int64_t, int64_t>> lines_with(const std::string& match, int64_t limit);

 private:
  std::string meta(const std::string& key);
  void exec(const char* sql);
  [[noreturn]] void damaged(const std::string& what) const;

  std::string root_;
  sqlite3* db_ = nullptr;
  bool line_vectors_ = false;
  // The lexical lookups' statements, prepared once (a text query runs several of each)
  sqlite3_stmt* count_stmt_ = nullptr;
  sqlite3_stmt* lines_stmt_ = nullptr;
  std::mutex mu_;
};

float half_to_float(uint16_t h);

}  // namespace ivcr::engine
