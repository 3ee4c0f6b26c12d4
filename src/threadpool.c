#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"

#define MAX_THREADS 256

/* A job is the function to run and its number of tasks; tasks are claimed one at a time from a
 * counter, so uneven tasks balance. The counter carries the job's generation in its high half:
 * a worker claims a task only of the job it woke for, so the caller waits for the tasks to be
 * done — never for a worker to show up. That matters on a shared machine: a worker the kernel
 * has descheduled (another process has its core) simply takes no task, and the caller, which
 * works too, does them; only a task already claimed is waited for, and tasks are small.
 * Between jobs a worker first spins on the generation for a short while (a forward pass issues
 * jobs back to back, some only microseconds long, and waking a sleeping thread costs tens of
 * microseconds), then sleeps on a condition variable. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t threads[MAX_THREADS];
    int n_threads;     /* including the caller */
    int n_workers;     /* started threads */
    atomic_uint generation;  /* of the newest job: what idle workers watch */
    _Atomic uint64_t next;   /* generation << 32 | the next task to claim */
    atomic_int n_tasks;
    atomic_int done;         /* tasks of the current job finished */
    int sleepers;       /* workers waiting on `wake` (under lock) */
    sp_task_fn fn;
    void *ctx;
    atomic_int stop;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */

/* On a shared machine a worker may lose its core to another process, and a job then waits for
 * the task it claimed until the worker runs again — about a scheduler time slice, milliseconds.
 * A long job (a prefill's matrix product) absorbs that; a short one (a decode step's) is better
 * done by the caller alone. A job stalled when it waited more than four times what the caller
 * alone would have taken for all of it. One stall proves little: an idle virtual machine's host
 * takes a core away for a few milliseconds now and then too (measured on a 2-core VM: stalls of
 * about 4 ms, 0.4-5 s apart at idle; 16-60 ms apart beside one busy process). So the next jobs
 * run on the caller alone when a stall comes within STALL_WINDOW of shared running after the one
 * before; twice as many each time it happens again; a long run of jobs without a stall halves
 * the stretch (all under submit_lock). */
enum { SOLO_FIRST = 64, SOLO_MOST = 16384, CLEAN_RUN = 4096 };
#define STALL_WINDOW 0.15 /* seconds of jobs shared with the workers */
static int solo_left, solo_next = SOLO_FIRST, clean_jobs;
static long stalls;
static double solo_began, solo_seconds, last_stall = -1e9; /* last_stall: on the shared clock */

#define SPIN_ROUNDS 4000 /* ≈ 50-100 µs of polling before a worker sleeps */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Runs tasks of job `gen` until none is left to claim. fn and ctx are read only after a claim
 * succeeded: the job cannot end (and its fields be replaced) while one of its tasks is claimed
 * and not done. */
static int run_tasks(unsigned gen) {
    for (int ran = 0;;) {
        uint64_t v = atomic_load(&pool.next);
        if ((unsigned)(v >> 32) != gen || (uint32_t)v >= (uint32_t)atomic_load(&pool.n_tasks)) return ran;
        if (!atomic_compare_exchange_weak(&pool.next, &v, v + 1)) continue;
        pool.fn(pool.ctx, (int)(uint32_t)v, atomic_load(&pool.n_tasks));
        atomic_fetch_add(&pool.done, 1);
        ran++;
    }
}


static void *worker(void *arg) {
    (void)arg;
    unsigned seen = atomic_load(&pool.generation);
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
        run_tasks(seen);
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

int sp_threads_solo_jobs(void) {
    pthread_mutex_lock(&submit_lock);
    const int n = solo_left;
    pthread_mutex_unlock(&submit_lock);
    return n;
}

long sp_threads_stalls(void) {
    pthread_mutex_lock(&submit_lock);
    const long n = stalls;
    pthread_mutex_unlock(&submit_lock);
    return n;
}

#define SOLO_MACS (1 << 17) /* ≈ 5-10 µs on one core */

void sp_parallel_for_sized(int n_tasks, sp_task_fn fn, void *ctx, int64_t macs) {
    if (macs >= SOLO_MACS) {
        sp_parallel_for(n_tasks, fn, ctx);
        return;
    }
    for (int t = 0; t < n_tasks; t++) fn(ctx, t, n_tasks);
}

void sp_parallel_for(int n_tasks, sp_task_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    pthread_mutex_lock(&submit_lock);
    int n_threads = ensure_started();
    if (n_threads == 1 || n_tasks == 1 || solo_left > 0) {
        if (solo_left > 0 && --solo_left == 0) solo_seconds += sp_seconds() - solo_began;
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, n_tasks);
        pthread_mutex_unlock(&submit_lock);
        return;
    }
    /* the counter first moves to the new job with nothing to claim (a late worker's claim on the
     * old one fails from here on), then the job's fields, then the counter opens the tasks
     * (sequentially consistent atomics order the plain stores before it), then the generation
     * wakes the workers */
    const unsigned gen = atomic_load(&pool.generation) + 1;
    atomic_store(&pool.next, (uint64_t)gen << 32 | UINT32_MAX);
    pool.fn = fn;
    pool.ctx = ctx;
    atomic_store(&pool.n_tasks, n_tasks);
    atomic_store(&pool.done, 0);
    atomic_store(&pool.next, (uint64_t)gen << 32);
    atomic_store(&pool.generation, gen);
    pthread_mutex_lock(&pool.lock);
    if (pool.sleepers > 0) pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    const double t0 = sp_seconds();
    const int mine = run_tasks(gen);
    const double t1 = sp_seconds();
    /* the tasks others claimed; yield if that takes long (a worker descheduled mid-task) */
    for (long spin = 0; atomic_load(&pool.done) < n_tasks; spin++) {
        if (spin < SPIN_ROUNDS) cpu_relax();
        else sched_yield();
    }
    const double now = sp_seconds(), waited = now - t1, alone = mine > 0 ? (t1 - t0) / mine * n_tasks : 0;
    if (waited > 4 * alone + 200e-6) {
        stalls++;
        const double shared = now - solo_seconds; /* the clock stands still while the caller is alone */
        if (shared - last_stall < STALL_WINDOW) {
            solo_left = solo_next;
            solo_began = now;
            solo_next = solo_next < SOLO_MOST ? 2 * solo_next : SOLO_MOST;
        }
        last_stall = shared;
        clean_jobs = 0;
    } else if (++clean_jobs >= CLEAN_RUN && solo_next > SOLO_FIRST) {
        solo_next /= 2;
        clean_jobs = 0;
    }
    pthread_mutex_unlock(&submit_lock);
}

