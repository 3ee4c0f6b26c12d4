/*
 * One persistent pool of worker threads for the whole process. Kernels split work with
 * sp_parallel_for; the calling thread works too, so n_threads = 1 runs everything inline.
 */
#ifndef SP_THREADPOOL_H
#define SP_THREADPOOL_H

#include <stdint.h>

/* fn(ctx, task, n_tasks) is called once for each task in [0, n_tasks), spread over threads. */
typedef void (*sp_task_fn)(void *ctx, int task, int n_tasks);
void sp_parallel_for(int n_tasks, sp_task_fn fn, void *ctx);
/* The same for a job of about `macs` multiply-adds: one that small takes a few microseconds on
 * one thread, about what waking the workers and waiting for them costs, so the caller runs every
 * task itself (a small model's decode step is dozens of such jobs). */
void sp_parallel_for_sized(int n_tasks, sp_task_fn fn, void *ctx, int64_t macs);
/* The number of threads sp_parallel_for spreads tasks over. */
int sp_threads_count(void);
/* How many of the next jobs the caller runs alone, having seen workers lose their core, and how
 * many jobs stalled on such a worker so far (tests). */
int sp_threads_solo_jobs(void);
long sp_threads_stalls(void);

#endif
