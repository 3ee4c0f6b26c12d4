#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "error.h"

#define MAX_THREADS 256

/* Workers sleep on a condition variable between jobs; a job is a generation number plus the
 * function to run. Tasks are handed out with an atomic counter so uneven tasks balance. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    pthread_t threads[MAX_THREADS];
    int n_threads;     /* including the caller */
    int n_workers;     /* started threads */
    unsigned generation;
    int running;       /* workers still in the current job */
    sp_task_fn fn;
    void *ctx;
    int n_tasks;
    atomic_int next_task;
    int stop;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */

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
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.generation == seen && !pool.stop) pthread_cond_wait(&pool.wake, &pool.lock);
        if (pool.stop) break;
        seen = pool.generation;
        pthread_mutex_unlock(&pool.lock);
        run_tasks();
        pthread_mutex_lock(&pool.lock);
        if (--pool.running == 0) pthread_cond_signal(&pool.done);
    }
    pthread_mutex_unlock(&pool.lock);
    return NULL;
}

static void stop_workers(void) {
    pthread_mutex_lock(&pool.lock);
    pool.stop = 1;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 0; i < pool.n_workers; i++) pthread_join(pool.threads[i], NULL);
    pool.n_workers = 0;
    pool.stop = 0;
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
    pthread_mutex_lock(&pool.lock);
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n_tasks = n_tasks;
    atomic_store(&pool.next_task, 0);
    pool.running = pool.n_workers;
    pool.generation++;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run_tasks();
    pthread_mutex_lock(&pool.lock);
    while (pool.running > 0) pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&submit_lock);
}

void sp_parallel_run(sp_task_fn fn, void *ctx) { sp_parallel_for(sp_get_threads(), fn, ctx); }
