/* Error reporting shared by the library: a thread-local message behind sp_last_error(). */
#ifndef SP_ERROR_H
#define SP_ERROR_H

#include "specprefill.h"

#if defined(__GNUC__)
#define SP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SP_PRINTF(a, b)
#endif

/* Records the message and returns `status`, so callers write `return sp_fail(SP_ERR_..., ...)`. */
sp_status sp_fail(sp_status status, const char *fmt, ...) SP_PRINTF(2, 3);
void sp_clear_error(void);

#endif
