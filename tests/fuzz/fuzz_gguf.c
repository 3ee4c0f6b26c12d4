/* libFuzzer target: the GGUF reader and the model loader's metadata handling on arbitrary bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "specprefill.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sp_gguf_file *f = NULL;
    if (sp_gguf_parse(data, size, &f) == SP_OK) {
        /* touch every key and tensor the way the loader does */
        for (uint64_t i = 0; i < f->n_kv; i++) {
            uint32_t u;
            float x;
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)(f->kv[i].key.len < 63 ? f->kv[i].key.len : 63), f->kv[i].key.ptr);
            sp_gguf_get_u32_opt(f, key, &u);
            sp_gguf_get_f32_opt(f, key, &x);
        }
        sp_gguf_close(f);
        /* and through the full loader via a file */
        char path[64];
        snprintf(path, sizeof path, "/tmp/fuzz-gguf-%d.gguf", (int)getpid());
        FILE *fp = fopen(path, "wb");
        if (fp) {
            fwrite(data, 1, size, fp);
            fclose(fp);
            sp_model *m = NULL;
            if (sp_model_load(path, &m) == SP_OK) sp_model_free(m);
            remove(path);
        }
    }
    return 0;
}
