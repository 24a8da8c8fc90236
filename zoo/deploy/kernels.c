/* Kernels that zoo.deploy compiles on the running machine (cc -O3 -march=native -fopenmp) and
   times against the PyTorch forms; the faster is kept. GC's four calibrators over a block's
   channels-last frames in two passes: gc_pool reads the ECal-T, -S and -G groups once for their
   means; gc_gates turns the means into gates; gc_apply gates every group in place, computing
   ECal-L's temporal conv tile by tile in registers (PyTorch runs each as separate operators,
   each a pass over the frames, and its small-channel conv at a fraction of the backbone's rate).
   Frames: B*T of HW pixels of C floats (channels-last); a group is c channels from an offset.
   OpenMP here is PyTorch's own libgomp (the loader reuses the loaded library of that name), so
   torch.set_num_threads sets these kernels' threads too. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#if defined(__AVX512F__)
#define VW 16
#else
#define VW 8
#endif
typedef float vf __attribute__((vector_size(VW * 4)));

static inline vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf vbcast(float s) { return (vf){0} + s; }
static inline float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

int zoo_vector_width(void) { return VW; }
int zoo_max_threads(void) { return omp_get_max_threads(); }

/* sT[B*T*c]: mean over the pixels (ECal-T); sS[B*HW*c]: mean over T (ECal-S); sG[B*c]: mean
   over both (ECal-G). Each thread sums its own pixel range. */
void gc_pool(const float *x, long B, long T, long HW, long C, long oT, long oS, long oG, long c,
             float *sT, float *sS, float *sG) {
    memset(sT, 0, sizeof(float) * B * T * c);
    memset(sS, 0, sizeof(float) * B * HW * c);
    memset(sG, 0, sizeof(float) * B * c);
    #pragma omp parallel
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        long p0 = HW * id / nt, p1 = HW * (id + 1) / nt;
        float aT[c], aG[c];  /* c <= a block's width / 4: a few KB at most */
        for (long b = 0; b < B; b++) {
            memset(aG, 0, sizeof(float) * c);
            for (long t = 0; t < T; t++) {
                memset(aT, 0, sizeof(float) * c);
                const float *f = x + (b * T + t) * HW * C;
                for (long p = p0; p < p1; p++) {
                    const float *r = f + p * C;
                    float *s = sS + (b * HW + p) * c;
                    #pragma omp simd
                    for (long i = 0; i < c; i++) {
                        aT[i] += r[oT + i];
                        s[i] += r[oS + i];
                        aG[i] += r[oG + i];
                    }
                }
                #pragma omp critical
                for (long i = 0; i < c; i++) sT[(b * T + t) * c + i] += aT[i];
            }
            #pragma omp critical
            for (long i = 0; i < c; i++) sG[b * c + i] += aG[i];
        }
        #pragma omp barrier
        #pragma omp for
        for (long i = 0; i < B * HW * c; i++) sS[i] *= 1.0f / T;
        #pragma omp single
        {
            for (long i = 0; i < B * T * c; i++) sT[i] *= 1.0f / HW;
            for (long i = 0; i < B * c; i++) sG[i] *= 1.0f / (T * HW);
        }
    }
}

/* gT[B*T*c] = sigmoid(conv over T of sT: wT[3][c_out][c_in], bias bT or NULL, zero padding 1);
   gG[B*c] = sigmoid(wG[c_out][c_in] sG + bG); zS (ECal-S's conv output, B*HW*c) = sigmoid(zS) in
   place. */
void gc_gates(long B, long T, long HW, long c, const float *sT, const float *sG, float *zS,
              const float *wT, const float *bT, const float *wG, const float *bG, float *gT, float *gG) {
    #pragma omp parallel
    {
        #pragma omp for schedule(static) nowait
        for (long bt = 0; bt < B * T * c; bt++) {
            long b = bt / (T * c), t = bt / c % T, o = bt % c;
            float s = bT ? bT[o] : 0.0f;
            for (long k = 0; k < 3; k++) {
                long u = t + k - 1;
                if (u < 0 || u >= T) continue;
                const float *v = sT + (b * T + u) * c, *w = wT + (k * c + o) * c;
                #pragma omp simd reduction(+:s)
                for (long i = 0; i < c; i++) s += w[i] * v[i];
            }
            gT[bt] = sigmoid(s);
        }
        #pragma omp for schedule(static) nowait
        for (long bo = 0; bo < B * c; bo++) {
            long b = bo / c, o = bo % c;
            float s = bG ? bG[o] : 0.0f;
            const float *w = wG + o * c, *v = sG + b * c;
            #pragma omp simd reduction(+:s)
            for (long i = 0; i < c; i++) s += w[i] * v[i];
            gG[bo] = sigmoid(s);
        }
        long n = B * HW * c;
        #pragma omp for simd schedule(static)
        for (long i = 0; i < n; i++) zS[i] = sigmoid(zS[i]);
    }
}

/* ECal-L's conv for P pixels and NBC output vectors from o0: y[t * ys + p * c + o] = bias[o] +
   sum_d sum_i w[d][i][o] * x(t + d - 1, p)[i], x(t, p) = base + t * fs + p * C, zero outside
   [0, T). The P x NBC accumulators stay in registers; each weight vector is loaded once per P. */
#define CONV_TILE(NAME, P, NBC)                                                                    \
static void NAME(const float *base, long fs, long C, long T, long c, const float *w,              \
                 const float *bias, float *y, long ys, long o0) {                                  \
    for (long t = 0; t < T; t++) {                                                                 \
        vf acc[P][NBC];                                                                            \
        _Pragma("GCC unroll 16") for (int j = 0; j < NBC; j++) {                                   \
            vf bv = vload(bias + o0 + j * VW);                                                     \
            _Pragma("GCC unroll 16") for (int p = 0; p < P; p++) acc[p][j] = bv;                   \
        }                                                                                          \
        for (int d = 0; d < 3; d++) {                                                              \
            long s = t + d - 1;                                                                    \
            if (s < 0 || s >= T) continue;                                                         \
            const float *xs = base + s * fs;                                                       \
            const float *wd = w + (long)d * c * c + o0;                                            \
            for (long i = 0; i < c; i++) {                                                         \
                const float *wi = wd + i * c;                                                      \
                vf wv[NBC];                                                                        \
                _Pragma("GCC unroll 16") for (int j = 0; j < NBC; j++) wv[j] = vload(wi + j * VW); \
                _Pragma("GCC unroll 16") for (int p = 0; p < P; p++) {                             \
                    vf xb = vbcast(xs[p * C + i]);                                                 \
                    _Pragma("GCC unroll 16") for (int j = 0; j < NBC; j++) acc[p][j] += xb * wv[j]; \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 16") for (int p = 0; p < P; p++)                                       \
            _Pragma("GCC unroll 16") for (int j = 0; j < NBC; j++)                                 \
                vstore(y + t * ys + p * c + o0 + j * VW, acc[p][j]);                               \
    }                                                                                              \
}
/* pixels per tile for 1, 2 and 4 output vectors: the accumulators, the weight vectors and one
   broadcast fit the vector registers (32 with AVX-512, 16 with AVX2) */
#if VW == 16
#define P1 12
#define P2 8
#define P4 6
#else
#define P1 12
#define P2 6
#define P4 2
#endif
CONV_TILE(conv_p1, P1, 1)
CONV_TILE(conv_p2, P2, 2)
CONV_TILE(conv_p4, P4, 4)
CONV_TILE(conv_1x1, 1, 1)
CONV_TILE(conv_1x2, 1, 2)
CONV_TILE(conv_1x4, 1, 4)

/* the tile for c outputs: how many output vectors per block, how many pixels */
static void tile_of(long c, int *nbc, int *pt) {
    long nv = c / VW;
    *nbc = nv % 4 == 0 ? 4 : nv % 2 == 0 ? 2 : 1;
    *pt = *nbc == 4 ? P4 : *nbc == 2 ? P2 : P1;
}

/* ECal-L's conv for P (<= one tile) pixels from base into y[t][p][c] (rows of pt pixels) */
static void conv_group(const float *base, long fs, long C, long T, long c, const float *w,
                       const float *bias, float *y, long P) {
    int nbc, pt;
    tile_of(c, &nbc, &pt);
    long ys = pt * c;
    for (long o0 = 0; o0 < c; o0 += nbc * VW) {
        if (P == pt) {
            if (nbc == 4) conv_p4(base, fs, C, T, c, w, bias, y, ys, o0);
            else if (nbc == 2) conv_p2(base, fs, C, T, c, w, bias, y, ys, o0);
            else conv_p1(base, fs, C, T, c, w, bias, y, ys, o0);
        } else {
            for (long p = 0; p < P; p++) {
                if (nbc == 4) conv_1x4(base + p * C, fs, C, T, c, w, bias, y + p * c, ys, o0);
                else if (nbc == 2) conv_1x2(base + p * C, fs, C, T, c, w, bias, y + p * c, ys, o0);
                else conv_1x1(base + p * C, fs, C, T, c, w, bias, y + p * c, ys, o0);
            }
        }
    }
}

/* In place: group L times sigmoid(its temporal conv: wL[3][c_in][c_out], bias bL), group T times
   gT[b, t], group S times gS[b, pixel], group G times gG[b]; then, with scale (and shift) not
   NULL, every channel i times scale[i] plus shift[i] (the eval BatchNorm that follows GC-GST's
   calibrators). c must be a multiple of zoo_vector_width(). Returns 0, or -1 when out of memory
   (x untouched). */
int gc_apply(float *x, long B, long T, long HW, long C, long oL, long oT, long oS, long oG, long c,
             const float *gT, const float *gS, const float *gG, const float *wL, const float *bL,
             const float *scale, const float *shift) {
    int nbc, pt, failed = 0;
    tile_of(c, &nbc, &pt);
    long tiles = (HW + pt - 1) / pt, fs = HW * C;  /* one tile per task: small maps still split evenly */
    #pragma omp parallel
    {
        float *y = malloc(sizeof(float) * T * pt * c);
        #pragma omp atomic
        failed += y == NULL;
        #pragma omp barrier
        if (!failed) {
            #pragma omp for schedule(static)
            for (long bt = 0; bt < B * tiles; bt++) {
                long b = bt / tiles, p0 = (bt % tiles) * pt, P = HW - p0 < pt ? HW - p0 : pt;
                float *base = x + (b * T * HW + p0) * C;
                conv_group(base + oL, fs, C, T, c, wL, bL, y, P);
                const float *gg = gG + b * c;
                for (long t = 0; t < T; t++) {
                    const float *gt = gT + (b * T + t) * c;
                    for (long p = 0; p < P; p++) {
                        float *r = base + t * fs + p * C, *yy = y + (t * pt + p) * c;
                        const float *gs = gS + (b * HW + p0 + p) * c;
                        #pragma omp simd
                        for (long i = 0; i < c; i++) yy[i] = sigmoid(yy[i]);
                        #pragma omp simd
                        for (long i = 0; i < c; i++) {
                            r[oL + i] *= yy[i];
                            r[oT + i] *= gt[i];
                            r[oS + i] *= gs[i];
                            r[oG + i] *= gg[i];
                        }
                        if (scale) {
                            #pragma omp simd
                            for (long i = 0; i < C; i++) r[i] = r[i] * scale[i] + shift[i];
                        }
                    }
                }
            }
        }
        free(y);
    }
    return failed ? -1 : 0;
}

/* AIA's C unit in place: the context (max, mean over the C channels of every pixel), the gate
   sigmoid(Conv3d(2 -> 1, 3x3x3, zero padding 1) over (T, H, W) + bias), x times the gate. w: the
   conv's 54 weights [channel][t][h][w]; ctx: scratch of B*T*2*H*W floats, gate: of B*T*H*W. */
void aia_c(float *x, long B, long T, long H, long W, long C, const float *w, float bias, float *ctx,
           float *gate) {
    long HW = H * W, N = B * T;
    #pragma omp parallel
    {
        #pragma omp for schedule(static)
        for (long np = 0; np < N * HW; np++) {
            const float *r = x + np * C;
            float m = r[0], s = 0.0f;
            #pragma omp simd reduction(max:m) reduction(+:s)
            for (long i = 0; i < C; i++) {
                m = r[i] > m ? r[i] : m;
                s += r[i];
            }
            long n = np / HW, p = np % HW;
            ctx[(n * 2) * HW + p] = m;
            ctx[(n * 2 + 1) * HW + p] = s / C;
        }
        /* the gate conv by output rows: each tap adds a shifted context row (vectorised over W) */
        float acc[W];  /* one row of the frame */
        #pragma omp for schedule(static)
        for (long nh = 0; nh < N * H; nh++) {
            long n = nh / H, h = nh % H, b = n / T, t = n % T;
            for (long v = 0; v < W; v++) acc[v] = bias;
            for (long k = 0; k < 3; k++) {
                long u = t + k - 1;
                if (u < 0 || u >= T) continue;
                for (long ch = 0; ch < 2; ch++)
                    for (long i = 0; i < 3; i++) {
                        long hh = h + i - 1;
                        if (hh < 0 || hh >= H) continue;
                        const float *row = ctx + ((b * T + u) * 2 + ch) * HW + hh * W, *wk = w + ((ch * 3 + k) * 3 + i) * 3;
                        #pragma omp simd
                        for (long v = 1; v < W; v++) acc[v] += wk[0] * row[v - 1];
                        #pragma omp simd
                        for (long v = 0; v < W; v++) acc[v] += wk[1] * row[v];
                        #pragma omp simd
                        for (long v = 0; v < W - 1; v++) acc[v] += wk[2] * row[v + 1];
                    }
            }
            float *g = gate + n * HW + h * W;
            #pragma omp simd
            for (long v = 0; v < W; v++) g[v] = sigmoid(acc[v]);
        }
        #pragma omp for schedule(static)
        for (long np = 0; np < N * HW; np++) {
            float *r = x + np * C, g = gate[np];
            #pragma omp simd
            for (long i = 0; i < C; i++) r[i] *= g;
        }
    }
}

/* TSM's shift in place: channels [0, f) of frame t take frame t + 1's, [f, 2f) frame t - 1's, the
   missing ends zero; one pass over the 2f channels of each pixel, frame by frame in the order that
   reads each value before it is overwritten. saved (B*HW*2f, or NULL when x is not needed after):
   what the shift loses, frame 0's [0, f) and the last frame's [f, 2f), for tsm_join. */
void tsm_shift(float *x, long B, long T, long HW, long C, long f, float *saved) {
    #pragma omp parallel for schedule(static)
    for (long bp = 0; bp < B * HW; bp++) {
        long b = bp / HW, p = bp % HW, fs = HW * C;
        float *col = x + (b * T * HW + p) * C;
        if (saved) {
            memcpy(saved + bp * 2 * f, col, sizeof(float) * f);
            memcpy(saved + bp * 2 * f + f, col + (T - 1) * fs + f, sizeof(float) * f);
        }
        for (long t = 0; t + 1 < T; t++) memcpy(col + t * fs, col + (t + 1) * fs, sizeof(float) * f);
        memset(col + (T - 1) * fs, 0, sizeof(float) * f);
        for (long t = T - 1; t > 0; t--) memcpy(col + t * fs + f, col + (t - 1) * fs + f, sizeof(float) * f);
        memset(col + f, 0, sizeof(float) * f);
    }
}

/* The residual join after tsm_shift: out = relu(out + x as it was before the shift), reading the
   shifted channels back from the neighbouring frames (and saved), so x need not be shifted back. */
void tsm_join(float *out, const float *x, long B, long T, long HW, long C, long f, const float *saved) {
    long N = B * T;
    #pragma omp parallel for schedule(static)
    for (long np = 0; np < N * HW; np++) {
        long n = np / HW, p = np % HW, b = n / T, t = n % T, fs = HW * C;
        float *o = out + np * C;
        const float *r = x + np * C, *s = saved + (b * HW + p) * 2 * f;
        const float *a = t > 0 ? r - fs : s, *z = t + 1 < T ? r + fs + f : s + f;
        #pragma omp simd
        for (long i = 0; i < f; i++) o[i] = fmaxf(o[i] + a[i], 0.0f);
        #pragma omp simd
        for (long i = 0; i < f; i++) o[f + i] = fmaxf(o[f + i] + z[i], 0.0f);
        #pragma omp simd
        for (long i = 2 * f; i < C; i++) o[i] = fmaxf(o[i] + r[i], 0.0f);
    }
}
