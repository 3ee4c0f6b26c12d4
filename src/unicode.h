/* UTF-8 decoding and the few Unicode properties the tokenizers need. */
#ifndef SP_UNICODE_H
#define SP_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct { uint32_t first, last; } sp_unicode_range;

/* Decodes one code point at s[0..len). Returns its byte length (1..4), or 0 if the bytes are
 * not valid UTF-8 (overlong, surrogate, above U+10FFFF, truncated). */
int sp_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp);
/* Writes cp as UTF-8 into out (4 bytes room); returns the length. */
int sp_utf8_encode(uint32_t cp, char *out);
/* Offset of the first invalid byte, or len if all of s is valid UTF-8. */
size_t sp_utf8_validate(const char *s, size_t len);
/* Length a UTF-8 sequence starting with this byte claims (1 for stray bytes). */
int sp_utf8_seq_len(unsigned char first);

bool sp_unicode_is_letter(uint32_t cp);
bool sp_unicode_is_number(uint32_t cp);
bool sp_unicode_is_whitespace(uint32_t cp);

#endif
