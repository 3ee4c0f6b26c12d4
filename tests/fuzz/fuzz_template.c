/* libFuzzer target: the chat-template interpreter (lexer, parser, evaluator) and its JSON reader.
 * The input is a template; after its first NUL byte, if any, the messages as JSON. A render must
 * end in text or an error — never a crash, a hang (the interpreter's limits) or a leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "specprefill.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    const size_t tlen = strlen(text); /* the template ends at the first NUL */
    const char *messages = tlen < size ? text + tlen + 1
                                       : "[{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"hi\"}]},"
                                         " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1}}}]}]";
    char *out = NULL;
    if (sp_chat_apply_json(NULL, text, messages, "{\"tools\": [{\"type\": \"function\"}], \"enable_thinking\": true}", true, &out) == SP_OK) free(out);
    free(text);
    return 0;
}
