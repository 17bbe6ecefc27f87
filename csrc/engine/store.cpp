#include "engine/store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "engine/error.h"

namespace ivcr::engine {
namespace {

constexpr int kSchemaVersion = 2;  // store.py SCHEMA_VERSION

// A prepared statement, finalised on scope exit; or one kept in `cache` (prepared on first use)
// and only reset on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK)
      fail(Status::IndexDamaged, std::string("cannot read the index metadata: ") + sqlite3_errmsg(db));
  }
  Stmt(sqlite3* db, const char* sql, sqlite3_stmt*& cache) : kept_(true) {
    if (!cache && sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &cache, nullptr) != SQLITE_OK)
      fail(Status::IndexDamaged, std::string("cannot read the index metadata: ") + sqlite3_errmsg(db));
    s_ = cache;
  }
  ~Stmt() {
    if (kept_) reset();
    else sqlite3_finalize(s_);
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool step() {
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail(rc == SQLITE_NOMEM ? Status::OutOfMemory : Status::IndexDamaged,
         std::string("reading the index metadata failed: ") + sqlite3_errmsg(sqlite3_db_handle(s_)));
  }
  int64_t i64(int c) const { return sqlite3_column_int64(s_, c); }
  double f64(int c) const { return sqlite3_column_double(s_, c); }
  bool null(int c) const { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
  std::string text(int c) const {
    const unsigned char* t = sqlite3_column_text(s_, c);
    return t ? std::string(reinterpret_cast<const char*>(t), size_t(sqlite3_column_bytes(s_, c))) : std::string();
  }
  const void* blob(int c, int* n) const {
    const void* p = sqlite3_column_blob(s_, c);
    *n = sqlite3_column_bytes(s_, c);
    return p;
  }
  void reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  void bind(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
  void bind(int i, const std::string& v) { sqlite3_bind_text(s_, i, v.c_str(), int(v.size()), SQLITE_TRANSIENT); }

 private:
  sqlite3_stmt* s_ = nullptr;
  bool kept_ = false;
};

bool is_file(const std::string& path, off_t* size) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  *size = st.st_size;
  return true;
}

}  // namespace

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while (!(man & 0x400u)) {
        man <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((man & 0x3FFu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float ChannelRows::at(int64_t row, int j) const {
  if (f16) return half_to_float(static_cast<const uint16_t*>(data())[row * dim + j]);
  return static_cast<const float*>(data())[row * dim + j];
}

Mapping::Mapping(const std::string& path, size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(Status::IndexDamaged, "cannot open " + path + ": " + std::strerror(errno));
  data_ = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (data_ == MAP_FAILED) {
    data_ = nullptr;
    fail(errno == ENOMEM ? Status::OutOfMemory : Status::IndexDamaged,
         "cannot map " + path + ": " + std::strerror(errno));
  }
}

namespace {

// One read a page, after the kernel has brought the pages in. On this box (a Firecracker VM) the
// first turns after an open still read slowly what MADV_POPULATE_READ or mlock had brought in: a
// text turn's pre-rank (5,000 scattered pages of the folded rows) took 1.3-3.9 ms instead of 0.4,
// the exact stage 0.6-1.5 instead of 0.15, falling over tens of turns; with every page read once
// here, 0.44 and 0.16 from the first turn (docs/BENCHMARKS.md). Why the kernel's population was
// not enough is not known (a standalone mlock of the same file showed no slow first reads); the
// reads cost ~10 ms a GB.
void touch_pages(const void* data, size_t bytes) {
  const volatile unsigned char* p = static_cast<const volatile unsigned char*>(data);
  unsigned char acc = 0;
  for (size_t o = 0; o < bytes; o += 4096) acc ^= p[o];
  (void)acc;
}

}  // namespace

void Mapping::populate() const {
  if (!data_) return;
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
  if (::madvise(data_, bytes_, MADV_POPULATE_READ) != 0) ::madvise(data_, bytes_, MADV_WILLNEED);
  touch_pages(data_, bytes_);
}

bool Mapping::lock() const {
  if (!data_) return true;
  if (::mlock(data_, bytes_) != 0) return false;
  touch_pages(data_, bytes_);
  return true;
}

std::shared_ptr<Mapping> Mapping::resident(size_t bytes, const std::function<void(void*)>& fill) {
  std::shared_ptr<Mapping> m(new Mapping());
  if (bytes == 0) return m;
  constexpr size_t kHuge = size_t(2) << 20;
  const size_t want = (bytes + kHuge - 1) / kHuge * kHuge;
  // over-allocated by one huge page, then trimmed to a 2 MB-aligned run (the kernel backs only
  // aligned runs with huge pages)
  void* raw = ::mmap(nullptr, want + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) fail(Status::OutOfMemory, std::string("cannot allocate a resident copy: ") + std::strerror(errno));
  const uintptr_t base = reinterpret_cast<uintptr_t>(raw), aligned = (base + kHuge - 1) / kHuge * kHuge;
  if (aligned > base) ::munmap(raw, aligned - base);
  if (base + kHuge > aligned) ::munmap(reinterpret_cast<void*>(aligned + want), base + kHuge - aligned);
  m->data_ = reinterpret_cast<void*>(aligned);
  m->bytes_ = want;
#ifdef MADV_HUGEPAGE
  ::madvise(m->data_, want, MADV_HUGEPAGE);  // a hint: without huge pages the copy still works
#endif
  fill(m->data_);
  ::mprotect(m->data_, want, PROT_READ);
  return m;
}

Mapping::~Mapping() {
  if (data_) ::munmap(data_, bytes_);
}

Store::Store(const std::string& root) : root_(root) {
  off_t size = 0;
  const std::string path = root + "/meta.sqlite";
  if (!is_file(path, &size))
    fail(Status::NotFound, "no index at " + root + " (meta.sqlite missing); build one with `ivcr index`");
  // Read-only: Python ingest is the one writer. WAL lets this reader see each commit whole.
  int rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    fail(Status::IndexDamaged, "cannot open " + path + ": " + msg);
  }
  sqlite3_busy_timeout(db_, 5000);
  // Pages read in place from the page cache instead of copied by a pread each: a text query's
  // lexical lookups read a few dozen FTS pages (0.86-1.05 -> 0.74-0.76 ms p50 in bench_dialogue's
  // turns at 1M clips here). SQLite caps it at its compile-time limit (2 GB on Debian); the rest of
  // a larger file is read as before. The writer never shrinks the file (no VACUUM), which a mapped
  // reader could not survive.
  sqlite3_exec(db_, "PRAGMA mmap_size=2147418112", nullptr, nullptr, nullptr);
  try {
    std::string version = meta("schema_version");
    if (version.empty() || std::atoi(version.c_str()) != kSchemaVersion)
      fail(Status::IndexDamaged, "index " + root + " has schema version '" + version + "'; this engine reads " +
                                     std::to_string(kSchemaVersion));
    Stmt cols(db_, "PRAGMA table_info(texts)");
    while (cols.step())
      if (cols.text(1) == "vec") line_vectors_ = true;
  } catch (...) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

Store::~Store() {
  sqlite3_finalize(count_stmt_);
  sqlite3_finalize(lines_stmt_);
  sqlite3_close(db_);
}

void Store::damaged(const std::string& what) const {
  fail(Status::IndexDamaged,
       "index " + root_ + " is damaged: " + what + "; run `ivcr check --index " + root_ + " --repair`");
}

void Store::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    fail(Status::IndexDamaged, "index " + root_ + ": " + msg);
  }
}

std::string Store::meta(const std::string& key) {
  Stmt s(db_, "SELECT value FROM meta WHERE key = ?");
  s.bind(1, key);
  return s.step() ? s.text(0) : std::string();
}

int64_t Store::data_version() {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, "PRAGMA data_version");
  return s.step() ? s.i64(0) : 0;
}

std::shared_ptr<SnapshotData> Store::snapshot(bool prefault) {
  auto snap = std::make_shared<SnapshotData>();
  struct Spec {
    std::string name, dtype, model, sha;
    int dim;
    int64_t rows;
  };
  std::vector<Spec> specs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    exec("BEGIN");
    try {
      if (!meta("rebuilding_text").empty())
        fail(Status::IndexDamaged, "index " + root_ + ": a text rebuild was interrupted; run `ivcr index --index " +
                                       root_ + " --rebuild-text` again");
      {
        Stmt s(db_, "PRAGMA data_version");
        snap->data_version = s.step() ? s.i64(0) : 0;
      }
      std::string settings = meta("settings");
      snap->settings = settings.empty() ? Json::parse("{}") : Json::parse(settings);
      Stmt v(db_, "SELECT id, path, duration, first_row, n_clips, removed FROM videos ORDER BY first_row");
      while (v.step()) {
        Video video;
        video.id = v.i64(0);
        video.id_text = std::to_string(video.id);
        video.path = v.text(1);
        video.duration = v.f64(2);
        video.first_row = v.i64(3);
        video.n_clips = v.i64(4);
        video.removed = v.i64(5) != 0;
        snap->videos.push_back(std::move(video));
      }
      Stmt c(db_, "SELECT name, dim, dtype, model, model_sha256, rows FROM channels ORDER BY name");
      while (c.step()) specs.push_back({c.text(0), c.text(2), c.text(3), c.text(4), int(c.i64(1)), c.i64(5)});
    } catch (...) {
      sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
      throw;
    }
    exec("COMMIT");
  }
  int64_t rows = specs.empty() ? 0 : specs[0].rows;
  for (const Spec& s : specs)
    if (s.rows != rows) damaged("channels disagree on the committed row count");
  if (!snap->videos.empty()) {
    const Video& last = snap->videos.back();
    if (last.first_row + last.n_clips != rows)
      damaged("the videos cover " + std::to_string(last.first_row + last.n_clips) + " rows but " +
              std::to_string(rows) + " are committed");
  }
  snap->rows = rows;
  auto map_rows = [&](const std::string& path, size_t row_bytes) -> std::shared_ptr<Mapping> {
    if (rows == 0) return nullptr;
    const size_t need = size_t(rows) * row_bytes;
    off_t have = -1;
    if (!is_file(path, &have)) damaged(path + " is missing, but its " + std::to_string(rows) + " committed rows need " +
                                       std::to_string(need) + " bytes");
    if (size_t(have) < need)
      damaged(path + " holds " + std::to_string(have) + " bytes, but its " + std::to_string(rows) +
              " committed rows need " + std::to_string(need) + " bytes");
    return std::make_shared<Mapping>(path, need);
  };
  snap->key = std::to_string(rows);
  for (const Spec& s : specs) {
    if (s.dtype != "float16" && s.dtype != "float32")
      fail(Status::Unsupported, "channel '" + s.name + "' holds " + s.dtype + " rows; the engine reads float16 and float32");
    if (s.dim <= 0) damaged("channel '" + s.name + "' has dimension " + std::to_string(s.dim));
    ChannelRows ch;
    ch.name = s.name;
    ch.dim = s.dim;
    ch.f16 = s.dtype == "float16";
    ch.model = s.model;
    ch.model_sha256 = s.sha;
    ch.map = map_rows(root_ + "/vectors/" + s.name + ".bin", size_t(s.dim) * (ch.f16 ? 2 : 4));
    snap->key += "|" + s.name + ":" + std::to_string(s.dim) + ":" + s.model + ":" + s.sha;
    snap->channels.emplace(s.name, std::move(ch));
  }
  snap->times_map = map_rows(root_ + "/vectors/clip_times.f8", 16);
  if (prefault) {
    for (auto& [_, ch] : snap->channels)
      if (ch.map) ch.map->populate();
    if (snap->times_map) snap->times_map->populate();
  }
  for (const Video& v : snap->videos)
    snap->key += "|" + v.id_text + ":" + v.path + ":" + (v.removed ? "1" : "0");
  return snap;
}

std::vector<Line> Store::lines(int64_t video_id, bool vectors) {
  std::lock_guard<std::mutex> lock(mu_);
  const bool vec = vectors && line_vectors_;
  Stmt s(db_, vec ? "SELECT source, t_start, t_end, text, rowid, vec FROM texts WHERE video_id = ? ORDER BY t_start, rowid"
                  : "SELECT source, t_start, t_end, text, rowid FROM texts WHERE video_id = ? ORDER BY t_start, rowid");
  s.bind(1, video_id);
  std::vector<Line> out;
  while (s.step()) {
    Line line;
    line.source = s.text(0);
    line.start = s.f64(1);
    line.end = s.f64(2);
    line.text = s.text(3);
    line.rowid = s.i64(4);
    if (vec && !s.null(5)) {
      int n = 0;
      const auto* h = static_cast<const uint16_t*>(s.blob(5, &n));
      line.vec.resize(size_t(n) / 2);
      for (size_t j = 0; j < line.vec.size(); ++j) {
        uint16_t x;
        std::memcpy(&x, h + j, 2);
        line.vec[j] = half_to_float(x);
      }
    }
    out.push_back(std::move(line));
  }
  return out;
}

std::vector<std::string> Store::concepts(const std::vector<int64_t>& rows) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out(rows.size());
  Stmt s(db_, "SELECT top_concepts FROM clips WHERE row = ?");  // by primary key: one seek a row
  for (size_t i = 0; i < rows.size(); ++i) {
    s.reset();
    s.bind(1, rows[i]);
    if (s.step() && !s.null(0)) out[i] = s.text(0);
  }
  return out;
}

bool Store::lexical_ready(const std::string& version) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt t(db_, "SELECT 1 FROM sqlite_master WHERE name = 'lines_fts'");
  return t.step() && meta("lexical_version") == version;
}

int64_t Store::line_total() {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, "SELECT count(*) FROM texts");
  return s.step() ? s.i64(0) : 0;
}

int64_t Store::count_matching(const std::string& match, int64_t cap) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, "SELECT count(*) FROM (SELECT 1 FROM lines_fts WHERE lines_fts MATCH ? LIMIT ?)", count_stmt_);
  s.bind(1, match);
  s.bind(2, cap);
  return s.step() ? s.i64(0) : 0;
}

std::vector<std::pair<int64_t, int64_t>> Store::lines_with(const std::string& match, int64_t limit) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, "SELECT f.rowid, t.video_id FROM lines_fts f JOIN texts t ON t.rowid = f.rowid "
              "WHERE lines_fts MATCH ? LIMIT ?",
         lines_stmt_);
  s.bind(1, match);
  s.bind(2, limit);
  std::vector<std::pair<int64_t, int64_t>> out;
  while (s.step()) out.emplace_back(s.i64(0), s.i64(1));
  return out;
}

}  // namespace ivcr::engine
