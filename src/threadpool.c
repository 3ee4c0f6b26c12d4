#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "error.h"

#define MAX_THREADS 256

/* A job is a generation number plus the function to run; tasks are handed out with an atomic
 * counter so uneven tasks balance. Between jobs a worker first spins on the generation for a
 * short while (a forward pass issues jobs back to back, some only microseconds long, and waking
 * a sleeping thread costs tens of microseconds), then sleeps on a condition variable. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t threads[MAX_THREADS];
    int n_threads;     /* including the caller */
    int n_workers;     /* started threads */
    atomic_uint generation;
    atomic_int running; /* workers still in the current job */
    int sleepers;       /* workers waiting on `wake` (under lock) */
    sp_task_fn fn;
    void *ctx;
    int n_tasks;
    atomic_int next_task;
    atomic_int stop;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */

#define SPIN_ROUNDS 4000 /* ≈ 50-100 µs of polling before a worker sleeps */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_tasks(void) {
    for (;;) {
        int t = atomic_fetch_add(&pool.next_task, 1);
        if (t >= pool.n_tasks) break;
        pool.fn(pool.ctx, t, pool.n_tasks);
    }
}

static void *worker(void *arg) {
    (void)arg;
    unsigned seen = 0;
    for (;;) {
        for (int spin = 0; spin < SPIN_ROUNDS && atomic_load(&pool.generation) == seen && !atomic_load(&pool.stop); spin++)
            cpu_relax();
        if (atomic_load(&pool.generation) == seen && !atomic_load(&pool.stop)) {
            pthread_mutex_lock(&pool.lock);
            pool.sleepers++;
            while (atomic_load(&pool.generation) == seen && !atomic_load(&pool.stop)) pthread_cond_wait(&pool.wake, &pool.lock);
            pool.sleepers--;
            pthread_mutex_unlock(&pool.lock);
        }
        if (atomic_load(&pool.stop)) break;
        seen = atomic_load(&pool.generation);
        run_tasks();
        atomic_fetch_sub(&pool.running, 1);
    }
    return NULL;
}

static void stop_workers(void) {
    pthread_mutex_lock(&pool.lock);
    atomic_store(&pool.stop, 1);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 0; i < pool.n_workers; i++) pthread_join(pool.threads[i], NULL);
    pool.n_workers = 0;
    atomic_store(&pool.stop, 0);
    atomic_store(&pool.generation, 0); /* new workers start from generation 0 */
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

static int ensure_started(void) {
    if (pool.n_threads == 0) pool.n_threads = default_threads();
    while (pool.n_workers < pool.n_threads - 1) {
        if (pthread_create(&pool.threads[pool.n_workers], NULL, worker, NULL) != 0) {
            pool.n_threads = pool.n_workers + 1; /* run with what we have */
            break;
        }
        pool.n_workers++;
    }
    return pool.n_threads;
}

sp_status sp_set_threads(int n_threads) {
    if (n_threads < 0 || n_threads > MAX_THREADS)
        return sp_fail(SP_ERR_ARGUMENT, "thread count %d is out of range (0..%d)", n_threads, MAX_THREADS);
    pthread_mutex_lock(&submit_lock);
    if (pool.n_workers > 0) stop_workers();
    pool.n_threads = n_threads == 0 ? default_threads() : n_threads;
    pthread_mutex_unlock(&submit_lock);
    return SP_OK;
}

int sp_get_threads(void) { return pool.n_threads ? pool.n_threads : default_threads(); }
int sp_threads_count(void) { return sp_get_threads(); }

void sp_parallel_for(int n_tasks, sp_task_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    pthread_mutex_lock(&submit_lock);
    int n_threads = ensure_started();
    if (n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, n_tasks);
        pthread_mutex_unlock(&submit_lock);
        return;
    }
    /* the job's fields first, then the generation that publishes them (sequentially consistent
     * atomics order the plain stores before it) */
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n_tasks = n_tasks;
    atomic_store(&pool.next_task, 0);
    atomic_store(&pool.running, pool.n_workers);
    atomic_fetch_add(&pool.generation, 1);
    pthread_mutex_lock(&pool.lock);
    if (pool.sleepers > 0) pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run_tasks();
    /* the others finish their last task; yield if that takes long (more threads than cores) */
    for (long spin = 0; atomic_load(&pool.running) > 0; spin++) {
        if (spin < SPIN_ROUNDS) cpu_relax();
        else sched_yield();
    }
    pthread_mutex_unlock(&submit_lock);
}

