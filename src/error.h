/* Error reporting shared by the library: a thread-local message behind sp_last_error(); sp_fail
 * (public: code built on the library reports through it too) records one. */
#ifndef SP_ERROR_H
#define SP_ERROR_H

#include "specprefill.h"

#endif
