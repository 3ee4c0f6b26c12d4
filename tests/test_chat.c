/* Chat templates against the renderings of the real Jinja templates. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "test_util.h"

static void real_templates_render_as_jinja_does(void **s) {
    (void)s;
    SKIP_WITHOUT_SHARED();
    cJSON *all = load_json(SHARED("fixtures/templates/rendered.json"));
    int n_checked = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, all) {
        char path[1024];
        snprintf(path, sizeof path, "%s/fixtures/%s", SP_SHARED_DIR, cJSON_GetObjectItem(e, "template")->valuestring);
        char *tmpl = slurp(path, NULL);
        assert_non_null(tmpl);
        const cJSON *msgs = cJSON_GetObjectItem(e, "messages");
        sp_chat_message m[16];
        int n = 0;
        const cJSON *msg;
        cJSON_ArrayForEach(msg, msgs) {
            m[n].role = cJSON_GetObjectItem(msg, "role")->valuestring;
            m[n].content = cJSON_GetObjectItem(msg, "content")->valuestring;
            n++;
        }
        char *out;
        assert_int_equal(sp_chat_render(tmpl, NULL, m, n, true, &out), SP_OK);
        const char *want = cJSON_GetObjectItem(e, "rendered")->valuestring;
        if (strcmp(out, want) != 0) fail_msg("%s (detected as %s):\n got: %s\nwant: %s", path, sp_chat_detect_text(tmpl), out, want);
        free(out);
        free(tmpl);
        n_checked++;
    }
    assert_int_equal(n_checked, 7);
    cJSON_Delete(all);
}

static void unknown_template_lists_known_names(void **s) {
    (void)s;
    sp_chat_message m = {"user", "hi"};
    char *out = NULL;
    assert_int_equal(sp_chat_render("{{ weird }}", NULL, &m, 1, true, &out), SP_ERR_UNSUPPORTED);
    assert_non_null(strstr(sp_last_error(), "chatml"));
    assert_int_equal(sp_chat_render(NULL, "nope", &m, 1, true, &out), SP_ERR_ARGUMENT);
    assert_non_null(strstr(sp_last_error(), "llama3"));
    assert_int_equal(sp_chat_render(NULL, "chatml", &m, 1, true, &out), SP_OK);
    assert_string_equal(out, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    free(out);
    sp_chat_message bad = {"robot", "hi"};
    assert_int_equal(sp_chat_render(NULL, "chatml", &bad, 1, true, &out), SP_ERR_ARGUMENT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(real_templates_render_as_jinja_does),
        cmocka_unit_test(unknown_template_lists_known_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
