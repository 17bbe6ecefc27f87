// Temporal span scoring: from per-clip scores of many videos to their best moments.
// Candidates are the best span per start clip (lengths min_len..max_len clips); greedy temporal
// NMS in seconds keeps the top_m per video. Videos are independent, so they run in parallel.
#pragma once
#include <cstdint>

namespace ivcr::span {

enum class Method {
  // mean(inside) - mean(outside) + length_weight * len / T, via prefix sums, O(T * L_max).
  // An empty outside (the whole video) counts as no contrast: its outside mean is the inside mean.
  Contrast,
  // st[i] + ed[j]: st = rise of the moving-average-smoothed scores into clip i, ed = fall after
  // clip j (the video's mean smoothed score stands beyond both ends); best j per i by a
  // sliding-window maximum, O(T). Equal scores prefer the shorter span.
  Boundary,
};

struct SpanParams {
  Method method = Method::Contrast;
  int min_len = 1;             // clips
  int max_len = 32;            // clips (L_max); clipped to the video's length
  int top_m = 5;               // spans kept per video
  double nms_iou = 0.5;        // a span overlapping a kept one by more than this is dropped
  double length_weight = 0.0;  // contrast only
  int smooth = 3;              // boundary only: moving-average width in clips (1 = none)
};

struct SpanBatch {
  const float* scores;       // concatenated per-clip scores
  const int64_t* offsets;    // n_videos + 1
  int64_t n_videos;
  const double* clip_start;  // seconds, per clip
  const double* clip_end;
};

// Outputs are n_videos x top_m, best first; missing entries: start/end NaN, score -inf, clips -1.
void score_spans(const SpanBatch& batch, const SpanParams& p, double* start_s, double* end_s, float* score,
                 int64_t* first_clip, int64_t* last_clip);

}  // namespace ivcr::span
