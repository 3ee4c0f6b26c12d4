/* Generated tokens → text cut at stop strings, handed out in pieces that are safe to show. */
#include <stdlib.h>
#include <string.h>

#include "common.h"

sp_status spc_text_init(spc_text *t, const sp_model *model, const char *const *stops, int n_stops) {
    memset(t, 0, sizeof *t);
    if (n_stops < 0 || n_stops > SPC_MAX_STOPS) return sp_fail(SP_ERR_ARGUMENT, "at most %d stop strings", SPC_MAX_STOPS);
    sp_detokenizer_init(&t->detok, model, false);
    for (int i = 0; i < n_stops; i++) {
        if (!stops[i] || !*stops[i]) continue;
        t->stops[t->n_stops++] = stops[i];
        const size_t l = strlen(stops[i]);
        if (l > t->max_stop) t->max_stop = l;
    }
    return SP_OK;
}

sp_status spc_text_add(spc_text *t, sp_token token) {
    if (t->stopped) return SP_OK;
    const size_t before = t->len;
    const int k = sp_detokenizer_append(&t->detok, token, &t->text, &t->len, &t->cap);
    if (k < 0) return (sp_status)k;
    /* a stop string that appears now ends in the new bytes: search from max_stop - 1 before them */
    const size_t from = before >= t->max_stop ? before - t->max_stop + 1 : 0;
    size_t cut = t->len;
    for (int i = 0; i < t->n_stops && t->text; i++) {
        const char *hit = strstr(t->text + from, t->stops[i]);
        if (hit && (size_t)(hit - t->text) < cut) cut = (size_t)(hit - t->text);
    }
    if (cut < t->len) {
        t->len = cut;
        t->text[cut] = 0;
        t->stopped = true;
    }
    return SP_OK;
}

/* The longest end of text[0, len) that begins some stop string: it may still become one. */
static size_t held_back(const spc_text *t, size_t from) {
    size_t hold = 0;
    for (int i = 0; i < t->n_stops; i++) {
        const size_t l = strlen(t->stops[i]);
        for (size_t k = l - 1; k > hold; k--)
            if (k <= t->len - from && memcmp(t->text + t->len - k, t->stops[i], k) == 0) { hold = k; break; }
    }
    return hold;
}

const char *spc_text_piece(spc_text *t, bool final, size_t *len) {
    size_t safe = t->len;
    if (!final && !t->stopped) {
        safe -= held_back(t, t->given);
        /* never end a piece inside a character (the hold-back can cut one) */
        while (safe > t->given && ((unsigned char)t->text[safe] & 0xC0) == 0x80) safe--;
    }
    *len = safe > t->given ? safe - t->given : 0;
    const char *piece = t->text ? t->text + t->given : "";
    t->given += *len;
    return piece;
}

void spc_text_free(spc_text *t) {
    free(t->text);
    memset(t, 0, sizeof *t);
}
