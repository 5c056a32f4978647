/* Lower bounds for the engine's online cases on this CPU, measured in plain C.
 *
 * Each mode times the core of one case, written for that case alone, with nothing
 * else the engine does (data gathering, loss bookkeeping, barriers):
 *
 *   tiny   one online SGD update of the 2-5-5-5-2 sigmoid net with softmax cross-entropy
 *          (the 10-point set: 10 points reshuffled each epoch, 50,000 epochs), every layer
 *          padded to 8 lanes so that a row of W is one AVX register and no loop has a
 *          runtime trip count; -DNO_EXP replaces the hidden exponentials by a product,
 *          leaving the serial chain of dependent operations
 *   rows   one thread's share of 784-256-128-10's first layer in online SGD: the forward
 *          pass (392 input rows of 256 float32) and the in-place update of the same rows
 *   adam   one thread's share of online Adam in float64: 117,760 parameters, the
 *          gradient a[k] * d[j] formed in place, denormals flushed (as the engine trains)
 *
 * Build and run (the two-core figures: one copy per core, e.g. taskset -c 0 and -c 1):
 *
 *     gcc -O3 -mavx2 -mfma -fno-math-errno -fno-trapping-math -fassociative-math \
 *         -fno-signed-zeros benchmarks/floors.c -o /tmp/floors -lm && /tmp/floors tiny
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <xmmintrin.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static unsigned int seed = 1;

static unsigned int next_random(void) {
    seed = seed * 1664525u + 1013904223u;
    return seed >> 8;
}

static float uniform(void) { return next_random() * (1.0f / 16777216.0f); }

/* --- tiny: 2-5-5-5-2 online SGD ------------------------------------------------------ */

#define LAYERS 4
#define LANES 8
static const int sizes[LAYERS + 1] = {2, 5, 5, 5, 2};
static float W[LAYERS][LANES][LANES];  /* layer, input row (row sizes[l] is the bias), output lane */
static float acts[LAYERS + 1][LANES], deltas[LAYERS + 1][LANES];

static void tiny_forward(void) {
    for (int l = 0; l < LAYERS; l++) {
        float z[LANES], e[LANES];
        for (int j = 0; j < LANES; j++) z[j] = W[l][sizes[l]][j];
        for (int k = 0; k < sizes[l]; k++)
            for (int j = 0; j < LANES; j++) z[j] += acts[l][k] * W[l][k][j];
        if (l == LAYERS - 1) {
            memcpy(acts[l + 1], z, sizeof z);
            continue;
        }
#ifdef NO_EXP
        for (int j = 0; j < LANES; j++) e[j] = 0.5f * fabsf(z[j]);
#else
        for (int j = 0; j < LANES; j++) e[j] = expf(-fabsf(z[j]));
#endif
        for (int j = 0; j < LANES; j++) acts[l + 1][j] = (z[j] >= 0 ? 1 : e[j]) / (1 + e[j]);
    }
}

static double tiny_loss_gradient(int label) {
    const float* out = acts[LAYERS];
    float top = out[0] > out[1] ? out[0] : out[1];
    float e0 = expf(out[0] - top), e1 = expf(out[1] - top), sum = e0 + e1;
    deltas[LAYERS][0] = e0 / sum - (label == 0);
    deltas[LAYERS][1] = e1 / sum - (label == 1);
    return logf(sum) - (out[label] - top);
}

static void tiny_backward_in_place(float lr) {
    for (int l = LAYERS - 1; l >= 0; l--) {
        float* d = deltas[l + 1];
        if (l < LAYERS - 1)
            for (int j = 0; j < LANES; j++) d[j] *= acts[l + 1][j] * (1 - acts[l + 1][j]);
        for (int k = 0; k < sizes[l]; k++) {
            float dot = 0;
            for (int j = 0; j < LANES; j++) dot += W[l][k][j] * d[j];
            deltas[l][k] = dot;
            for (int j = 0; j < LANES; j++) W[l][k][j] -= lr * acts[l][k] * d[j];
        }
        for (int j = 0; j < LANES; j++) W[l][sizes[l]][j] -= lr * d[j];
    }
}

static void tiny(void) {
    enum { POINTS = 10, EPOCHS = 50000 };
    float X[POINTS][2];
    int y[POINTS], order[POINTS];
    for (int i = 0; i < POINTS; i++) {
        X[i][0] = uniform();
        X[i][1] = uniform();
        y[i] = X[i][0] > X[i][1];
        order[i] = i;
    }
    for (int l = 0; l < LAYERS; l++)
        for (int k = 0; k <= sizes[l]; k++)
            for (int j = 0; j < sizes[l + 1]; j++) W[l][k][j] = uniform() - 0.5f;
    double loss = 0, start = now();
    for (int epoch = 0; epoch < EPOCHS; epoch++) {
        for (int i = POINTS - 1; i > 0; i--) {
            int j = next_random() % (i + 1), swap = order[i];
            order[i] = order[j];
            order[j] = swap;
        }
        for (int s = 0; s < POINTS; s++) {
            acts[0][0] = X[order[s]][0];
            acts[0][1] = X[order[s]][1];
            tiny_forward();
            loss += tiny_loss_gradient(y[order[s]]);
            tiny_backward_in_place(0.5f);
        }
    }
    double seconds = now() - start;
    printf("tiny: %d updates in %.3f s, %.0f ns per update (mean loss %.3f)\n", POINTS * EPOCHS, seconds,
           seconds / (POINTS * EPOCHS) * 1e9, loss / (POINTS * EPOCHS));
}

/* --- rows: a thread's share of the first layer, online SGD --------------------------- */

#define ROWS 392
#define COLS 256
static float rows_W[ROWS][COLS], rows_x[ROWS], partial[COLS], rows_d[COLS];

__attribute__((noinline)) static void rows_forward(void) {
    memset(partial, 0, sizeof partial);
    for (int k = 0; k < ROWS; k++)
        for (int j = 0; j < COLS; j++) partial[j] += rows_x[k] * rows_W[k][j];
}

__attribute__((noinline)) static void rows_update(float lr) {
    for (int k = 0; k < ROWS; k++) {
        float step = lr * rows_x[k];
        for (int j = 0; j < COLS; j++) rows_W[k][j] -= step * rows_d[j];
    }
}

static void rows(void) {
    enum { REPEATS = 20000 };
    for (int k = 0; k < ROWS; k++) {
        rows_x[k] = uniform();
        for (int j = 0; j < COLS; j++) rows_W[k][j] = uniform() - 0.5f;
    }
    for (int j = 0; j < COLS; j++) rows_d[j] = 1e-6f * (uniform() - 0.5f);
    double start = now();
    for (int r = 0; r < REPEATS; r++) rows_forward();
    double forward = (now() - start) / REPEATS;
    start = now();
    for (int r = 0; r < REPEATS; r++) rows_update(1e-3f);
    double update = (now() - start) / REPEATS;
    printf("rows: %dx%d float32, forward %.2f us, update %.2f us per sample (check %g)\n", ROWS, COLS,
           forward * 1e6, update * 1e6, partial[7] + rows_W[3][5]);
}

/* --- adam: a thread's share of online Adam, float64 ---------------------------------- */

#define ADAM_ROWS 460
static double adam_p[ADAM_ROWS][COLS], adam_m[ADAM_ROWS][COLS], adam_v[ADAM_ROWS][COLS];
static double adam_a[ADAM_ROWS], adam_d[COLS];

__attribute__((noinline)) static void adam_step(double beta1, double beta2, double step_size, double eps) {
    for (int k = 0; k < ADAM_ROWS; k++)
        for (int j = 0; j < COLS; j++) {
            double g = adam_a[k] * adam_d[j];
            double m = beta1 * adam_m[k][j] + (1 - beta1) * g, v = beta2 * adam_v[k][j] + (1 - beta2) * g * g;
            adam_m[k][j] = m;
            adam_v[k][j] = v;
            adam_p[k][j] -= step_size * m / (sqrt(v) + eps);
        }
}

static void adam(void) {
    enum { REPEATS = 2000 };
    _mm_setcsr(_mm_getcsr() | 0x8040);
    for (int k = 0; k < ADAM_ROWS; k++) {
        adam_a[k] = uniform();
        for (int j = 0; j < COLS; j++) adam_p[k][j] = uniform() - 0.5;
    }
    for (int j = 0; j < COLS; j++) adam_d[j] = 1e-3 * (uniform() - 0.5);
    double start = now();
    for (int r = 0; r < REPEATS; r++) adam_step(0.9, 0.999, 1e-3, 1e-8);
    double seconds = (now() - start) / REPEATS;
    printf("adam: %d float64 parameters, %.1f us per sample, %.2f ns per parameter (check %g)\n",
           ADAM_ROWS * COLS, seconds * 1e6, seconds / (ADAM_ROWS * COLS) * 1e9, adam_p[3][5]);
}

int main(int argc, char** argv) {
    const char* mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "tiny")) tiny();
    else if (!strcmp(mode, "rows")) rows();
    else if (!strcmp(mode, "adam")) adam();
    else {
        fprintf(stderr, "usage: %s tiny|rows|adam\n", argv[0]);
        return 2;
    }
    return 0;
}
