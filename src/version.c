/* The version of the library actually linked (the header's macros give the one compiled against). */
#include "specprefill.h"

#define SP_STR2(x) #x
#define SP_STR(x) SP_STR2(x)

const char *sp_version(void) { return SP_STR(SP_VERSION_MAJOR) "." SP_STR(SP_VERSION_MINOR) "." SP_STR(SP_VERSION_PATCH); }
