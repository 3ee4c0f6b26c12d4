/* The GGUF reader on hostile input: every malformed file is a clean error, never a crash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "gguf_writer.h"
#include "quant.h"
#include "test_util.h"

/* A tiny hand-built file: header, one string key, one u32 key, one tensor of 32 floats. */
typedef struct { uint8_t b[4096]; size_t n; } buf;
static void u32(buf *f, uint32_t v) { memcpy(f->b + f->n, &v, 4); f->n += 4; }
static void u64(buf *f, uint64_t v) { memcpy(f->b + f->n, &v, 8); f->n += 8; }
static void str(buf *f, const char *s) { u64(f, strlen(s)); memcpy(f->b + f->n, s, strlen(s)); f->n += strlen(s); }

typedef struct {
    uint32_t magic, version;
    uint64_t n_tensors, n_kv;
    uint64_t str_len_override; /* 0 = real length */
    uint32_t kv_type;
    uint32_t n_dims, tensor_type;
    uint64_t ne0, offset;
    size_t truncate; /* 0 = none */
} spec;

static spec good(void) {
    spec s = {0x46554747u, 3, 1, 2, 0, GGUF_TYPE_STRING, 1, SP_TYPE_F32, 32, 0, 0};
    return s;
}

static size_t build(buf *f, spec s) {
    f->n = 0;
    u32(f, s.magic); u32(f, s.version); u64(f, s.n_tensors); u64(f, s.n_kv);
    str(f, "general.name");
    u32(f, s.kv_type);
    if (s.str_len_override) { u64(f, s.str_len_override); memcpy(f->b + f->n, "x", 1); f->n += 1; }
    else str(f, "tiny");
    str(f, "test.count"); u32(f, GGUF_TYPE_UINT32); u32(f, 7);
    str(f, "w"); u32(f, s.n_dims);
    for (uint32_t d = 0; d < s.n_dims && d < 8; d++) u64(f, d == 0 ? s.ne0 : 1);
    u32(f, s.tensor_type); u64(f, s.offset);
    while (f->n % 32) f->b[f->n++] = 0;
    for (int i = 0; i < 32; i++) { float x = (float)i; memcpy(f->b + f->n, &x, 4); f->n += 4; }
    return s.truncate ? s.truncate : f->n;
}

static sp_status parse_spec(spec s, const char *expect_in_error) {
    buf f;
    size_t n = build(&f, s);
    sp_gguf_file *g = NULL;
    sp_status st = sp_gguf_parse(f.b, n, &g);
    if (st == SP_OK) sp_gguf_close(g);
    else if (expect_in_error && !strstr(sp_last_error(), expect_in_error))
        fail_msg("error '%s' does not mention '%s'", sp_last_error(), expect_in_error);
    return st;
}

static void well_formed_file_parses(void **s) {
    (void)s;
    buf f;
    size_t n = build(&f, good());
    sp_gguf_file *g;
    assert_int_equal(sp_gguf_parse(f.b, n, &g), SP_OK);
    uint32_t v;
    assert_int_equal(sp_gguf_get_u32(g, "test.count", &v), SP_OK);
    assert_int_equal(v, 7);
    sp_gguf_string name;
    assert_true(sp_gguf_get_string_opt(g, "general.name", &name));
    assert_true(sp_gguf_string_eq(name, "tiny"));
    const sp_gguf_tensor *t = sp_gguf_find_tensor(g, "w");
    assert_non_null(t);
    assert_int_equal(t->ne[0], 32);
    assert_float_equal(((const float *)t->data)[5], 5.0f, 0);
    assert_int_equal(sp_gguf_get_u32(g, "missing.key", &v), SP_ERR_FORMAT);
    assert_non_null(strstr(sp_last_error(), "missing.key"));
    sp_gguf_close(g);
}

static void malformed_headers_are_errors(void **s) {
    (void)s;
    spec x;
    x = good(); x.magic = 0x12345678; assert_int_equal(parse_spec(x, "magic"), SP_ERR_FORMAT);
    x = good(); x.version = 1; assert_int_equal(parse_spec(x, "version 1"), SP_ERR_UNSUPPORTED);
    x = good(); x.version = 0x03000000; assert_int_equal(parse_spec(x, "version"), SP_ERR_FORMAT);
    x = good(); x.n_kv = 1ull << 60; assert_int_equal(parse_spec(x, "key-value"), SP_ERR_FORMAT);
    x = good(); x.n_tensors = 1ull << 62; assert_int_equal(parse_spec(x, "tensors"), SP_ERR_FORMAT);
    x = good(); x.str_len_override = 1ull << 62; assert_int_equal(parse_spec(x, "past the end"), SP_ERR_FORMAT);
    x = good(); x.kv_type = 99; assert_int_equal(parse_spec(x, "unknown value type"), SP_ERR_FORMAT);
    x = good(); x.n_dims = 5; assert_int_equal(parse_spec(x, "dimensions"), SP_ERR_FORMAT);
    x = good(); x.n_dims = 0; assert_int_equal(parse_spec(x, "dimensions"), SP_ERR_FORMAT);
    x = good(); x.ne0 = 0; assert_int_equal(parse_spec(x, "size 0"), SP_ERR_FORMAT);
    x = good(); x.ne0 = 1ull << 45; assert_int_equal(parse_spec(x, NULL), SP_ERR_FORMAT);
    x = good(); x.offset = 4096; assert_int_equal(parse_spec(x, "past the end"), SP_ERR_FORMAT);
    x = good(); x.offset = 3; assert_int_equal(parse_spec(x, "aligned"), SP_ERR_FORMAT);
    x = good(); x.tensor_type = 16; assert_int_equal(parse_spec(x, "IQ2_XXS"), SP_ERR_UNSUPPORTED);
    x = good(); x.tensor_type = 1000; assert_int_equal(parse_spec(x, "unknown"), SP_ERR_UNSUPPORTED);
    x = good(); x.tensor_type = SP_TYPE_Q8_0; x.ne0 = 33; assert_int_equal(parse_spec(x, "block size"), SP_ERR_FORMAT);
    x = good(); x.n_kv = 3; assert_int_equal(parse_spec(x, NULL), SP_ERR_FORMAT); /* reads the tensor as a key */
}

/* Every prefix of a model file is refused cleanly (the sanitizer build checks reads). */
static void every_truncation_is_an_error(void **s) {
    (void)s;
    size_t len;
    char path[1024];
    char *data = slurp(test_model_path("qwen2-q4_k_m", path, sizeof path), &len);
    assert_non_null(data);
    sp_gguf_file *g;
    assert_int_equal(sp_gguf_parse(data, len, &g), SP_OK);
    size_t end = 0; /* where the last tensor's data ends: any shorter file is incomplete */
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        size_t e = (size_t)(g->data_offset + g->tensors[i].offset + g->tensors[i].n_bytes);
        if (e > end) end = e;
    }
    sp_gguf_close(g);
    int n = 0;
    for (size_t cut = 0; cut < end; cut += cut < 40000 ? 1 : 4099) {
        uint8_t *copy = malloc(cut + 1); /* exact-size copy so ASan sees any overread */
        memcpy(copy, data, cut);
        sp_gguf_file *g = NULL;
        sp_status st = sp_gguf_parse(copy, cut, &g);
        if (st == SP_OK) fail_msg("a file cut at %zu of %zu bytes parsed", cut, len);
        free(copy);
        n++;
    }
    free(data);
    printf("  %d truncations refused\n", n);
}

static void model_loader_errors_name_the_problem(void **s) {
    (void)s;
    char path[512];
    sp_model *m = (sp_model *)1;
    assert_int_equal(sp_model_load("/nonexistent/model.gguf", &m), SP_ERR_IO);
    assert_null(m);
    /* an architecture we do not know */
    sp_gguf_writer *w = sp_gguf_writer_new();
    sp_gguf_writer_str(w, "general.architecture", "mamba");
    int64_t ne[1] = {32};
    float zeros[32] = {0};
    sp_gguf_writer_tensor(w, "x", SP_TYPE_F32, 1, ne, zeros);
    temp_path("arch.gguf", path, sizeof path);
    assert_int_equal(sp_gguf_writer_write(w, path), SP_OK);
    sp_gguf_writer_free(w);
    assert_int_equal(sp_model_load(path, &m), SP_ERR_UNSUPPORTED);
    assert_non_null(strstr(sp_last_error(), "mamba"));
    remove(path);
    /* a model with a tensor missing: copy everything but blk.1.ffn_up.weight */
    sp_gguf_file *src;
    assert_int_equal(sp_gguf_open(test_model_path("llama-q8_0", path, sizeof path), false, &src), SP_OK);
    w = sp_gguf_writer_new();
    for (uint64_t i = 0; i < src->n_kv; i++) sp_gguf_writer_copy_kv(w, &src->kv[i]);
    for (uint64_t i = 0; i < src->n_tensors; i++) {
        const sp_gguf_tensor *t = &src->tensors[i];
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        if (strcmp(name, "blk.1.ffn_up.weight") == 0) continue;
        sp_gguf_writer_tensor(w, name, t->type, (int)t->n_dims, t->ne, t->data);
    }
    temp_path("missing.gguf", path, sizeof path);
    assert_int_equal(sp_gguf_writer_write(w, path), SP_OK);
    sp_gguf_writer_free(w);
    sp_gguf_close(src);
    assert_int_equal(sp_model_load(path, &m), SP_ERR_FORMAT);
    assert_non_null(strstr(sp_last_error(), "blk.1.ffn_up.weight"));
    remove(path);
}

/* Writer → reader round trip keeps every key and tensor. */
static void writer_round_trip(void **s) {
    (void)s;
    sp_gguf_file *src;
    char src_path[512];
    assert_int_equal(sp_gguf_open(test_model_path("qwen3-q8_0", src_path, sizeof src_path), false, &src), SP_OK);
    sp_gguf_writer *w = sp_gguf_writer_new();
    for (uint64_t i = 0; i < src->n_kv; i++) sp_gguf_writer_copy_kv(w, &src->kv[i]);
    for (uint64_t i = 0; i < src->n_tensors; i++) {
        const sp_gguf_tensor *t = &src->tensors[i];
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        sp_gguf_writer_tensor(w, name, t->type, (int)t->n_dims, t->ne, t->data);
    }
    char path[512];
    temp_path("roundtrip.gguf", path, sizeof path);
    assert_int_equal(sp_gguf_writer_write(w, path), SP_OK);
    sp_gguf_writer_free(w);
    sp_gguf_file *back;
    assert_int_equal(sp_gguf_open(path, false, &back), SP_OK);
    assert_int_equal(back->n_kv, src->n_kv);
    assert_int_equal(back->n_tensors, src->n_tensors);
    for (uint64_t i = 0; i < src->n_tensors; i++) {
        assert_int_equal(back->tensors[i].n_bytes, src->tensors[i].n_bytes);
        assert_memory_equal(back->tensors[i].data, src->tensors[i].data, src->tensors[i].n_bytes);
    }
    sp_gguf_close(back);
    sp_gguf_close(src);
    sp_model *m;
    assert_int_equal(sp_model_load(path, &m), SP_OK);
    sp_model_free(m);
    remove(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(well_formed_file_parses),
        cmocka_unit_test(malformed_headers_are_errors),
        cmocka_unit_test(every_truncation_is_an_error),
        cmocka_unit_test(model_loader_errors_name_the_problem),
        cmocka_unit_test(writer_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
