/* mlx-speech: the cblas_sgemm that MLX's CPU matmul calls on Linux x86-64 (see _blas.py).

   Products with at most FEW_ROWS rows and the weight as rows of K (row-major A (M x K) times
   B^T with B (N x K), MLX's layout for x @ w.T) run the kernel below; every other call goes to
   OpenBLAS's own cblas_sgemm, which the private OpenBLAS copy keeps under its prefixed name.

   Why: a streaming step multiplies 1-4 rows by every weight of the model, so it only reads
   weights. OpenBLAS's small-matrix kernel reads them at ~7 GB/s on one core here; this loop
   reads two weight rows per pass with a software prefetch a fixed distance ahead in each
   (2 x 512 @ 2048 x 512 from L3: ~500 -> ~225 us on one core). Products of at least
   SPLIT_MIN_FLOATS weights are split in two: a helper thread takes the first half of the
   weight rows while the caller does the second, so both cores read weights.

   The helper spins SPIN_NS after each job, then sleeps on a futex. A short spin covers the
   back-to-back products of one transformer step and leaves the core to other threads between
   steps (Mimi 10 s stream here: 50 us spin 0.84x the one-thread frame time, 1 ms 1.08x). If
   the helper has not started on its half when the caller is done with its own, the caller does
   that half too, so a descheduled helper costs at most the one-thread time. One caller at a
   time uses the helper; others run on one thread. A forked child starts a new helper.

   Numerics: each output is the fp32 sum of K products in 8 lanes, then the lanes added, the
   same whichever thread computes it; the same inputs give the same bits on every call. Results
   differ from OpenBLAS's by rounding (relative ~1e-7). Built with -mavx2 -mfma by _blas.py,
   only for CPUs that report both (and checked again here). */

#include <immintrin.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { ROW_MAJOR = 101, COL_MAJOR = 102, NO_TRANS = 111, TRANS = 112, CONJ_TRANS = 113 };

/* OpenBLAS's own entry point: the private copy keeps this one name prefixed. */
void scipy_cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta, float *c,
                       int ldc);

#define FEW_ROWS 4
#define ROWS_PER_PASS 2
#define PREFETCH_FLOATS 4096
#define SPLIT_MIN_FLOATS (1 << 18)
#define SPIN_NS 50000L

static inline float lane_sum(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

static inline void store(float *c, float sum, float alpha, float beta) {
    float v = alpha * sum;
    if (beta != 0.0f) v += beta * *c;
    *c = v;
}

/* C[i, j] = alpha * sum_k A[i, k] * B[j, k] + beta * C[i, j] for i < ROWS (a constant). */
static inline __attribute__((always_inline)) void few_rows(
        const int ROWS, int n, int k, float alpha, const float *a, int lda, const float *b,
        int ldb, float beta, float *c, int ldc) {
    int j = 0;
    for (; j + ROWS_PER_PASS <= n; j += ROWS_PER_PASS) {
        const float *w = b + (size_t)j * ldb;
        __m256 acc[FEW_ROWS][ROWS_PER_PASS];
        for (int i = 0; i < ROWS; i++)
            for (int r = 0; r < ROWS_PER_PASS; r++) acc[i][r] = _mm256_setzero_ps();
        int p = 0;
        for (; p + 8 <= k; p += 8) {
            if ((p & 15) == 0)
                for (int r = 0; r < ROWS_PER_PASS; r++)
                    _mm_prefetch((const char *)(w + (size_t)r * ldb + p + PREFETCH_FLOATS),
                                 _MM_HINT_T0);
            __m256 x[FEW_ROWS];
            for (int i = 0; i < ROWS; i++) x[i] = _mm256_loadu_ps(a + (size_t)i * lda + p);
            for (int r = 0; r < ROWS_PER_PASS; r++) {
                __m256 wv = _mm256_loadu_ps(w + (size_t)r * ldb + p);
                for (int i = 0; i < ROWS; i++) acc[i][r] = _mm256_fmadd_ps(x[i], wv, acc[i][r]);
            }
        }
        for (int i = 0; i < ROWS; i++)
            for (int r = 0; r < ROWS_PER_PASS; r++) {
                float s = lane_sum(acc[i][r]);
                for (int q = p; q < k; q++) s += a[(size_t)i * lda + q] * w[(size_t)r * ldb + q];
                store(c + (size_t)i * ldc + j + r, s, alpha, beta);
            }
    }
    for (; j < n; j++) {
        const float *w = b + (size_t)j * ldb;
        for (int i = 0; i < ROWS; i++) {
            __m256 acc = _mm256_setzero_ps();
            int p = 0;
            for (; p + 8 <= k; p += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + (size_t)i * lda + p),
                                      _mm256_loadu_ps(w + p), acc);
            float s = lane_sum(acc);
            for (int q = p; q < k; q++) s += a[(size_t)i * lda + q] * w[q];
            store(c + (size_t)i * ldc + j, s, alpha, beta);
        }
    }
}


/* ---- the helper thread --------------------------------------------------------------- */

struct job {
    int rows, n, k, lda, ldb, ldc;
    unsigned seq;
    float alpha, beta;
    const float *a, *b;
    float *c;
};

static struct job pending;                 /* written by the caller before it resets `claimed` */
static atomic_uint seq;                    /* bumped by the caller for each new job */
static atomic_int claimed = 1;             /* 0: the pending job is free to take */
static atomic_uint done;                   /* seq of the last job the helper finished */
static atomic_int sleeping;
static pthread_mutex_t owner = PTHREAD_MUTEX_INITIALIZER;  /* one caller at a time */
static int helper_state;                   /* 0: not started, 1: running, -1: failed to start */

static void run(const struct job *j) {
    switch (j->rows) {
    case 1: few_rows(1, j->n, j->k, j->alpha, j->a, j->lda, j->b, j->ldb, j->beta, j->c, j->ldc); return;
    case 2: few_rows(2, j->n, j->k, j->alpha, j->a, j->lda, j->b, j->ldb, j->beta, j->c, j->ldc); return;
    case 3: few_rows(3, j->n, j->k, j->alpha, j->a, j->lda, j->b, j->ldb, j->beta, j->c, j->ldc); return;
    default: few_rows(4, j->n, j->k, j->alpha, j->a, j->lda, j->b, j->ldb, j->beta, j->c, j->ldc); return;
    }
}

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void *helper(void *unused) {
    (void)unused;
    unsigned seen = atomic_load(&seq);
    for (;;) {
        long start = now_ns();
        int spins = 0;
        while (atomic_load_explicit(&seq, memory_order_acquire) == seen) {
            _mm_pause();
            if (++spins % 64 == 0 && now_ns() - start > SPIN_NS) {
                atomic_store(&sleeping, 1);
                if (atomic_load(&seq) == seen)
                    syscall(SYS_futex, &seq, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
                atomic_store(&sleeping, 0);
                start = now_ns();
            }
        }
        seen = atomic_load_explicit(&seq, memory_order_acquire);
        int expected = 0;
        if (atomic_compare_exchange_strong(&claimed, &expected, 1)) {
            struct job j = pending;
            run(&j);
            atomic_store_explicit(&done, j.seq, memory_order_release);
        }
    }
    return NULL;
}

static void forked_child(void) {
    helper_state = 0;
    atomic_store(&claimed, 1);
    atomic_store(&sleeping, 0);
    pthread_mutex_init(&owner, NULL);
}

__attribute__((constructor)) static void register_fork_handler(void) {
    pthread_atfork(NULL, NULL, forked_child);
}

/* Runs the job on two threads and returns 1, or returns 0 (the caller runs it alone). */
static int run_split(const struct job *all) {
    if ((long)all->n * all->k < SPLIT_MIN_FLOATS || all->n < 16) return 0;
    if (pthread_mutex_trylock(&owner) != 0) return 0;
    if (helper_state == 0) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        helper_state = pthread_create(&thread, &attr, helper, NULL) == 0 ? 1 : -1;
        pthread_attr_destroy(&attr);
    }
    if (helper_state != 1) {
        pthread_mutex_unlock(&owner);
        return 0;
    }
    int half = (all->n / 2) & ~1;
    unsigned s = atomic_load(&seq) + 1u;
    pending = *all;
    pending.n = half;
    pending.seq = s;
    struct job mine = *all;
    mine.n = all->n - half;
    mine.b = all->b + (size_t)half * all->ldb;
    mine.c = all->c + half;
    atomic_store_explicit(&claimed, 0, memory_order_release);
    /* seq_cst store, then the load of `sleeping`: either the helper sees the new seq before it
       waits (the futex also rechecks it) or this thread sees it asleep and wakes it. */
    atomic_store(&seq, s);
    if (atomic_load(&sleeping)) syscall(SYS_futex, &seq, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    run(&mine);
    int expected = 0;
    if (atomic_compare_exchange_strong(&claimed, &expected, 1)) {
        struct job j = pending;  /* the helper never took it: do it here */
        run(&j);
    } else {
        while (atomic_load_explicit(&done, memory_order_acquire) != s) _mm_pause();
    }
    pthread_mutex_unlock(&owner);
    return 1;
}

/* ---- the entry point ----------------------------------------------------------------- */

static int cpu_ok = -1;

void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    if (cpu_ok < 0)
        cpu_ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    /* Column-major C = op(A) op(B) is row-major C^T = op(B)^T op(A)^T. */
    int rm = order == ROW_MAJOR;
    int rows = rm ? m : n, cols = rm ? n : m;
    int ta = rm ? trans_a : trans_b, tb = rm ? trans_b : trans_a;
    const float *x = rm ? a : b, *w = rm ? b : a;
    int ldx = rm ? lda : ldb, ldw = rm ? ldb : lda;
    if (cpu_ok && (order == ROW_MAJOR || order == COL_MAJOR) && rows >= 1 && rows <= FEW_ROWS
        && cols >= 1 && k >= 1 && ta == NO_TRANS && (tb == TRANS || tb == CONJ_TRANS)) {
        struct job all = {rows, cols, k, ldx, ldw, ldc, 0u, alpha, beta, x, w, c};
        if (!run_split(&all)) run(&all);
        return;
    }
    scipy_cblas_sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
