/* The server's request parser: accepted fields, defaults, and every kind of bad input. */
#include <math.h>
#include <string.h>

#include "server/request.h"
#include "test_util.h"

static int parse(const char *body, bool chat, sp_request *r, char *err) {
    sp_request_defaults d = {sp_sampling_default_params(), sp_specprefill_default_params(), sp_specdecode_default_params()};
    d.spec.keep_mass = 0.5f; /* a server default the request leaves alone */
    return sp_request_parse(body, strlen(body), chat, &d, r, err, 256);
}

static void accepts_what_clients_send(void **s) {
    (void)s;
    sp_request r;
    char err[256];
    assert_int_equal(parse("{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"U\"}]}],"
                           "\"max_completion_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,\"top_k\":5,\"min_p\":0.1,\"seed\":42,"
                           "\"stop\":[\"a\",\"b\"],\"stream\":true,\"stream_options\":{\"include_usage\":true},\"n\":1,"
                           "\"speculative_prefill\":{\"enabled\":true,\"keep_rate\":0.2,\"chunk\":16,\"lookahead\":4,\"keep_mass\":null},"
                           "\"unknown_field\":{\"x\":1}}", true, &r, err), 0);
    assert_int_equal(r.n_messages, 2);
    assert_string_equal(r.messages_json, "[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"U\"}]}]");
    assert_null(r.template_vars_json);
    assert_int_equal(r.max_tokens, 7);
    assert_float_equal(r.sampling.temperature, 0.5f, 1e-6);
    assert_int_equal(r.sampling.top_k, 5);
    assert_int_equal(r.sampling.seed, 42);
    assert_int_equal(r.n_stop, 2);
    assert_true(r.stream && r.include_usage);
    assert_int_equal(r.spec_enabled, 1);
    /* the request's fields over the server's, the rest the server's: ready to use */
    assert_float_equal(r.spec.keep_rate, 0.2f, 1e-6);
    assert_float_equal(r.spec.keep_mass, 0.5f, 1e-6);
    assert_int_equal(r.spec.chunk, 16);
    assert_int_equal(r.spec.lookahead, 4);
    assert_int_equal(r.spec.pool_kernel, sp_specprefill_default_params().pool_kernel);
    assert_int_equal(r.spec_decode_enabled, -1); /* not asked: the server decides */
    assert_int_equal(r.spec_reuse, -1);
    assert_true(r.cache_prompt); /* llama.cpp's default */
    sp_request_free(&r);
    /* the prompt cache: cache_prompt, and what a speculative follow-up keeps */
    assert_int_equal(parse("{\"prompt\":\"x\",\"cache_prompt\":false,\"speculative_prefill\":{\"reuse\":\"draft\"}}", false, &r, err), 0);
    assert_false(r.cache_prompt);
    assert_int_equal(r.spec_reuse, 0);
    sp_request_free(&r);
    assert_int_equal(parse("{\"prompt\":\"x\",\"speculative_prefill\":{\"reuse\":\"kept\"}}", false, &r, err), 0);
    assert_int_equal(r.spec_reuse, 1);
    sp_request_free(&r);
    /* speculative decoding: an object asks for it, its fields over the server's */
    assert_int_equal(parse("{\"prompt\":\"x\",\"speculative_decoding\":{\"draft_max\":1}}", false, &r, err), 0);
    assert_int_equal(r.spec_decode_enabled, 1);
    assert_int_equal(r.spec_decode.draft_max, 1);
    assert_int_equal(r.spec_decode.draft_min, 1);
    sp_request_free(&r);
    assert_int_equal(parse("{\"prompt\":\"x\",\"speculative_decoding\":{\"enabled\":false,\"draft_min\":2}}", false, &r, err), 0);
    assert_int_equal(r.spec_decode_enabled, 0);
    assert_int_equal(r.spec_decode.draft_min, 2);
    assert_int_equal(r.spec_decode.draft_max, sp_specdecode_default_params().draft_max);
    sp_request_free(&r);
    assert_int_equal(parse("{\"prompt\":\"x\",\"speculative_decoding\":true}", false, &r, err), 0);
    assert_int_equal(r.spec_decode_enabled, 1);
    sp_request_free(&r);
    /* tool calls and results, tools and template arguments reach the template as sent; developer is system */
    assert_int_equal(parse("{\"messages\":[{\"role\":\"developer\",\"content\":\"D\"},{\"role\":\"assistant\",\"content\":null,"
                           "\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
                           "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"42\"}],\"tools\":[{\"type\":\"function\"}],"
                           "\"chat_template_kwargs\":{\"enable_thinking\":false}}", true, &r, err), 0);
    assert_non_null(strstr(r.messages_json, "{\"role\":\"system\",\"content\":\"D\"}"));
    assert_non_null(strstr(r.messages_json, "\"tool_call_id\":\"c1\""));
    assert_string_equal(r.template_vars_json, "{\"enable_thinking\":false,\"tools\":[{\"type\":\"function\"}]}");
    sp_request_free(&r);
    assert_int_equal(parse("{\"prompt\":[\"only one\"],\"stop\":\"x\",\"speculative_prefill\":false}", false, &r, err), 0);
    assert_string_equal(r.prompt, "only one");
    assert_int_equal(r.max_tokens, -1);
    assert_int_equal(r.spec_enabled, 0);
    sp_request_free(&r);
}

static void rejects_bad_bodies(void **s) {
    (void)s;
    {
        sp_request r;
        char err[256];
        sp_request_defaults d = {sp_sampling_default_params(), sp_specprefill_default_params(), sp_specdecode_default_params()};
        static const char nul[] = "{\"prompt\":\"a\0b\"}"; /* a raw NUL byte inside the string */
        assert_int_equal(sp_request_parse(nul, sizeof nul - 1, false, &d, &r, err, sizeof err), 400);
        assert_non_null(strstr(err, "NUL byte"));
        char body[700] = "{\"prompt\":\"x\",\"stop\":[\"ok\",\"";
        memset(body + strlen(body), 'a', SP_MAX_STOP_BYTES + 1);
        strcat(body, "\"]}");
        assert_int_equal(parse(body, false, &r, err), 400);
        assert_non_null(strstr(err, "longer than 256 bytes"));
        body[strlen(body) - 4] = 0; /* one byte shorter: exactly the limit */
        strcat(body, "\"]}");
        assert_int_equal(parse(body, false, &r, err), 0);
        sp_request_free(&r);
        assert_int_equal(parse("{\"prompt\":\"ok\"} \r\n\t", false, &r, err), 0); /* trailing whitespace is fine */
        sp_request_free(&r);
        assert_int_equal(parse("{\"prompt\":\"escaped \\t and \\u0001 are fine\"}", false, &r, err), 0);
        assert_non_null(strchr(r.prompt, '\t'));
        sp_request_free(&r);
    }
    static const struct { const char *body; bool chat; const char *msg; } cases[] = {
        {"", false, "not valid JSON"},
        {"[1,2]", false, "JSON object"},
        {"{\"prompt\":5}", false, "prompt"},
        {"{\"prompt\":\"x\",\"max_tokens\":-1}", false, "max_tokens"},
        {"{\"prompt\":\"x\",\"max_tokens\":\"3\"}", false, "max_tokens"},
        {"{\"prompt\":\"x\",\"temperature\":3}", false, "temperature"},
        {"{\"prompt\":\"x\",\"top_p\":0}", false, "top_p"},
        {"{\"prompt\":\"x\",\"stream\":\"yes\"}", false, "stream"},
        {"{\"prompt\":\"x\",\"stop\":[1]}", false, "stop"},
        {"{\"prompt\":\"x\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", false, "stop"},
        {"{\"prompt\":\"x\",\"n\":3}", false, "n = 1"},
        {"{\"prompt\":\"x\",\"speculative_prefill\":{\"keep_rate\":2}}", false, "keep_rate"},
        {"{\"prompt\":\"x\",\"speculative_prefill\":{\"keep_rate\":0}}", false, "keep rate 0 is not in (0, 1]"},
        {"{\"prompt\":\"x\",\"speculative_prefill\":\"on\"}", false, "speculative_prefill"},
        {"{\"prompt\":\"x\",\"speculative_decoding\":\"on\"}", false, "speculative_decoding"},
        /* what a lenient reader lets through: a NUL would cut the prompt short, trailing bytes and raw
         * control characters are not JSON */
        {"{\"prompt\":\"a\\u0000b\"}", false, "NUL character"},
        {"{\"prompt\":\"ok\"} {\"prompt\":\"more\"}", false, "bytes after its JSON value"},
        {"{\"prompt\":\"ok\"}x", false, "bytes after its JSON value"},
        {"{\"prompt\":\"tab\there\"}", false, "raw control character"},
        {"{\"prompt\":\"line\nbreak\"}", false, "raw control character"},
        {"{\"prompt\":\"x\",\"speculative_decoding\":{\"draft_max\":4}}", false, "draft_max"},
        {"{\"prompt\":\"x\",\"speculative_prefill\":{\"reuse\":\"all\"}}", false, "reuse must be"},
        {"{\"prompt\":\"x\",\"cache_prompt\":1}", false, "'cache_prompt' must be true or false"},
        {"{\"prompt\":\"x\",\"speculative_decoding\":{\"draft_min\":0}}", false, "draft_min"},
        {"{\"prompt\":\"x\",\"speculative_decoding\":{\"draft_min\":3,\"draft_max\":2}}", false, "draft_min exceeds draft_max"},
        {"{\"prompt\":\"x\",\"speculative_decoding\":{\"enabled\":1}}", false, "enabled"},
        {"{\"messages\":[]}", true, "messages"},
        {"{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", true, "role"},
        {"{\"messages\":[{\"role\":\"user\"}]}", true, "content"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"model\":7}", true, "model"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"no type\"}]}]}", true, "type"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":null}]}", true, "content"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}", true, "tools"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"chat_template_kwargs\":[1]}", true, "chat_template_kwargs"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sp_request r;
        char err[256] = "";
        int rc = parse(cases[i].body, cases[i].chat, &r, err);
        if (rc != 400 || !strstr(err, cases[i].msg)) fail_msg("'%s': status %d, message '%s'", cases[i].body, rc, err);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(accepts_what_clients_send), cmocka_unit_test(rejects_bad_bodies)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
