/* Kernels that zoo.deploy compiles on the running machine (cc -O3 -march=native -fopenmp) and
   times against the PyTorch forms; the faster is kept. Each replaces a module's chain of
   PyTorch operators (each a pass over the frames) by one or two passes:
   * GC's four calibrators: gc_pool reads the ECal-T, -S and -G groups once for their means;
     conv3x3 is ECal-S's dilated conv on them (one of three ways timed); gc_gates turns the
     means into gates; gc_apply gates every group in place, computing ECal-L's temporal conv
     tile by tile in registers.
   * AIA's C unit (aia_c_ctx, aia_c_gate, aia_c_apply), its ST unit and the CinST / STinC
     modules (aia_st_ctx: the three axial contexts in one pass; aia_axial: each gate conv
     vectorised over the channels; aia_st_apply).
   * SDA: conv1x1 is its down-projection (timed against oneDNN's); sda_branches pools the
     reduced frames for every branch and runs the temporal convs; conv3x3 is the pooled-over-T
     branch's conv; sda_gate forms the weighted sum of the maps at each pixel, the
     up-projection in registers and the gate product.
   * STC's middle conv around its two library convs: S_T's shifted input in one copy, the
     refinements' pools in one pass, both gates, the concatenation and the BN after it in one.
   * GST's middle conv after its two library convs: the temporal conv's taps summed across
     frames, the concatenation and the block's ReLU in one pass (gst_join).
   * TSM's shift lent to the block (tsm_shift, tsm_join).
   Frames: B*T of HW pixels of C floats (channels-last). OpenMP here is PyTorch's own libgomp
   (the loader reuses the loaded library of that name), so torch.set_num_threads sets these
   kernels' threads too. */
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
static inline vf vmax(vf a, vf b) {
    vf r;
    for (int i = 0; i < VW; i++) r[i] = a[i] > b[i] ? a[i] : b[i];
    return r;
}
/* exp by range reduction to [-ln2/2, ln2/2] and Cephes' degree-5 polynomial (relative error
   ~1e-7), 2^n put in the exponent bits: arithmetic the compiler vectorises inline where expf is
   a library call per vector. v is clamped to [-80, 80]: no overflow, and no gate so small that
   it makes the products denormal. */
static inline float exp80(float v) {
    v = fminf(fmaxf(v, -80.0f), 80.0f);
    float n = __builtin_rintf(v * 1.44269504f);
    float r = v - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int e = ((int)n + 127) << 23;
    float s;
    memcpy(&s, &e, sizeof s);
    return p * s;
}
static inline float sigmoid(float v) { return 1.0f / (1.0f + exp80(-v)); }

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

/* A register tile of P pixels by NBC output vectors: acc[p][j] = bias[j] (bias at the tile's
   first output), then acc[p][j] += x(p) w[j] for one input channel, x(p) = xcol[p * xs] and w the
   row of that channel's weights from the tile's first output. */
#define TILE_INIT(acc, bias, P, NBC)                                                               \
    _Pragma("GCC unroll 16") for (int j = 0; j < NBC; j++) {                                       \
        vf bv = vload((bias) + j * VW);                                                            \
        _Pragma("GCC unroll 16") for (int p = 0; p < P; p++) acc[p][j] = bv;                       \
    }
#define TILE_FMA(acc, wrow, xcol, xs, P, NBC)                                                      \
    {                                                                                              \
        vf wv[NBC];                                                                                \
        _Pragma("GCC unroll 16") for (int j = 0; j < NBC; j++) wv[j] = vload((wrow) + j * VW);     \
        _Pragma("GCC unroll 16") for (int p = 0; p < P; p++) {                                     \
            vf xb = vbcast((xcol)[p * (xs)]);                                                      \
            _Pragma("GCC unroll 16") for (int j = 0; j < NBC; j++) acc[p][j] += xb * wv[j];        \
        }                                                                                          \
    }

/* ECal-L's conv for P pixels and NBC output vectors from o0: y[t * ys + p * c + o] = bias[o] +
   sum_d sum_i w[d][i][o] * x(t + d - 1, p)[i], x(t, p) = base + t * fs + p * C, zero outside
   [0, T). The P x NBC accumulators stay in registers; each weight vector is loaded once per P. */
#define CONV_TILE(NAME, P, NBC)                                                                    \
static void NAME(const float *base, long fs, long C, long T, long c, const float *w,              \
                 const float *bias, float *y, long ys, long o0) {                                  \
    for (long t = 0; t < T; t++) {                                                                 \
        vf acc[P][NBC];                                                                            \
        TILE_INIT(acc, bias + o0, P, NBC)                                                          \
        for (int d = 0; d < 3; d++) {                                                              \
            long s = t + d - 1;                                                                    \
            if (s < 0 || s >= T) continue;                                                         \
            const float *xs = base + s * fs;                                                       \
            const float *wd = w + (long)d * c * c + o0;                                            \
            for (long i = 0; i < c; i++) TILE_FMA(acc, wd + i * c, xs + i, C, P, NBC)              \
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
/* a tile function's six sizes: full tiles (NAME_p1, _p2, _p4) and one pixel (NAME_1x1, ...) */
#define TILE_SIZES(MAKE, NAME)                                                                      \
    MAKE(NAME##_p1, P1, 1) MAKE(NAME##_p2, P2, 2) MAKE(NAME##_p4, P4, 4)                           \
    MAKE(NAME##_1x1, 1, 1) MAKE(NAME##_1x2, 1, 2) MAKE(NAME##_1x4, 1, 4)
TILE_SIZES(CONV_TILE, conv)

/* the tile for c outputs: of the sizes whose vectors divide c, the one with the most
   multiply-adds per load (P * NBC products for NBC weight loads and P broadcasts), which keeps
   each weight vector for the most pixels: 6 x 4 with AVX-512's 32 registers, 6 x 2 with AVX2's
   16 (2 x 4 there reloads the weights every 2 pixels) */
static void tile_of(long c, int *nbc, int *pt) {
    static const int sizes[3][2] = {{1, P1}, {2, P2}, {4, P4}};
    long nv = c / VW;
    double best = 0;
    for (int k = 0; k < 3; k++) {
        int n = sizes[k][0], p = sizes[k][1];
        double per_load = (double)p * n / (p + n);
        if (nv % n == 0 && per_load > best) {
            best = per_load;
            *nbc = n;
            *pt = p;
        }
    }
}

/* A (3, 1, 1) conv for P (<= one tile) pixels from base into y[t * ys + p * c + o] */
static void conv_group(const float *base, long fs, long C, long T, long c, const float *w,
                       const float *bias, float *y, long ys, long P) {
    int nbc, pt;
    tile_of(c, &nbc, &pt);
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

/* A 3x3 conv (dilation and padding d) for P pixels and NBC output vectors from o0: the
   input pixel of tap k for pixel p is xp[k * P + p], the zero row where it falls in the padding;
   y[p * c + o] = bias[o] + sum_k sum_i w[k][i][o] xp[k * P + p][i]. A tap that no pixel of the
   tile reaches (a row above or below the map) is skipped. */
#define SCONV_TILE(NAME, P, NBC)                                                                   \
static void NAME(const float *const *xp, const float *zero, long c, const float *w,               \
                 const float *bias, float *y, long o0) {                                           \
    vf acc[P][NBC];                                                                                \
    TILE_INIT(acc, bias + o0, P, NBC)                                                              \
    for (int k = 0; k < 9; k++) {                                                                  \
        const float *q[P];                                                                         \
        int any = 0;                                                                               \
        _Pragma("GCC unroll 16") for (int p = 0; p < P; p++) {                                     \
            q[p] = xp[k * P + p];                                                                  \
            any |= q[p] != zero;                                                                   \
        }                                                                                          \
        if (!any) continue;                                                                        \
        const float *wk = w + (long)k * c * c + o0;                                                \
        for (long i = 0; i < c; i++) {                                                             \
            vf wv[NBC];                                                                            \
            _Pragma("GCC unroll 16") for (int j = 0; j < NBC; j++) wv[j] = vload(wk + i * c + j * VW); \
            _Pragma("GCC unroll 16") for (int p = 0; p < P; p++) {                                 \
                vf xb = vbcast(q[p][i]);                                                           \
                _Pragma("GCC unroll 16") for (int j = 0; j < NBC; j++) acc[p][j] += xb * wv[j];    \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    _Pragma("GCC unroll 16") for (int p = 0; p < P; p++)                                           \
        _Pragma("GCC unroll 16") for (int j = 0; j < NBC; j++)                                     \
            vstore(y + p * c + o0 + j * VW, acc[p][j]);                                            \
}
TILE_SIZES(SCONV_TILE, sconv)

/* A 3x3 conv of c -> c channels, stride 1, dilation and zero padding d (GC's ECal-S, SDA's
   pooled-over-T branch): zS[b][p][o] = bias[o] (0 without) + sum over the taps of
   w[tap][i][o] sS[b][tap's pixel][i]; sS and zS [B][H*W][c], c a multiple of
   zoo_vector_width(). Tiles of pixels run across rows (each pixel finds its own input). Returns
   0, or -1 when out of memory (zS untouched). */
int conv3x3(const float *sS, long B, long H, long W, long c, long d, const float *w, const float *bias,
            float *zS) {
    int nbc, pt;
    tile_of(c, &nbc, &pt);
    long HW = H * W, tiles = (HW + pt - 1) / pt;
    float *zero = calloc(c, sizeof(float));
    if (zero == NULL) return -1;
    const float *b0 = bias ? bias : zero;
    #pragma omp parallel for schedule(static)
    for (long bt = 0; bt < B * tiles; bt++) {
        long b = bt / tiles, p0 = (bt % tiles) * pt, P = HW - p0 < pt ? HW - p0 : pt;
        const float *xp[9 * pt];
        for (long p = 0; p < P; p++) {
            long h = (p0 + p) / W, v = (p0 + p) % W;
            for (int k = 0; k < 9; k++) {
                long hh = h + (k / 3 - 1) * d, ww = v + (k % 3 - 1) * d;
                int in = hh >= 0 && hh < H && ww >= 0 && ww < W;
                /* full tiles index taps by k * pt + p, single pixels by k */
                xp[P == pt ? k * pt + p : k + 9 * p] = in ? sS + ((b * H + hh) * W + ww) * c : zero;
            }
        }
        float *y = zS + (b * HW + p0) * c;
        for (long o0 = 0; o0 < c; o0 += nbc * VW) {
            if (P == pt) {
                if (nbc == 4) sconv_p4(xp, zero, c, w, b0, y, o0);
                else if (nbc == 2) sconv_p2(xp, zero, c, w, b0, y, o0);
                else sconv_p1(xp, zero, c, w, b0, y, o0);
            } else {
                for (long p = 0; p < P; p++) {
                    if (nbc == 4) sconv_1x4(xp + 9 * p, zero, c, w, b0, y + p * c, o0);
                    else if (nbc == 2) sconv_1x2(xp + 9 * p, zero, c, w, b0, y + p * c, o0);
                    else sconv_1x1(xp + 9 * p, zero, c, w, b0, y + p * c, o0);
                }
            }
        }
    }
    free(zero);
    return 0;
}

/* A 1x1 conv for P pixels and NBC output vectors from o0: y[p * cout + o] = bias[o] +
   sum_i w[i][o] x[p * cin + i]. */
#define PW_TILE(NAME, P, NBC)                                                                      \
static void NAME(const float *x, long cin, long cout, const float *w, const float *bias, float *y, \
                 long o0) {                                                                        \
    vf acc[P][NBC];                                                                                \
    TILE_INIT(acc, bias + o0, P, NBC)                                                              \
    for (long i = 0; i < cin; i++) TILE_FMA(acc, w + i * cout + o0, x + i, cin, P, NBC)            \
    _Pragma("GCC unroll 16") for (int p = 0; p < P; p++)                                           \
        _Pragma("GCC unroll 16") for (int j = 0; j < NBC; j++)                                     \
            vstore(y + p * cout + o0 + j * VW, acc[p][j]);                                         \
}
TILE_SIZES(PW_TILE, pw)

/* A 1x1 conv (SDA's down-projection): y[n][o] = bias[o] (0 without) + sum_i w[i][o] x[n][i]
   for n pixels of cin channels (channels-last) into cout channels, cout a multiple of
   zoo_vector_width(). Returns 0, or -1 when out of memory (y untouched). */
int conv1x1(const float *x, long n, long cin, long cout, const float *w, const float *bias, float *y) {
    int nbc, pt;
    tile_of(cout, &nbc, &pt);
    long tiles = (n + pt - 1) / pt;
    float *zero = bias ? NULL : calloc(cout, sizeof(float));
    if (!bias && zero == NULL) return -1;
    const float *b0 = bias ? bias : zero;
    #pragma omp parallel for schedule(static)
    for (long k = 0; k < tiles; k++) {
        long p0 = k * pt, P = n - p0 < pt ? n - p0 : pt;
        const float *xt = x + p0 * cin;
        float *yt = y + p0 * cout;
        for (long o0 = 0; o0 < cout; o0 += nbc * VW) {
            if (P == pt) {
                if (nbc == 4) pw_p4(xt, cin, cout, w, b0, yt, o0);
                else if (nbc == 2) pw_p2(xt, cin, cout, w, b0, yt, o0);
                else pw_p1(xt, cin, cout, w, b0, yt, o0);
            } else {
                for (long p = 0; p < P; p++) {
                    if (nbc == 4) pw_1x4(xt + p * cin, cin, cout, w, b0, yt + p * cout, o0);
                    else if (nbc == 2) pw_1x2(xt + p * cin, cin, cout, w, b0, yt + p * cout, o0);
                    else pw_1x1(xt + p * cin, cin, cout, w, b0, yt + p * cout, o0);
                }
            }
        }
    }
    free(zero);
    return 0;
}

/* In place: group L times sigmoid(its temporal conv: wL[3][c_in][c_out], bias bL), group T times
   gT[b, t], group S times gS[b, pixel], group G times gG[b]; then, with scale (and shift) not
   NULL, every channel i times scale[i] plus shift[i] (the eval BatchNorm that follows GC-GST's
   calibrators); then, with relu, the block's ReLU that follows. c must be a multiple of
   zoo_vector_width(). Returns 0, or -1 when out of memory (x untouched). */
int gc_apply(float *x, long B, long T, long HW, long C, long oL, long oT, long oS, long oG, long c,
             const float *gT, const float *gS, const float *gG, const float *wL, const float *bL,
             const float *scale, const float *shift, int relu) {
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
                conv_group(base + oL, fs, C, T, c, wL, bL, y, pt * c, P);
                const float *gg = gG + b * c;
                for (long t = 0; t < T; t++) {  /* ECal-L's gates, in one stream per frame */
                    float *yt = y + t * pt * c;
                    #pragma omp simd
                    for (long i = 0; i < P * c; i++) yt[i] = sigmoid(yt[i]);
                }
                for (long t = 0; t < T; t++) {
                    const float *gt = gT + (b * T + t) * c;
                    for (long p = 0; p < P; p++) {
                        float *r = base + t * fs + p * C;
                        const float *yy = y + (t * pt + p) * c, *gs = gS + (b * HW + p0 + p) * c;
                        for (long i = 0; i < c; i += VW) {
                            vstore(r + oL + i, vload(r + oL + i) * vload(yy + i));
                            vstore(r + oT + i, vload(r + oT + i) * vload(gt + i));
                            vstore(r + oS + i, vload(r + oS + i) * vload(gs + i));
                            vstore(r + oG + i, vload(r + oG + i) * vload(gg + i));
                        }
                        if (scale) {
                            #pragma omp simd
                            for (long i = 0; i < C; i++) r[i] = r[i] * scale[i] + shift[i];
                        }
                        if (relu) {
                            #pragma omp simd
                            for (long i = 0; i < C; i++) r[i] = fmaxf(r[i], 0.0f);
                        }
                    }
                }
            }
        }
        free(y);
    }
    return failed ? -1 : 0;
}

/* AIA's C context: the max and mean over the C channels of every pixel of x, or of x times the
   ST gate (gT[b][h][w] + gH[b][t][w] + gW[b][t][h]) / 3 when gT is not NULL (STinC), into
   ctx[n][2][HW]. */
void aia_c_ctx(const float *x, long B, long T, long H, long W, long C, const float *gT, const float *gH,
               const float *gW, float *ctx) {
    long HW = H * W, N = B * T;
    #pragma omp parallel for schedule(static)
    for (long np = 0; np < N * HW; np++) {
        const float *r = x + np * C;
        long n = np / HW, p = np % HW, b = n / T, t = n % T, h = p / W, w = p % W;
        float m = -INFINITY, s = 0.0f;
        if (gT) {  /* the gated pixel in registers only */
            const float *gt = gT + ((b * H + h) * W + w) * C, *gh = gH + ((b * T + t) * W + w) * C;
            const float *gw = gW + ((b * T + t) * H + h) * C;
            #pragma omp simd reduction(max:m) reduction(+:s)
            for (long i = 0; i < C; i++) {
                float v = r[i] * ((gt[i] + gh[i] + gw[i]) * (1.0f / 3));
                m = v > m ? v : m;
                s += v;
            }
        } else {
            #pragma omp simd reduction(max:m) reduction(+:s)
            for (long i = 0; i < C; i++) {
                m = r[i] > m ? r[i] : m;
                s += r[i];
            }
        }
        ctx[(n * 2) * HW + p] = m;
        ctx[(n * 2 + 1) * HW + p] = s / C;
    }
}

/* AIA's C gate from its context: sigmoid(Conv3d(2 -> 1, 3x3x3, zero padding 1) over (T, H, W) +
   bias) into gate[n][HW], by output rows: each of the 18 source rows (3 frames, 2 channels, 3
   rows) is copied between two zeros, then its three taps along the row are one loop without
   bounds (three loops with them ran the short rows of the late stages at loop overhead).
   w: the conv's 54 weights [channel][t][h][w]. */
void aia_c_gate(const float *ctx, long B, long T, long H, long W, const float *w, float bias, float *gate) {
    long HW = H * W, N = B * T;
    #pragma omp parallel
    {
        float acc[W], rp[W + 2];  /* one row of the frame; a source row between zeros */
        rp[0] = rp[W + 1] = 0.0f;
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
                        memcpy(rp + 1, ctx + ((b * T + u) * 2 + ch) * HW + hh * W, sizeof(float) * W);
                        const float *wk = w + ((ch * 3 + k) * 3 + i) * 3;
                        float w0 = wk[0], w1 = wk[1], w2 = wk[2];
                        #pragma omp simd
                        for (long v = 0; v < W; v++) acc[v] += w0 * rp[v] + w1 * rp[v + 1] + w2 * rp[v + 2];
                    }
            }
            float *g = gate + n * HW + h * W;
            #pragma omp simd
            for (long v = 0; v < W; v++) g[v] = sigmoid(acc[v]);
        }
    }
}

/* x[pixel] *= gate[pixel] over P pixels of C channels, in place (then the ReLU, with relu). */
void aia_c_apply(float *x, long P, long C, const float *gate, int relu) {
    #pragma omp parallel for schedule(static)
    for (long np = 0; np < P; np++) {
        float *r = x + np * C, g = gate[np];
        if (relu) {
            #pragma omp simd
            for (long i = 0; i < C; i++) r[i] = fmaxf(r[i] * g, 0.0f);
        } else {
            #pragma omp simd
            for (long i = 0; i < C; i++) r[i] *= g;
        }
    }
}

/* SDA (the four-branch module: global, pooled over T, pooled over the pixels, local). y: the
   reduced frames, B*T frames of HW = H*W pixels of r floats, before their ReLU, which is applied
   as they are read. Out: sT[B][HW][r] the mean over T, sF[B][T][r] the mean over the pixels,
   sL[B][T][h][w][r] the adaptive average over rows [h0[i], h1[i]) and columns [w0[j], w1[j]). */
static void sda_pool(const float *y, long B, long T, long H, long W, long r, long h, long w, const long *h0,
                     const long *h1, const long *w0, const long *w1, float *sT, float *sF, float *sL) {
    long HW = H * W;
    memset(sF, 0, sizeof(float) * B * T * r);
    #pragma omp parallel
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        long p0 = HW * id / nt, p1 = HW * (id + 1) / nt;
        float acc[r];  /* r <= a block's width / 4: a few KB at most */
        for (long b = 0; b < B; b++) {
            float *st = sT + b * HW * r;
            memset(st + p0 * r, 0, sizeof(float) * (p1 - p0) * r);
            for (long t = 0; t < T; t++) {
                memset(acc, 0, sizeof(float) * r);
                const float *f = y + (b * T + t) * HW * r;
                for (long p = p0; p < p1; p++) {
                    const float *v = f + p * r;
                    float *s = st + p * r;
                    #pragma omp simd
                    for (long k = 0; k < r; k++) {
                        float u = fmaxf(v[k], 0.0f);
                        s[k] += u;
                        acc[k] += u;
                    }
                }
                #pragma omp critical
                for (long k = 0; k < r; k++) sF[(b * T + t) * r + k] += acc[k];
            }
            for (long i = p0 * r; i < p1 * r; i++) st[i] *= 1.0f / T;
        }
        #pragma omp barrier
        #pragma omp for schedule(static) nowait
        for (long i = 0; i < B * T * r; i++) sF[i] *= 1.0f / HW;
        #pragma omp for schedule(static)
        for (long ni = 0; ni < B * T * h; ni++) {
            long n = ni / h, i = ni % h;
            const float *f = y + n * HW * r;
            for (long j = 0; j < w; j++) {
                memset(acc, 0, sizeof(float) * r);
                for (long u = h0[i]; u < h1[i]; u++)
                    for (long v = w0[j]; v < w1[j]; v++) {
                        const float *e = f + (u * W + v) * r;
                        #pragma omp simd
                        for (long k = 0; k < r; k++) acc[k] += fmaxf(e[k], 0.0f);
                    }
                float sc = 1.0f / ((h1[i] - h0[i]) * (w1[j] - w0[j]));
                float *o = sL + ((n * h + i) * w + j) * r;
                #pragma omp simd
                for (long k = 0; k < r; k++) o[k] = acc[k] * sc;
            }
        }
    }
}

/* y = act(a (3, 1, 1) conv over T with zero padding of x + bias): x, y [B][T][P][r];
   w[tap][in][out]; act 1: ReLU, 2: sigmoid. r must be a multiple of zoo_vector_width(). */
static void tconv_act(const float *x, long B, long T, long P, long r, const float *w, const float *bias, float *y,
                      int act) {
    int nbc, pt;
    tile_of(r, &nbc, &pt);
    long tiles = (P + pt - 1) / pt, fs = P * r;
    #pragma omp parallel for schedule(static)
    for (long bt = 0; bt < B * tiles; bt++) {
        long b = bt / tiles, p0 = (bt % tiles) * pt, n = P - p0 < pt ? P - p0 : pt;
        float *out = y + (b * T * P + p0) * r;
        conv_group(x + (b * T * P + p0) * r, fs, r, T, r, w, bias, out, fs, n);
        for (long t = 0; t < T; t++) {
            float *o = out + t * fs;
            if (act == 1) {
                #pragma omp simd
                for (long i = 0; i < n * r; i++) o[i] = fmaxf(o[i], 0.0f);
            } else {
                #pragma omp simd
                for (long i = 0; i < n * r; i++) o[i] = sigmoid(o[i]);
            }
        }
    }
}

/* The same conv for one pixel per frame, from cin to cout channels (x [B][T][cin], y [B][T][cout],
   w [tap][cin][cout], cout a whole number of vectors), with 3 taps (zero-padded over T) or 1 (a
   1x1 conv on each frame's vector: the rows of x may be pixels as well as frames). The frames
   take the place of the tile's pixels, so that each weight vector is read once per 8 frames, not
   once per frame (TR's weights are 1.8 MB at layer 4); the tasks are blocks of output channels
   by chunks of 8 frames. */
static void tconv_frames(const float *x, long B, long T, long cin, long cout, int taps, const float *w,
                         const float *bias, float *y, int act) {
    long nv = cout / VW, nb = (nv + 1) / 2, nc = (T + 7) / 8;  /* blocks of two output vectors (one at an odd end) */
    #pragma omp parallel for schedule(static)
    for (long q = 0; q < B * nb * nc; q++) {
        long b = q / (nb * nc), o0 = (q / nc % nb) * 2 * VW, t0 = q % nc * 8;
        int nj = o0 + 2 * VW <= cout ? 2 : 1;
        long nt = T - t0 < 8 ? T - t0 : 8;
        const float *xb = x + b * T * cin;
        float *yb = y + b * T * cout;
        vf acc[8][2];
        for (int t = 0; t < 8; t++)
            for (int j = 0; j < 2; j++) acc[t][j] = j < nj ? vload(bias + o0 + j * VW) : vbcast(0.0f);
        for (int d = 0; d < taps; d++) {
            const float *wd = w + (long)d * cin * cout + o0;
            for (long i = 0; i < cin; i++) {
                vf w0 = vload(wd + i * cout), w1 = nj == 2 ? vload(wd + i * cout + VW) : vbcast(0.0f);
                for (long t = 0; t < nt; t++) {
                    long s = t0 + t + d - taps / 2;
                    if (s < 0 || s >= T) continue;
                    vf xv = vbcast(xb[s * cin + i]);
                    acc[t][0] += xv * w0;
                    acc[t][1] += xv * w1;
                }
            }
        }
        for (long t = 0; t < nt; t++)
            for (int j = 0; j < nj; j++) {
                float z[VW], *o = yb + (t0 + t) * cout + o0 + j * VW;
                vstore(z, acc[t][j]);
                #pragma omp simd
                for (int k = 0; k < VW; k++) o[k] = act == 1 ? fmaxf(z[k], 0.0f) : sigmoid(z[k]);
            }
    }
}

/* SDA's temporal branch convs: ReLU after. */
static void sda_tconv(const float *x, long B, long T, long P, long r, const float *w, const float *bias, float *y) {
    if (P == 1) tconv_frames(x, B, T, r, r, 3, w, bias, y, 1);
    else tconv_act(x, B, T, P, r, w, bias, y, 1);
}

/* STC's temporal refinement gate: sigmoid of a size-3 conv over T of pT[B][T][c] into gT
   (w [3][c or mp][c]). STC-Light (mp > 0): the 3-tap conv reads mid[B][T][mp], the 1x1
   reduction (wr [c][mp]) and its ReLU, mp its channels padded to whole vectors with zero
   weights (the 3-tap conv's weights for them are zero too). */
void stc_tr_gate(const float *pT, long B, long T, long c, long mp, const float *wr, const float *br, float *mid,
                 const float *w, const float *bias, float *gT) {
    if (mp) tconv_frames(pT, B, T, c, mp, 1, wr, br, mid, 1);
    tconv_frames(mp ? mid : pT, B, T, mp ? mp : c, c, 3, w, bias, gT, 2);
}

/* STC-Light's spatial refinement reduction: ReLU(the 1x1 conv) of each pixel of SR's pooled
   input, pS[B][n][c] into y[B][n][mp] (channels padded as in stc_tr_gate). */
void stc_sr_reduce(const float *pS, long B, long n, long c, long mp, const float *w, const float *bias, float *y) {
    tconv_frames(pS, B, n, c, mp, 1, w, bias, y, 1);
}

/* The aggregation weights, from the branch maps: the global map (computed here: ReLU(wG times
   the mean of sF over T + bG), wG[out][in]), mT[B][HW][r] (pooled over T, before its ReLU),
   mS[B][T][r] (pooled over the pixels), mL[B][T][h][w][r] (local, at its pooled size; uh[h],
   uw[w]: each row's and column's weight in the mean of the map brought back to H x W). The
   weights: softmax over the maps of (each map's mean) . q, or 1/4 each without q. Out:
   base[B][T][r] = a_G g + a_S mS, the part of the weighted sum constant over a frame, and
   a[B][2] = (a_T, a_L). Small: one thread. */
static void sda_mix(long B, long T, long HW, long h, long w, long r, const float *sF, const float *wG,
                    const float *bG, const float *mT, const float *mS, const float *mL, const float *uh,
                    const float *uw, const float *q, float *base, float *a) {
    float m[r], g[r], kT[r], kS[r], kL[r];
    for (long b = 0; b < B; b++) {
        memset(m, 0, sizeof m);
        memset(kT, 0, sizeof kT);
        memset(kS, 0, sizeof kS);
        memset(kL, 0, sizeof kL);
        for (long t = 0; t < T; t++)
            for (long k = 0; k < r; k++) {
                m[k] += sF[(b * T + t) * r + k] / T;
                kS[k] += mS[(b * T + t) * r + k] / T;
            }
        for (long o = 0; o < r; o++) {
            float s = bG[o];
            for (long i = 0; i < r; i++) s += wG[o * r + i] * m[i];
            g[o] = fmaxf(s, 0.0f);
        }
        for (long p = 0; p < HW; p++) {
            const float *e = mT + (b * HW + p) * r;
            #pragma omp simd
            for (long k = 0; k < r; k++) kT[k] += fmaxf(e[k], 0.0f);
        }
        for (long k = 0; k < r; k++) kT[k] /= HW;
        for (long t = 0; t < T; t++)
            for (long i = 0; i < h; i++)
                for (long j = 0; j < w; j++) {
                    const float *e = mL + (((b * T + t) * h + i) * w + j) * r;
                    float u = uh[i] * uw[j] / T;
                    #pragma omp simd
                    for (long k = 0; k < r; k++) kL[k] += u * e[k];
                }
        float aG = 0.25f, aT = 0.25f, aS = 0.25f, aL = 0.25f;
        if (q) {
            float s[4] = {0, 0, 0, 0};
            for (long k = 0; k < r; k++) {
                s[0] += g[k] * q[k];
                s[1] += kT[k] * q[k];
                s[2] += kS[k] * q[k];
                s[3] += kL[k] * q[k];
            }
            float mx = fmaxf(fmaxf(s[0], s[1]), fmaxf(s[2], s[3])), z = 0.0f;
            for (int i = 0; i < 4; i++) z += s[i] = expf(s[i] - mx);
            aG = s[0] / z, aT = s[1] / z, aS = s[2] / z, aL = s[3] / z;
        }
        for (long t = 0; t < T; t++)
            for (long k = 0; k < r; k++) base[(b * T + t) * r + k] = aG * g[k] + aS * mS[(b * T + t) * r + k];
        a[2 * b] = aT;
        a[2 * b + 1] = aL;
    }
}

/* x[p][o0 ...] *= sigmoid(bU + agg[p] wU) for P pixels and NBC output vectors from o0: the
   up-projection (r -> C, wU[in][out]) in registers, the gate applied to the frames in place. */
#define UP_TILE(NAME, P, NBC)                                                                      \
static void NAME(const float *agg, long r, const float *wU, const float *bU, long C, float *x, long o0,    \
                 int relu) {                                                                        \
    vf acc[P][NBC];                                                                                \
    TILE_INIT(acc, bU + o0, P, NBC)                                                                \
    for (long k = 0; k < r; k++) TILE_FMA(acc, wU + k * C + o0, agg + k, r, P, NBC)                \
    float z[P * NBC * VW];                                                                         \
    _Pragma("GCC unroll 16") for (int p = 0; p < P; p++)                                           \
        _Pragma("GCC unroll 16") for (int j = 0; j < NBC; j++) vstore(z + (p * NBC + j) * VW, acc[p][j]); \
    for (int p = 0; p < P; p++) {                                                                  \
        float *xp = x + p * C + o0;                                                                \
        const float *zp = z + p * NBC * VW;                                                        \
        if (relu) {                                                                                \
            _Pragma("omp simd") for (int i = 0; i < NBC * VW; i++)                                 \
                xp[i] = fmaxf(xp[i] * sigmoid(zp[i]), 0.0f);                                       \
        } else {                                                                                   \
            _Pragma("omp simd") for (int i = 0; i < NBC * VW; i++) xp[i] *= sigmoid(zp[i]);        \
        }                                                                                          \
    }                                                                                              \
}
TILE_SIZES(UP_TILE, up)

/* SDA's gate applied in place: at each pixel the weighted sum of the maps (base[b][t] + a_T ReLU(mT[b][p])
   + a_L times mL brought back to H x W by adaptive averaging: output row i averages rows
   [uh0[i], uh1[i]) of mL, column j columns [uw0[j], uw1[j])), then x *= sigmoid(bU + sum wU),
   the up-projection computed tile by tile in registers (then the ReLU, with relu). C must be a
   multiple of zoo_vector_width(). */
static void sda_excite(float *x, long B, long T, long H, long W, long C, long r, const float *base, const float *mT,
                       const float *mL, long h, long w, const long *uh0, const long *uh1, const long *uw0,
                       const long *uw1, const float *a, const float *wU, const float *bU, int relu) {
    int nbc, pt;
    tile_of(C, &nbc, &pt);
    long HW = H * W, tiles = (HW + pt - 1) / pt;
    #pragma omp parallel
    {
        float agg[pt * r];  /* one tile's sums: a few KB */
        #pragma omp for schedule(static)
        for (long nt = 0; nt < B * T * tiles; nt++) {
            long n = nt / tiles, b = n / T, p0 = (nt % tiles) * pt, P = HW - p0 < pt ? HW - p0 : pt;
            const float *bs = base + n * r;
            float aT = a[2 * b], aL = a[2 * b + 1];
            for (long p = 0; p < P; p++) {
                long q = p0 + p, i = q / W, j = q % W;
                float *g = agg + p * r;
                const float *mt = mT + (b * HW + q) * r;
                #pragma omp simd
                for (long k = 0; k < r; k++) g[k] = bs[k] + aT * fmaxf(mt[k], 0.0f);
                float sc = aL / ((uh1[i] - uh0[i]) * (uw1[j] - uw0[j]));
                for (long u = uh0[i]; u < uh1[i]; u++)
                    for (long v = uw0[j]; v < uw1[j]; v++) {
                        const float *ml = mL + ((n * h + u) * w + v) * r;
                        #pragma omp simd
                        for (long k = 0; k < r; k++) g[k] += sc * ml[k];
                    }
            }
            float *xp = x + (n * HW + p0) * C;
            for (long o0 = 0; o0 < C; o0 += nbc * VW) {
                if (P == pt) {
                    if (nbc == 4) up_p4(agg, r, wU, bU, C, xp, o0, relu);
                    else if (nbc == 2) up_p2(agg, r, wU, bU, C, xp, o0, relu);
                    else up_p1(agg, r, wU, bU, C, xp, o0, relu);
                } else {
                    for (long p = 0; p < P; p++) {
                        if (nbc == 4) up_1x4(agg + p * r, r, wU, bU, C, xp + p * C, o0, relu);
                        else if (nbc == 2) up_1x2(agg + p * r, r, wU, bU, C, xp + p * C, o0, relu);
                        else up_1x1(agg + p * r, r, wU, bU, C, xp + p * C, o0, relu);
                    }
                }
            }
        }
    }
}

/* SDA's branches in one call: sda_pool, then both temporal convs (mS, mL: the maps of the
   branches pooled over the pixels and of the local one, after their ReLUs). */
void sda_branches(const float *y, long B, long T, long H, long W, long r, long h, long w, const long *h0,
                  const long *h1, const long *w0, const long *w1, float *sT, float *sF, float *sL,
                  const float *wS, const float *bS, const float *wL, const float *bL, float *mS, float *mL) {
    sda_pool(y, B, T, H, W, r, h, w, h0, h1, w0, w1, sT, sF, sL);
    sda_tconv(sF, B, T, 1, r, wS, bS, mS);
    sda_tconv(sL, B, T, h * w, r, wL, bL, mL);
}

/* SDA's gate in one call: sda_mix, then sda_excite (base, a: scratch of B*T*r and 2*B floats;
   relu: the block's ReLU after, in the same pass). */
void sda_gate(float *x, long B, long T, long H, long W, long C, long r, long h, long w, const float *sF,
              const float *wG, const float *bG, const float *mT, const float *mS, const float *mL,
              const float *uh, const float *uw, const float *q, const long *uh0, const long *uh1,
              const long *uw0, const long *uw1, const float *wU, const float *bU, float *base, float *a, int relu) {
    sda_mix(B, T, H * W, h, w, r, sF, wG, bG, mT, mS, mL, uh, uw, q, base, a);
    sda_excite(x, B, T, H, W, C, r, base, mT, mL, h, w, uh0, uh1, uw0, uw1, a, wU, bU, relu);
}

/* A running max m and sum a of the rows r times sc (the first row sets them). */
static inline void ctx_row(float *m, float *a, const float *r, float sc, long C, int first) {
    if (first) {
        #pragma omp simd
        for (long c = 0; c < C; c++) m[c] = a[c] = r[c] * sc;
        return;
    }
    #pragma omp simd
    for (long c = 0; c < C; c++) {
        float v = r[c] * sc;
        m[c] = fmaxf(m[c], v);
        a[c] += v;
    }
}

/* AIA's ST unit. The three axial contexts of x (channels-last frames x[b][t][h][w][c], each
   pixel times s[b][t][h][w] first when s is not NULL), max and mean, in one pass: over T into
   tm, ta[B][H][W][C]; over H into hm, ha[B][T][W][C]; over W into wm, wa[B][T][H][C]. Tasks are
   rows (clip, h), read whole: a row's T and W contexts are its task's own; the H context (over
   the rows) is kept per thread and merged after. (Tasks of one vector of channels each, reading
   it from every pixel, ran at 4-8 GB/s on 7x7 and 14x14 frames: one cache line per 1-2 KB.)
   With gT not NULL, each pixel is first gated in place, x *= (gT[b][h][w] + gH[b][t][w] +
   gW[b][t][h]) / 3 (a previous ST unit's last pass, aia_st_apply's), and the contexts are the
   gated x's: one pass where two would read the frames.
   Returns 0, or -1 when out of memory (nothing written). */
int aia_st_ctx(float *x, const float *s, const float *gT, const float *gH, const float *gW, long B, long T, long H,
               long W, long C, float *tm, float *ta, float *hm, float *ha, float *wm, float *wa) {
    long nh = B * T * W * C;  /* the H context */
    int failed = 0;
    float *priv = NULL;
    #pragma omp parallel
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        #pragma omp single
        {
            priv = malloc(sizeof(float) * 2 * nh * nt);
            failed = priv == NULL;
        }
        if (!failed) {
            float *pm = priv + 2 * nh * id, *pa = pm + nh;
            for (long i = 0; i < nh; i++) {
                pm[i] = -INFINITY;
                pa[i] = 0.0f;
            }
            #pragma omp for schedule(static)
            for (long bh = 0; bh < B * H; bh++) {
                long b = bh / H, h = bh % H;
                for (long t = 0; t < T; t++) {
                    float *wmr = wm + ((b * T + t) * H + h) * C, *war = wa + ((b * T + t) * H + h) * C;
                    for (long w = 0; w < W; w++) {
                        long px = ((b * T + t) * H + h) * W + w;
                        float *r = x + px * C;
                        float sc = s ? s[px] : 1.0f;
                        if (gT) {
                            const float *gt = gT + ((b * H + h) * W + w) * C, *gh = gH + ((b * T + t) * W + w) * C;
                            const float *gw = gW + ((b * T + t) * H + h) * C;
                            #pragma omp simd
                            for (long c = 0; c < C; c++) r[c] *= (gt[c] + gh[c] + gw[c]) * (1.0f / 3);
                        }
                        float *tmr = tm + ((b * H + h) * W + w) * C, *tar = ta + ((b * H + h) * W + w) * C;
                        float *hmr = pm + ((b * T + t) * W + w) * C, *har = pa + ((b * T + t) * W + w) * C;
                        ctx_row(wmr, war, r, sc, C, w == 0);
                        ctx_row(tmr, tar, r, sc, C, t == 0);
                        ctx_row(hmr, har, r, sc, C, 0);
                    }
                    #pragma omp simd
                    for (long c = 0; c < C; c++) war[c] *= 1.0f / W;
                }
                float *tar = ta + (b * H + h) * W * C;
                #pragma omp simd
                for (long i = 0; i < W * C; i++) tar[i] *= 1.0f / T;
            }
            #pragma omp for schedule(static)
            for (long i = 0; i < nh; i++) {
                float mx = -INFINITY, sm = 0.0f;
                for (int k = 0; k < nt; k++) {
                    mx = fmaxf(mx, priv[2 * nh * k + i]);
                    sm += priv[2 * nh * k + nh + i];
                }
                hm[i] = mx;
                ha[i] = sm * (1.0f / H);
            }
        }
    }
    free(priv);
    return failed ? -1 : 0;
}

/* One row of an axial gate, nb vectors of channels from c0: for each of the three channel taps,
   the sum over the 18 (context, A, R) taps of its weight times the input channel, s_d[c] =
   sum w_d x[c], accumulated in registers (one aligned load feeds all three); the row's output
   then reads s_0[c - 1] + s_1[c] + s_2[c + 1]. */
static inline __attribute__((always_inline)) void axial_block(const float *m, const float *a, long b, long i, long j,
                                                              long A, long R, long C, long c0, int nb,
                                                              const float *w, float *s0, float *s1, float *s2) {
    vf acc[4][3];
    for (int k = 0; k < 4; k++) acc[k][0] = acc[k][1] = acc[k][2] = vbcast(0.0f);
    for (long ch = 0; ch < 2; ch++) {
        const float *src = ch ? a : m;
        for (long di = 0; di < 3; di++) {
            long ii = i + di - 1;
            if (ii < 0 || ii >= A) continue;
            for (long dj = 0; dj < 3; dj++) {
                long jj = j + dj - 1;
                if (jj < 0 || jj >= R) continue;
                const float *row = src + ((b * A + ii) * R + jj) * C + c0, *wk = w + ((ch * 3 + di) * 3 + dj) * 3;
                vf w0 = vbcast(wk[0]), w1 = vbcast(wk[1]), w2 = vbcast(wk[2]);
                for (int k = 0; k < nb; k++) {
                    vf v = vload(row + k * VW);
                    acc[k][0] += w0 * v;
                    acc[k][1] += w1 * v;
                    acc[k][2] += w2 * v;
                }
            }
        }
    }
    for (int k = 0; k < nb; k++) {
        vstore(s0 + c0 + k * VW, acc[k][0]);
        vstore(s1 + c0 + k * VW, acc[k][1]);
        vstore(s2 + c0 + k * VW, acc[k][2]);
    }
}

/* An axial gate: g = sigmoid(bias + a 2 -> 1 3x3x3 conv, zero padding, of the context (max m,
   mean a), both [B][A][R][C]) over the grid (A, R, C); w[channel][a][r][c] (27 per channel).
   C a multiple of VW; each row's channels in blocks of up to 4 vectors, held in registers. */
void aia_axial(const float *m, const float *a, long B, long A, long R, long C, const float *w, float bias,
               float *g) {
    long nv = C / VW;
    int nb = nv % 4 == 0 ? 4 : nv % 2 == 0 ? 2 : 1;
    #pragma omp parallel
    {
        float s0[C + 1], s1[C], s2[C + 1];  /* s0[c + 1] = s_0[c], s2[c] = s_2[c]: zero beyond the row */
        s0[0] = s2[C] = 0.0f;
        #pragma omp for schedule(static)
        for (long bar = 0; bar < B * A * R; bar++) {
            long b = bar / (A * R), i = bar / R % A, j = bar % R;
            for (long c0 = 0; c0 < C; c0 += nb * VW) {
                if (nb == 4) axial_block(m, a, b, i, j, A, R, C, c0, 4, w, s0 + 1, s1, s2);
                else if (nb == 2) axial_block(m, a, b, i, j, A, R, C, c0, 2, w, s0 + 1, s1, s2);
                else axial_block(m, a, b, i, j, A, R, C, c0, 1, w, s0 + 1, s1, s2);
            }
            float *o = g + bar * C;
            #pragma omp simd
            for (long c = 0; c < C; c++) o[c] = sigmoid(bias + s0[c] + s1[c] + s2[c + 1]);
        }
    }
}

/* x[b][t][h][w] *= (gT[b][h][w] + gH[b][t][w] + gW[b][t][h]) / 3, vectors of C channels; then
   the ReLU, with relu. */
void aia_st_apply(float *x, long B, long T, long H, long W, long C, const float *gT, const float *gH,
                  const float *gW, int relu) {
    #pragma omp parallel for schedule(static)
    for (long bth = 0; bth < B * T * H; bth++) {
        long b = bth / (T * H), t = bth / H % T, h = bth % H;
        const float *gw = gW + bth * C;
        for (long w = 0; w < W; w++) {
            float *r = x + (bth * W + w) * C;
            const float *gt = gT + ((b * H + h) * W + w) * C, *gh = gH + ((b * T + t) * W + w) * C;
            #pragma omp simd
            for (long c = 0; c < C; c++) r[c] *= (gt[c] + gh[c] + gw[c]) * (1.0f / 3);
            if (relu) {
                #pragma omp simd
                for (long c = 0; c < C; c++) r[c] = fmaxf(r[c], 0.0f);
            }
        }
    }
}

/* A join that also shifts its output for the next block (whose input it is): out = ReLU(out +
   identity), identity read back as tsm_join does when fi > 0 (x lent-shifted, si; fi must then
   equal fo) or as it lies (fi = 0); then channels [0, fo) of frame t take frame t + 1's and
   [fo, 2fo) frame t - 1's, the ends zero, and so[B][HW][2fo] keeps what the shift drops
   (tsm_shift's saved). One pass instead of a join and the next block's shift. Returns 0, or -1
   when out of memory (out untouched). */
int tsm_join_shift(float *out, const float *x, long B, long T, long HW, long C, long fi, const float *si, long fo,
                   float *so) {
    int failed = 0;
    /* pixels per task (each frame's part of a task is one contiguous run), up to 16 while the
       task's shifted channels over T fit in 64 KB */
    long PB = 16384 / (T * 2 * fo);
    PB = PB < 1 ? 1 : PB > 16 ? 16 : PB;
    long blocks = (HW + PB - 1) / PB, fs = HW * C;
    #pragma omp parallel
    {
        float *col = malloc(sizeof(float) * T * PB * 2 * fo);
        #pragma omp atomic
        failed += col == NULL;
        #pragma omp barrier
        #pragma omp for schedule(static)
        for (long bk = 0; bk < (failed ? 0 : B * blocks); bk++) {
            long b = bk / blocks, p0 = (bk % blocks) * PB, np = HW - p0 < PB ? HW - p0 : PB;
            float *oc = out + (b * T * HW + p0) * C;
            const float *xc = x + (b * T * HW + p0) * C;
            for (long t = 0; t < T; t++)  /* fi is 0 or fo: the shifted channels go to col */
                for (long p = 0; p < np; p++) {
                    float *o = oc + t * fs + p * C, *c = col + (t * PB + p) * 2 * fo;
                    const float *r = xc + t * fs + p * C, *s = si ? si + (b * HW + p0 + p) * 2 * fi : NULL;
                    if (fi) {
                        const float *a = t > 0 ? r - fs : s, *z = t + 1 < T ? r + fs + fi : s + fi;
                        #pragma omp simd
                        for (long i = 0; i < fi; i++) c[i] = fmaxf(o[i] + a[i], 0.0f);
                        #pragma omp simd
                        for (long i = 0; i < fi; i++) c[fi + i] = fmaxf(o[fi + i] + z[i], 0.0f);
                    } else {
                        #pragma omp simd
                        for (long i = 0; i < 2 * fo; i++) c[i] = fmaxf(o[i] + r[i], 0.0f);
                    }
                    #pragma omp simd
                    for (long i = 2 * fo; i < C; i++) o[i] = fmaxf(o[i] + r[i], 0.0f);
                }
            for (long p = 0; p < np; p++) {
                float *sv = so + (b * HW + p0 + p) * 2 * fo;
                memcpy(sv, col + p * 2 * fo, sizeof(float) * fo);
                memcpy(sv + fo, col + ((T - 1) * PB + p) * 2 * fo + fo, sizeof(float) * fo);
            }
            for (long t = 0; t < T; t++)
                for (long p = 0; p < np; p++) {
                    float *o = oc + t * fs + p * C;
                    if (t + 1 < T) memcpy(o, col + ((t + 1) * PB + p) * 2 * fo, sizeof(float) * fo);
                    else memset(o, 0, sizeof(float) * fo);
                    if (t > 0) memcpy(o + fo, col + ((t - 1) * PB + p) * 2 * fo + fo, sizeof(float) * fo);
                    else memset(o + fo, 0, sizeof(float) * fo);
                }
        }
        free(col);
    }
    return failed ? -1 : 0;
}

/* STC's middle conv around its two library convs. stc_shift: S_T's input, channels [0, cs) of
   x (frames of C channels), TSM-shifted (channels [0, f) from frame t + 1, [f, 2f) from t - 1,
   zero beyond the clip), into xs[N][HW][cs] for the 3x3 conv: one pass. */
void stc_shift(const float *x, long B, long T, long HW, long C, long cs, long f, float *xs) {
    #pragma omp parallel for schedule(static)
    for (long np = 0; np < B * T * HW; np++) {
        long t = np / HW % T;
        const float *r = x + np * C;
        float *o = xs + np * cs;
        if (t + 1 < T) memcpy(o, r + HW * C, sizeof(float) * f);
        else memset(o, 0, sizeof(float) * f);
        if (t > 0) memcpy(o + f, r - HW * C + f, sizeof(float) * f);
        else memset(o + f, 0, sizeof(float) * f);
        memcpy(o + 2 * f, r + 2 * f, sizeof(float) * (cs - 2 * f));
    }
}

/* T_S's temporal conv (kernel (3, 1, 1), spatial stride st, no spatial padding, zero padding over
   T, c -> c channels, w[tap][in][out], bias or zeros) on channels [cs, cs + c) of x (frames of
   H x W pixels of C channels), tile by tile along each output row in registers, into
   yt[N][h][w][c] (h = ceil(H / st), w = ceil(W / st)); and its mean over T into pS[B][h][w][c]
   (SR's pooled input) while the tile is at hand. c must be a multiple of zoo_vector_width(). */
void stc_temporal(const float *x, long B, long T, long H, long W, long C, long st, long cs, long c,
                  const float *w, const float *bias, float *yt, float *pS) {
    int nbc, pt;
    tile_of(c, &nbc, &pt);
    if (st == 1) {  /* tiles may run across rows */
        W *= H;
        H = 1;
    }
    long h = (H + st - 1) / st, wo = (W + st - 1) / st, per_row = (wo + pt - 1) / pt, fs = h * wo * c;
    #pragma omp parallel for schedule(static)
    for (long bt = 0; bt < B * h * per_row; bt++) {
        long b = bt / (h * per_row), i = bt / per_row % h, j0 = (bt % per_row) * pt;
        long n = wo - j0 < pt ? wo - j0 : pt, q0 = i * wo + j0;
        float *out = yt + (b * T * h * wo + q0) * c;
        const float *in = x + ((b * T * H + i * st) * W + j0 * st) * C + cs;
        conv_group(in, H * W * C, C * st, T, c, w, bias, out, fs, n);
        float *ps = pS + (b * h * wo + q0) * c;
        memset(ps, 0, sizeof(float) * n * c);
        for (long t = 0; t < T; t++) {
            const float *o = out + t * fs;
            #pragma omp simd
            for (long k = 0; k < n * c; k++) ps[k] += o[k];
        }
        #pragma omp simd
        for (long k = 0; k < n * c; k++) ps[k] *= 1.0f / T;
    }
}

/* The refinements' pooled inputs: pT[B][T][cs], the mean of S_T's output ys[N][HW][cs] over each
   frame's pixels; pS[B][HW][ct] (unless NULL), the mean of T_S's output yt[N][HW][ct] over T. */
void stc_pools(const float *ys, const float *yt, long B, long T, long HW, long cs, long ct, float *pT, float *pS) {
    #pragma omp parallel
    {
        float acc[cs];
        #pragma omp for schedule(static) nowait
        for (long n = 0; n < B * T; n++) {
            memset(acc, 0, sizeof(float) * cs);
            for (long p = 0; p < HW; p++) {
                const float *r = ys + (n * HW + p) * cs;
                #pragma omp simd
                for (long i = 0; i < cs; i++) acc[i] += r[i];
            }
            for (long i = 0; i < cs; i++) pT[n * cs + i] = acc[i] / HW;
        }
        #pragma omp for schedule(static)
        for (long bp = 0; bp < (pS ? B * HW : 0); bp++) {
            long b = bp / HW, p = bp % HW;
            float *o = pS + bp * ct;
            memset(o, 0, sizeof(float) * ct);
            for (long t = 0; t < T; t++) {
                const float *r = yt + ((b * T + t) * HW + p) * ct;
                #pragma omp simd
                for (long i = 0; i < ct; i++) o[i] += r[i];
            }
            #pragma omp simd
            for (long i = 0; i < ct; i++) o[i] *= 1.0f / T;
        }
    }
}

/* GST's middle conv after its two library convs: out[N][HW][cs + ct] = act([ys | the temporal
   conv]), the temporal conv summed from its three taps' 2D conv a[N][HW][3 ct] (tap k of frame
   t + k - 1, zero beyond the clip), plus its bias where it has one; act: the block's ReLU (relu),
   or none. One pass instead of the plain form's padded copies, sums, copy and concatenation. */
void gst_join(const float *ys, const float *a, long B, long T, long HW, long cs, long ct, const float *bias,
              int relu, float *out) {
    long C = cs + ct;
    #pragma omp parallel for schedule(static)
    for (long q = 0; q < B * T * HW; q++) {
        long t = q / HW % T;
        const float *s = ys + q * cs, *mid = a + q * 3 * ct + ct;
        const float *prev = t > 0 ? a + (q - HW) * 3 * ct : NULL;               /* tap 0 of frame t - 1 */
        const float *next = t < T - 1 ? a + (q + HW) * 3 * ct + 2 * ct : NULL;  /* tap 2 of frame t + 1 */
        float *o = out + q * C, *ot = o + cs;
        #pragma omp simd
        for (long i = 0; i < cs; i++) o[i] = relu ? fmaxf(s[i], 0.0f) : s[i];
        #pragma omp simd
        for (long i = 0; i < ct; i++) ot[i] = mid[i] + (bias ? bias[i] : 0.0f);
        if (prev) {
            #pragma omp simd
            for (long i = 0; i < ct; i++) ot[i] += prev[i];
        }
        if (next) {
            #pragma omp simd
            for (long i = 0; i < ct; i++) ot[i] += next[i];
        }
        if (relu) {
            #pragma omp simd
            for (long i = 0; i < ct; i++) ot[i] = fmaxf(ot[i], 0.0f);
        }
    }
}

/* out[N][HW][cs + ct] = ReLU([ys * gT[b][t] | yt * gS[b][p]] * scale + shift): both refinements'
   gates (NULL: none), the concatenation, the eval BatchNorm that follows and the block's ReLU
   after it, in one pass. */
void stc_join(const float *ys, const float *yt, long B, long T, long HW, long cs, long ct, const float *gT,
              const float *gS, const float *scale, const float *shift, float *out) {
    long C = cs + ct;
    #pragma omp parallel for schedule(static)
    for (long np = 0; np < B * T * HW; np++) {
        long n = np / HW, b = n / T, p = np % HW;
        const float *a = ys + np * cs, *z = yt + np * ct;
        float *o = out + np * C;
        if (gT) {
            const float *g = gT + n * cs;
            #pragma omp simd
            for (long i = 0; i < cs; i++) o[i] = a[i] * g[i] * scale[i] + shift[i];
        } else {
            #pragma omp simd
            for (long i = 0; i < cs; i++) o[i] = a[i] * scale[i] + shift[i];
        }
        if (gS) {
            const float *g = gS + (b * HW + p) * ct;
            #pragma omp simd
            for (long i = 0; i < ct; i++) o[cs + i] = z[i] * g[i] * scale[cs + i] + shift[cs + i];
        } else {
            #pragma omp simd
            for (long i = 0; i < ct; i++) o[cs + i] = z[i] * scale[cs + i] + shift[cs + i];
        }
        #pragma omp simd
        for (long i = 0; i < C; i++) o[i] = fmaxf(o[i], 0.0f);
    }
}

/* TSM's shift in place: channels [0, f) of frame t take frame t + 1's, [f, 2f) frame t - 1's, the
   missing ends zero; one pass over the 2f channels of each pixel, frame by frame in the order that
   reads each value before it is overwritten. saved (B*HW*2f, or NULL when x is not needed after):
   what the shift loses, frame 0's [0, f) and the last frame's [f, 2f), for tsm_join. */
void tsm_shift(float *x, long B, long T, long HW, long C, long f, float *saved) {
    enum { PB = 16 };  /* pixels per task: each frame's part of a task is one contiguous run */
    long blocks = (HW + PB - 1) / PB, fs = HW * C;
    #pragma omp parallel for schedule(static)
    for (long bk = 0; bk < B * blocks; bk++) {
        long b = bk / blocks, p0 = (bk % blocks) * PB, np = HW - p0 < PB ? HW - p0 : PB;
        float *blk = x + (b * T * HW + p0) * C;
        if (saved)
            for (long p = 0; p < np; p++) {
                float *sv = saved + (b * HW + p0 + p) * 2 * f;
                memcpy(sv, blk + p * C, sizeof(float) * f);
                memcpy(sv + f, blk + (T - 1) * fs + p * C + f, sizeof(float) * f);
            }
        for (long t = 0; t + 1 < T; t++)
            for (long p = 0; p < np; p++) memcpy(blk + t * fs + p * C, blk + (t + 1) * fs + p * C, sizeof(float) * f);
        for (long p = 0; p < np; p++) memset(blk + (T - 1) * fs + p * C, 0, sizeof(float) * f);
        for (long t = T - 1; t > 0; t--)
            for (long p = 0; p < np; p++)
                memcpy(blk + t * fs + p * C + f, blk + (t - 1) * fs + p * C + f, sizeof(float) * f);
        for (long p = 0; p < np; p++) memset(blk + p * C + f, 0, sizeof(float) * f);
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
