/* Helpers shared by the unit tests. */
#ifndef SP_TEST_UTIL_H
#define SP_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>

#include "specprefill.h"

/* Path under the shared fixtures folder (static buffer, one at a time per call site). */
const char *shared_path(const char *rel, char *buf, size_t size);
/* Parses a JSON file; fails the test if it cannot. */
cJSON *load_json(const char *path);
/* Reads a whole file; caller frees. */
char *slurp(const char *path, size_t *len);
/* A scratch file path unique to this process. */
const char *temp_path(const char *name, char *buf, size_t size);
/* Loads a model from the fixtures' models/ folder; fails the test if it cannot. */
sp_model *load_fixture_model(const char *name);
/* Writes a small random model with the CLI's generator; returns its path. */
const char *make_test_model(const char *args, const char *name, char *buf, size_t size);

#define SHARED(rel) shared_path(rel, (char[1024]){0}, 1024)

#endif
