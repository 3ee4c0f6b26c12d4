/* The library's monotonic clock, in seconds: the stages' timings (specprefill.c, specdecode.c)
 * and the thread pool's measure of a stalled job. */
#ifndef SP_CLOCK_H
#define SP_CLOCK_H

double sp_seconds(void);

#endif
