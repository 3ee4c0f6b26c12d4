/* libFuzzer target: the server's request parser on arbitrary bodies (chat and completion). */
#include <stdint.h>
#include <stdlib.h>

#include "server/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const sp_request_defaults d = {sp_sampling_default_params(), sp_specprefill_default_params(), sp_specdecode_default_params()};
    sp_request r;
    char err[256];
    if (sp_request_parse((const char *)data + 1, size - 1, data[0] & 1, &d, &r, err, sizeof err) == 0) sp_request_free(&r);
    return 0;
}
