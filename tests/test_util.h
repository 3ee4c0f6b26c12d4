/* Helpers shared by the unit tests. */
#ifndef SP_TEST_UTIL_H
#define SP_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>

#include "specprefill.h"

/* Path under the shared fixtures folder (static buffer, one at a time per call site). */
const char *shared_path(const char *rel, char *buf, size_t size);
/* Whether ../shared (llama.cpp's fixtures: a second opinion) is there. The tests that compare
 * with it report themselves skipped when it is not: the suite stands on its own. */
bool shared_present(void);
#define SKIP_WITHOUT_SHARED()                                                   \
    do {                                                                        \
        if (!shared_present()) {                                                \
            print_message("skipped: ../shared absent\n");                       \
            skip();                                                             \
        }                                                                       \
    } while (0)
/* Parses a JSON file; fails the test if it cannot. */
cJSON *load_json(const char *path);
/* Reads a whole file; caller frees. */
char *slurp(const char *path, size_t *len);
/* A scratch file path unique to this process. */
const char *temp_path(const char *name, char *buf, size_t size);
/* Loads a model from the shared fixtures' models/ folder (llama.cpp-made); fails the test if it
 * cannot. Only for tests that compare with llama.cpp: call SKIP_WITHOUT_SHARED() first. */
sp_model *load_fixture_model(const char *name);
/* A random-weight model the tests write themselves, "ARCH-TYPE" (llama-q8_0, qwen2-f16,
 * qwen3-q8_0, ...): the fixtures' shape (2 layers, 256 wide, 4/2 heads, ffn 768; qwen2/qwen3
 * tied, RoPE base 1e6, qwen2 with QKV bias, qwen3 with QK-norm) and the bundled models'
 * vocabulary (1115 tokens: byte-level BPE with merges, BOS 1110, EOS 1111, EOT 1112, controls
 * 1113-1114). Written once by make-model under the build folder and reused. */
const char *test_model_path(const char *name, char *buf, size_t size);
sp_model *load_test_model(const char *name);
#define TEST_VOCAB 1115
#define TEST_BOS 1110
/* Writes a small random model with the CLI's generator; returns its path. */
const char *make_test_model(const char *args, const char *name, char *buf, size_t size);

#define SHARED(rel) shared_path(rel, (char[1024]){0}, 1024)

#endif
