// What the C ABI costs over the C++ call it wraps, measured from a C/C++ host with no Python in
// the process: the same engine opened twice over one index folder, once through include/ivcr.h
// (an ivcr_index handle) and once as the C++ class the ABI wraps (engine::Index), then the same
// work asked of both, the two interleaved call by call (which goes first alternating), so the
// machine's drift falls on both.
//
//   ivcr_abi_bench INDEX_DIR [REPS]  ->  one JSON object per case on stdout (ns a call, p50)
//
// Cases:
//   cross      a call that does nothing but cross: ivcr_index_live_count / View::live_count
//   rank       an exact ranking among 8 candidate videos (k=10, no moments or evidence), the
//              query and options objects built once (a host that reuses them)
//   rank_built the same with the query and options objects built and freed every call
// Built by benchmarks/bench_engine.py (cmake target ivcr_abi_bench, engine-only build).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/index.h"
#include "ivcr.h"

namespace {

using Clock = std::chrono::steady_clock;
using ivcr::engine::Index;

double p50(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + long(v.size() / 2), v.end());
  return v[v.size() / 2];
}

void check(ivcr_status s, const char* what) {
  if (s != IVCR_OK) {
    std::fprintf(stderr, "%s: %s\n", what, ivcr_last_error());
    std::exit(1);
  }
}

// Times `inner` calls of a(), then as many of b(), reps times in turn: p50 ns a call of each
// (inner > 1 where a call is shorter than the clock's own cost, ~50 ns here).
template <class A, class B>
void pair(const char* name, int reps, int inner, const A& a, const B& b) {
  std::vector<double> ta, tb;
  for (int i = 0; i < reps / 10 + 1; ++i) (a(), b());  // warm
  const auto timed = [inner](const auto& f) {
    const auto t0 = Clock::now();
    for (int j = 0; j < inner; ++j) f();
    return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / inner;
  };
  for (int i = 0; i < reps; ++i) {  // which goes first alternates: neither inherits the other's cache
    if (i % 2) {
      ta.push_back(timed(a));
      tb.push_back(timed(b));
    } else {
      tb.push_back(timed(b));
      ta.push_back(timed(a));
    }
  }
  const double ca = p50(ta), cb = p50(tb);
  std::printf("{\"case\": \"%s\", \"c_abi_ns\": %.2f, \"cpp_ns\": %.2f, \"overhead_ns\": %.2f}\n", name, ca, cb, ca - cb);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s INDEX_DIR [REPS]\n", argv[0]);
    return 2;
  }
  const char* path = argv[1];
  const int reps = argc > 2 ? std::atoi(argv[2]) : 20000;
  ivcr_index* h = nullptr;
  check(ivcr_index_open(path, nullptr, &h), "ivcr_index_open");
  Index cpp(path, ivcr::engine::OpenOptions{});

  // the query: a clip's own row of the first channel the index has (a "something like this" row)
  std::string channel;
  for (const char* c : {"visual", "speech", "concept", "subtitle"})
    if (ivcr_index_channel_dim(h, c) > 0) {
      channel = c;
      break;
    }
  if (channel.empty()) {
    std::fprintf(stderr, "the index has none of the channels this benchmark asks\n");
    return 1;
  }
  const int dim = ivcr_index_channel_dim(h, channel.c_str());
  std::vector<float> row(static_cast<size_t>(dim));
  check(ivcr_moment_vector(h, 0, 0.0, 1e30, channel.c_str(), row.data(), size_t(dim)), "ivcr_moment_vector");
  const size_t n_videos = ivcr_index_video_count(h);
  std::vector<int64_t> cand;
  for (int64_t v = 0; v < 8 && size_t(v) < n_videos; ++v) cand.push_back(int64_t(v * (n_videos / 8)));

  auto c_objects = [&](ivcr_queries** q, ivcr_search_options** o) {
    check(ivcr_queries_new(1, q), "ivcr_queries_new");
    check(ivcr_queries_set_channel(*q, channel.c_str(), row.data(), size_t(dim)), "ivcr_queries_set_channel");
    check(ivcr_search_options_new(o), "ivcr_search_options_new");
    check(ivcr_search_options_set_weight(*o, channel.c_str(), 1.0f), "set_weight");
    check(ivcr_search_options_set_candidates(*o, cand.data(), 1, cand.size()), "set_candidates");
    check(ivcr_search_options_set_moments(*o, 0), "set_moments");
    check(ivcr_search_options_set_evidence(*o, 0), "set_evidence");
  };
  auto cpp_objects = [&](ivcr::engine::Queries& q, ivcr::engine::SearchOptions& o) {
    q = ivcr::engine::Queries(1);
    q.rows[channel] = row;
    q.dims[channel] = size_t(dim);
    o.weights[channel] = 1.0f;
    o.candidates = cand;
    o.candidate_rows = 1;
    o.candidate_width = cand.size();
    o.per_video = 0;
    o.evidence = false;
  };
  volatile double sink = 0;
  auto c_rank = [&](ivcr_queries* q, ivcr_search_options* o) {
    ivcr_results* r = nullptr;
    check(ivcr_search_vectors(h, q, 10, o, &r), "ivcr_search_vectors");
    ivcr_hit hit;
    for (size_t i = 0; i < ivcr_results_count(r); ++i)
      if (ivcr_results_hit(r, i, &hit) == IVCR_OK) sink = sink + hit.score;
    ivcr_results_free(r);
  };
  auto cpp_rank = [&](const ivcr::engine::Queries& q, const ivcr::engine::SearchOptions& o) {
    std::vector<ivcr::engine::Results> r = cpp.search(q, 10, o);
    for (const auto& hit : r[0].hits) sink = sink + hit.score;
  };

  pair("cross", reps / 10, 1000, [&] { sink = sink + double(ivcr_index_live_count(h)); },
       [&] { sink = sink + double(cpp.view()->live_count); });

  ivcr_queries* cq = nullptr;
  ivcr_search_options* co = nullptr;
  c_objects(&cq, &co);
  ivcr::engine::Queries q;
  ivcr::engine::SearchOptions o;
  cpp_objects(q, o);
  pair("rank", reps / 10, 1, [&] { c_rank(cq, co); }, [&] { cpp_rank(q, o); });
  pair("rank_built", reps / 10, 1,
       [&] {
         ivcr_queries* q1 = nullptr;
         ivcr_search_options* o1 = nullptr;
         c_objects(&q1, &o1);
         c_rank(q1, o1);
         ivcr_queries_free(q1);
         ivcr_search_options_free(o1);
       },
       [&] {
         ivcr::engine::Queries q1;
         ivcr::engine::SearchOptions o1;
         cpp_objects(q1, o1);
         cpp_rank(q1, o1);
       });
  ivcr_queries_free(cq);
  ivcr_search_options_free(co);
  ivcr_index_close(h);
  return 0;
}
