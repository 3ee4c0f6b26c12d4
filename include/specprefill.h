/*
 * specprefill — a C inference engine for Llama-family models with speculative prefill.
 *
 * The public API. Every function that can fail returns an sp_status (0 = SP_OK) and leaves a
 * human-readable message in sp_last_error() (thread-local). The library never exits the process.
 *
 * Threads. A model is immutable once loaded: any number of threads and contexts may share it. A
 * context — and a sampler, a detokenizer — belongs to one thread at a time. Calls on different
 * contexts may run at the same time; they share the process-wide worker pool (sp_set_threads),
 * whose parallel sections take turns. Process-wide settings — sp_set_threads, and the
 * environment variables SPECPREFILL_ISA (kernel set) and SPECPREFILL_F16 (read once, at the
 * first call that needs them) — are to be set before other threads use the library.
 */
#ifndef SPECPREFILL_H
#define SPECPREFILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Symbols of the library's interface: exported from a shared build (every other symbol is
 * hidden), plain declarations in a static one. */
#if defined(_WIN32) && defined(SP_SHARED)
#  ifdef SP_BUILDING_LIBRARY
#    define SP_API __declspec(dllexport)
#  else
#    define SP_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__)
#  define SP_API __attribute__((visibility("default")))
#else
#  define SP_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version; CMakeLists.txt reads the project's VERSION from these three lines. */
#define SP_VERSION_MAJOR 0
#define SP_VERSION_MINOR 5
#define SP_VERSION_PATCH 0
SP_API const char *sp_version(void); /* "MAJOR.MINOR.PATCH" of the library linked, which may differ from the header */

typedef int32_t sp_token;

typedef enum {
    SP_OK = 0,
    SP_ERR_IO = -1,          /* cannot open / read / map a file */
    SP_ERR_FORMAT = -2,      /* malformed or inconsistent input data */
    SP_ERR_UNSUPPORTED = -3, /* valid input the engine does not implement (type, architecture…) */
    SP_ERR_ARGUMENT = -4,    /* caller passed an invalid argument */
    SP_ERR_MEMORY = -5,      /* allocation failed */
    SP_ERR_CONTEXT_FULL = -6 /* the KV cache has no room for the batch */
} sp_status;

/* The message of the last failure on this thread ("" if none). */
SP_API const char *sp_last_error(void);
/* Records a failure's message for sp_last_error and returns status, so that code built on the
 * library reports its own errors the same way: return sp_fail(SP_ERR_ARGUMENT, "...", ...). */
#if defined(__GNUC__)
SP_API sp_status sp_fail(sp_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#else
SP_API sp_status sp_fail(sp_status status, const char *fmt, ...);
#endif

/* ---------------------------------------------------------------- model */

typedef struct sp_model sp_model;

#define SP_N_TENSOR_TYPES 40 /* GGUF tensor type ids are below this */

/* How positions are scaled past the length a model was trained on. */
typedef enum {
    SP_ROPE_SCALING_AUTO = 0, /* contexts: the model's own; where it has none, YaRN for each sequence longer
                               * than its training context (sp_context_fit_rope) */
    SP_ROPE_SCALING_NONE,     /* positions as they are (Llama 3's frequency factors stay: they are weights) */
    SP_ROPE_SCALING_LINEAR,   /* positions divided by the factor (position interpolation) */
    SP_ROPE_SCALING_YARN      /* YaRN: slow pairs interpolated, fast ones kept, attention sharpened */
} sp_rope_scaling;

typedef struct {
    char arch[32];         /* "llama", "qwen2", "qwen3" */
    int n_vocab;
    int n_ctx_train;
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim;
    int n_ff;
    int n_rot;             /* rotary dimensions */
    float rope_base;
    float rms_eps;
    bool tied_output;
    uint64_t n_params;
    uint64_t file_size;
    uint32_t gguf_version;
    bool has_weights;        /* false: a vocabulary-only file (tokenizes, cannot run) */
    bool rope_neox;          /* RoPE pairs (i, i + n_rot/2) (qwen2, qwen3), else (2i, 2i+1) */
    bool rope_freq_factors;  /* Llama 3 frequency factors */
    bool has_chat_template;  /* tokenizer.chat_template present */
    int n_tensors_of_type[SP_N_TENSOR_TYPES]; /* tensors of each GGUF tensor type id */
    int n_repacked;          /* matrices rewritten at load (sp_model_params.repack), 0 otherwise */
    uint64_t repacked_bytes; /* their bytes, held in the process's own memory */
    sp_rope_scaling rope_scaling; /* the file's: NONE, LINEAR or YARN */
    float rope_scale;             /* its factor (1 = none) */
    int rope_orig_ctx;            /* YaRN's original context (else n_ctx_train) */
} sp_model_info;

/* The name of a GGUF tensor type id ("Q4_K", "F16", ...; "?" if unknown). */
SP_API const char *sp_tensor_type_name(int type);

/* How a model's file is brought into memory. */
typedef struct {
    bool no_mmap; /* false (the default): the file is mapped, its pages shared with every process
                   * that maps it and read on first use; true: read whole at load into the
                   * process's own memory, in huge pages where the OS gives them (decode reads
                   * every weight once a token: fewer TLB misses, often faster — README, Memory;
                   * the process then holds its own copy of the file) */
    bool repack;  /* true: the matrices of a type the kernels in use have an interleaved form
                   * for (Q4_0, Q8_0, Q4_K, Q5_K and Q6_K, with the AVX2, AVX-VNNI and AVX-512 VNNI kernels) are
                   * rewritten at load into the process's own memory, eight rows block by block,
                   * for a faster decode (README, Memory); their file pages are given back.
                   * Results differ from the file's layout in float rounding only. false (the
                   * default): the weights are used as the file has them */
} sp_model_params;

SP_API sp_model_params sp_model_default_params(void);
/* Maps (or reads, with no_mmap) a GGUF file and validates it; params NULL = the defaults. The
 * file's bytes stay in memory until sp_model_free. */
SP_API sp_status sp_model_load_with(const char *path, const sp_model_params *params, sp_model **out);
/* sp_model_load_with with the defaults. */
SP_API sp_status sp_model_load(const char *path, sp_model **out);
SP_API void sp_model_free(sp_model *model);
SP_API const sp_model_info *sp_model_get_info(const sp_model *model);

/* ------------------------------------------------------------- runtime */

/* Process-wide settings, explicit: the library reads no environment variable. Set them before
 * other threads use the library. (The specprefill command maps SPECPREFILL_ISA and
 * SPECPREFILL_F16 to them.) */

/* Worker threads used by every later call (0 = all cores). */
SP_API sp_status sp_set_threads(int n_threads);
SP_API int sp_get_threads(void);
/* The kernel set: "scalar", "avx2", "avx512" (every AVX-512 feature the CPU has), or an AVX-512
 * set with a feature left out as on CPUs without it: "avx512-nobf16", "avx512-novnni",
 * "avx512-base". NULL or "" = the best set this CPU runs (the default). SP_ERR_UNSUPPORTED if the
 * CPU or the build lacks it; the message lists the sets available. */
SP_API sp_status sp_set_kernels(const char *name);
/* The kernel set in use. */
SP_API const char *sp_kernels_name(void);
/* The instruction-set features the kernels can use that this CPU has ("avx2 avx512 avx512vnni ..."). */
SP_API const char *sp_cpu_features(void);
/* F16 weights in prefill: exact f32 products (false, the default), or bf16 operands where the
 * kernel set uses bf16 dot products — where they outrun f32 ones: AMD's Zen 4/5, Intel's AMX
 * (faster there; logits move by about 1e-2). Elsewhere F16 stays exact. */
SP_API void sp_set_f16_as_bf16(bool on);

/* ------------------------------------------------------------- context */

typedef struct sp_context sp_context;

typedef enum { SP_KV_F16 = 0, SP_KV_F32 = 1 } sp_kv_type;

typedef struct {
    int n_ctx;           /* KV-cache capacity in tokens (0 = min(model's training context, 4096)) */
    int n_batch;         /* tokens per forward micro-batch (0 = 512) */
    sp_kv_type kv_type;  /* storage of K and V (default F16) */
    sp_rope_scaling rope_scaling; /* default AUTO: per sequence (sp_context_fit_rope) */
    float rope_scale;    /* LINEAR / YARN factor (0 = n_ctx / yarn_orig_ctx, at least 1) */
    int yarn_orig_ctx;   /* the length the model was trained on (0 = the file's: YaRN's original context,
                          * else its training context) */
} sp_context_params;

SP_API sp_context_params sp_context_default_params(void);
SP_API sp_status sp_context_new(const sp_model *model, const sp_context_params *params, sp_context **out);
SP_API void sp_context_free(sp_context *ctx);
/* The position scaling the context runs with now: the kind, and its factor (1 = none). */
SP_API sp_rope_scaling sp_context_rope_scaling(const sp_context *ctx, float *factor);
/* AUTO contexts of a model with no scaling of its own: sets the scaling for a sequence of n_tokens
 * — YaRN by n_tokens / the training context where it is longer, else positions as trained. Only
 * while the context is empty (cached keys keep the scaling they were rotated with); otherwise,
 * and for contexts of another mode, nothing changes. Speculative prefill and speculative
 * decoding call it for the contexts they fill; a caller that runs sp_decode over a long prompt
 * itself calls it first. */
SP_API sp_status sp_context_fit_rope(sp_context *ctx, int n_tokens);
/* Forget every cached token. */
SP_API void sp_context_reset(sp_context *ctx);
/* Number of tokens in the KV cache. */
SP_API int sp_context_n_cached(const sp_context *ctx);
/* Position id of the last cached token (-1 if empty). */
SP_API int sp_context_last_pos(const sp_context *ctx);
/* Drop cached tokens from index n_keep on (cache order). */
SP_API sp_status sp_context_truncate(sp_context *ctx, int n_keep);
/* How many of the cache's first tokens are tokens[0..n), each at its index as position: what a
 * new prompt can keep of a cache read from the start (a full prefill's, a draft's). */
SP_API int sp_context_common_prefix(const sp_context *ctx, const sp_token *tokens, int n);

/* The cache as bytes (each cached token's position, id, K and V), to set aside and put back
 * later — a server keeps conversations this way when their slot is needed. The bytes belong to
 * this model and KV type (checked on load: another model's or a malformed buffer is refused
 * and leaves the context as it was); they are not a file format. */
SP_API size_t sp_context_state_size(const sp_context *ctx);
SP_API sp_status sp_context_state_save(const sp_context *ctx, void *buf, size_t size);
SP_API sp_status sp_context_state_load(sp_context *ctx, const void *buf, size_t size);

/*
 * Runs the model on n tokens, each with its own position id, appending them to the KV cache.
 * Positions may have gaps; attention is causal in cache order (a token sees every cached token
 * and the batch tokens before it). Logits are computed only for the batch rows listed in
 * logit_rows (indices into this batch, any order); logits_out receives n_logit_rows × n_vocab
 * floats. logit_rows may be NULL when n_logit_rows is 0.
 */
SP_API sp_status sp_decode(sp_context *ctx, const sp_token *tokens, const int32_t *positions, int n,
                    const int32_t *logit_rows, int n_logit_rows, float *logits_out);

/*
 * One decode step of n sequences at once: tokens[i] at positions[i] is appended to ctxs[i]
 * (n distinct contexts on one model), and logits_out[i * n_vocab ...] receives its next-token
 * logits. The weights are read from memory once for all n rows, which is what makes parallel
 * streams (a server's slots) cheaper together than one after another; each context gets
 * sp_decode's logits of its token alone, bit for bit.
 */
SP_API sp_status sp_decode_sequences(sp_context *const *ctxs, const sp_token *tokens, const int32_t *positions, int n,
                              float *logits_out);

/*
 * Passes, for a scheduler. Every call that runs a context's model (sp_decode, a prefill, the
 * stages of a speculative prefill, speculative decoding) does so in passes: each micro-batch of
 * at most n_batch tokens is one. By default a pass runs at once, on the calling thread. A server
 * that owns several contexts gives each a runner instead: the call hands its pass to
 * run(user, pass) and waits for it to return; the runner has it run — sp_passes_run, from any
 * thread, now or after other work, alone or in one forward pass with other contexts' passes —
 * and returns sp_passes_run's status. That is how one loop holds every stream's next token and a
 * piece of a long prompt in a single forward pass (continuous batching with chunked prefill).
 * A call that waits on its runner must not be the one to run the pass (the runner decides), and
 * nothing else may use the context meanwhile. NULL: passes run at once (the default).
 */
typedef struct sp_pass sp_pass;
SP_API void sp_context_set_runner(sp_context *ctx, sp_status (*run)(void *user, sp_pass *pass), void *user);
SP_API sp_context *sp_pass_context(const sp_pass *pass);
SP_API const sp_model *sp_pass_model(const sp_pass *pass);
SP_API int sp_pass_n_tokens(const sp_pass *pass);
/* false for a pass that needs a forward pass of its own: the scoring of a speculative prefill,
 * a self-speculation draft's first layers */
SP_API bool sp_pass_joins(const sp_pass *pass);
/*
 * Runs n passes (distinct contexts, one model; more than one only if each joins) as one forward
 * pass: each pass's tokens join its context as its own call asked, and its logits go where that
 * call asked — bit for bit what the pass gives alone, whatever else the forward pass holds (a
 * sequence's tokens never depend on what it was batched with). The weights are read from memory
 * once for all the one-token passes (decode steps, each dotted as a lone token) and once for
 * each longer pass. scratch: a context on the same model whose n_batch holds every pass's tokens
 * and whose working buffers the pass uses (its cache is not touched; it may be one of the passes'
 * contexts), or NULL for the first pass's context. On an error nothing ran (SP_ERR_ARGUMENT:
 * mixed models, a pass that does not join among others, too many tokens; SP_ERR_MEMORY).
 */
SP_API sp_status sp_passes_run(sp_context *scratch, sp_pass *const *passes, int n);

/* --------------------------------------------------------- tokenizer */

typedef enum {
    SP_TOKEN_NORMAL = 1, SP_TOKEN_UNKNOWN = 2, SP_TOKEN_CONTROL = 3,
    SP_TOKEN_USER_DEFINED = 4, SP_TOKEN_UNUSED = 5, SP_TOKEN_BYTE = 6
} sp_token_type;

/*
 * Tokenizes UTF-8 text (len bytes; invalid UTF-8 is an error). add_special adds BOS (and EOS)
 * as the model's metadata asks; parse_special turns special-token markup into those tokens.
 * *out is malloc'ed; the caller frees it.
 */
SP_API sp_status sp_tokenize(const sp_model *model, const char *text, size_t len, bool add_special,
                      bool parse_special, sp_token **out, int *n_out);
/* Raw bytes of one token (control tokens render as "" unless render_special). Returns bytes
 * written, or the negative size needed if buf is too small. */
SP_API int sp_token_to_bytes(const sp_model *model, sp_token token, bool render_special, char *buf, int size);
SP_API sp_token_type sp_token_get_type(const sp_model *model, sp_token token);
SP_API sp_token sp_token_bos(const sp_model *model);   /* -1 if none */
SP_API sp_token sp_token_eos(const sp_model *model);
SP_API bool sp_token_is_eog(const sp_model *model, sp_token token); /* EOS, EOT, or another end-of-generation */

/* Streaming detokenizer: emits only complete UTF-8 characters. */
typedef struct {
    const sp_model *model;
    bool render_special;
    bool strip_leading_space; /* SentencePiece: drop the space of the first piece */
    bool started;
    unsigned char pending[8];
    int n_pending;
} sp_detokenizer;
SP_API void sp_detokenizer_init(sp_detokenizer *d, const sp_model *model, bool render_special);
/* Appends the text of `token` to out (a buffer of `size` bytes); returns bytes written (≥0), or
 * the negative size needed. Incomplete UTF-8 stays pending until the next call. */
SP_API int sp_detokenizer_push(sp_detokenizer *d, sp_token token, char *out, int size);
/* Flushes what is pending (invalid UTF-8 becomes U+FFFD). */
SP_API int sp_detokenizer_flush(sp_detokenizer *d, char *out, int size);
/* The same two as one growing, NUL-terminated string: *text (heap, may be NULL at first) holds
 * *len bytes in *cap. Appends the token's text (flush: token < 0) and returns the bytes added,
 * or SP_ERR_MEMORY with the text unchanged. Free *text with free(). */
SP_API int sp_detokenizer_append(sp_detokenizer *d, sp_token token, char **text, size_t *len, size_t *cap);

/* ------------------------------------------------------ chat templates */

typedef struct {
    const char *role;     /* "system", "user", "assistant" */
    const char *content;
} sp_chat_message;

/* Chat templates are Jinja, run as Hugging Face transformers runs them (trim_blocks,
 * lstrip_blocks, loop controls, its tojson; raise_exception and strftime_now): the model's own
 * tokenizer.chat_template, or a built-in one. The variables: messages, add_generation_prompt,
 * bos_token and eos_token (the model's), tools and documents (none), and the caller's extras.
 * An error names the template line (a syntax error, an unsupported construct, raise_exception). */

/* The family of the model's template by its markup ("llama3", "chatml", "gemma", ...; NULL if
 * none is recognised or it has none): for display only, rendering always runs the template. */
SP_API const char *sp_chat_template_detect(const sp_model *model);
/* The Jinja source of a built-in template — chatml, llama3, mistral-v7, mistral-nemo, llama2 — or
 * NULL. A model without a template renders with chatml. */
SP_API const char *sp_chat_builtin(const char *name);
/* Renders a conversation of plain messages. template_name: a built-in, or NULL for the model's
 * own. *out is malloc'ed. */
SP_API sp_status sp_chat_apply(const sp_model *model, const char *template_name, const sp_chat_message *msgs,
                        int n_msgs, bool add_generation_prompt, char **out);
/* Plain messages rendered with a template's Jinja source (NULL = the model's own), with extra
 * variables (vars_json: a JSON object, or NULL). */
SP_API sp_status sp_chat_render(const sp_model *model, const char *template_source, const sp_chat_message *msgs, int n_msgs,
                                const char *vars_json, bool add_generation_prompt, char **out);
/* The same with everything a template may read: template_source (Jinja text; NULL = the model's
 * own), messages_json (an array of message objects as the OpenAI API sends them: content parts,
 * tool calls, tool results pass through as given), vars_json (NULL, or an object of extra
 * variables: "tools", "enable_thinking", "bos_token", ...). model may be NULL with a source (then
 * bos_token and eos_token are empty unless vars_json sets them). */
SP_API sp_status sp_chat_apply_json(const sp_model *model, const char *template_source, const char *messages_json,
                                    const char *vars_json, bool add_generation_prompt, char **out);

/* ------------------------------------------------------------- sampling */

typedef struct {
    float temperature;    /* 0 = greedy */
    int top_k;            /* 0 = off */
    float top_p;          /* 1 = off */
    float min_p;          /* 0 = off */
    float repeat_penalty; /* 1 = off */
    int repeat_last_n;    /* how many recent tokens the penalty looks at */
    uint64_t seed;
} sp_sampling_params;

typedef struct sp_sampler sp_sampler;
SP_API sp_sampling_params sp_sampling_default_params(void);
SP_API sp_status sp_sampler_new(const sp_sampling_params *params, int n_vocab, sp_sampler **out);
SP_API void sp_sampler_free(sp_sampler *s);
/* Picks a token from one row of logits (modified in place by penalties). */
SP_API sp_token sp_sampler_sample(sp_sampler *s, float *logits);
/* Remembers a token for the repetition penalty. */
SP_API void sp_sampler_accept(sp_sampler *s, sp_token token);

/* --------------------------------------------------- speculative prefill */

/*
 * SpecPrefill (Liu, Chen, Zhang, ICML 2025): a small draft model reads the whole prompt and K
 * look-ahead tokens; the attention of those queries scores every prompt token; the main model
 * then prefills only the best chunks, each token at its original position.
 */
typedef struct {
    float keep_rate;       /* share of chunks to keep (default 0.3) */
    int chunk;             /* tokens per chunk (default 32; 1 selects single tokens) */
    int lookahead;         /* K: queries = last prompt token + K-1 generated ones (default 8) */
    int pool_kernel;       /* 1-D average pooling of each head's attention row (default 13; ≤1 off) */
    bool keep_last_chunk;  /* always keep the prompt's last chunk (default true) */
    bool keep_special;     /* always keep BOS and control tokens, i.e. chat markup (default true) */
    float keep_mass;       /* >0: adaptive — fewest chunks whose importance reaches this share */
    float keep_min, keep_max; /* bounds of the adaptive share of chunks (default 0.05, 0.9) */
    int self_layers;       /* self-speculation (no draft): layers used to score (0 = ceil(n_layer/4)) */
    bool any_vocab;        /* allow a draft with another tokenizer (scores mapped through bytes) */
} sp_specprefill_params;

typedef struct {
    int n_prompt, n_kept, n_lookahead;
    double draft_prefill_s, lookahead_s, scoring_s, selection_s, main_prefill_s, ttft_s;
    /* sp_specprefill_cached: the prompt's first n_reused tokens came from the main context's cache
     * (n_reused_kept of them as cached tokens, counted in n_kept), and n_draft_reused of the
     * draft's tokens from its cache */
    int n_reused, n_reused_kept, n_draft_reused;
} sp_specprefill_stats;

SP_API sp_specprefill_params sp_specprefill_default_params(void);

/*
 * Scores `prompt` with the draft and prefills the kept tokens into main_ctx (which must be
 * empty). draft_ctx: a context on the draft model, or on the main model itself for
 * self-speculation (then only the first self_layers layers run). With params->any_vocab the
 * draft's tokenizer may differ: prompt_text (the text the prompt was tokenized from) is then
 * required. Outputs: logits (n_vocab of the main model) for the token after the prompt;
 * optional importance[n] (scores per prompt token) and kept[n] (1 if prefilled); stats.
 * Generation continues at position n.
 */
SP_API sp_status sp_specprefill(sp_context *main_ctx, sp_context *draft_ctx, const sp_token *prompt, int n,
                         const char *prompt_text, const sp_specprefill_params *params, float *logits,
                         float *importance, uint8_t *kept, sp_specprefill_stats *stats);

/*
 * The next turn on the same contexts (a follow-up question on the same document): what the
 * caches hold of an earlier prompt is read again by neither model.
 *   main_ctx keeps its cached tokens at positions below n_reuse — the caller vouches that they
 *     were prefilled (kept or skipped) from a text whose first n_reuse tokens are prompt's, e.g.
 *     the earlier prompt and its answer; each cached token is checked against prompt, and the
 *     reuse ends at the first that differs or where the cache ends;
 *   draft_ctx keeps the longest start of its cache that is the draft's tokens of this prompt,
 *     reads the rest, and the look-ahead queries score every token, old and new;
 *   the tokens after the reused ones are selected as a prompt of their own (chunks counted from
 *     the first new token, its last chunk kept, ceil(new chunks × keep_rate)) and prefilled at
 *     their original positions, after the cached ones.
 * kept[j] (may be NULL) is 1 for the reused cached tokens too; stats->n_reused etc. say what was
 * reused. The main context then holds what a cold sp_prefill_kept of the same kept set gives (up
 * to the rounding of other batch splits). With n_reuse = 0 the main context starts empty. An
 * error once the caches changed empties both (a bad argument changes nothing): neither holds
 * part of a failed prefill.
 */
SP_API sp_status sp_specprefill_cached(sp_context *main_ctx, sp_context *draft_ctx, const sp_token *prompt, int n, int n_reuse,
                                       const char *prompt_text, const sp_specprefill_params *params, float *logits,
                                       float *importance, uint8_t *kept, sp_specprefill_stats *stats);

/* Checks that two models share a tokenizer; if not, the error names the first difference. */
SP_API sp_status sp_vocab_check_same(const sp_model *main_model, const sp_model *draft_model);

/* The three stages sp_specprefill runs, for callers that need them apart (an evaluation that
 * selects at several keep rates from one scoring, a server that keeps the scores): */

/* Stages 1–3: importance[j] of each of the main model's prompt tokens. draft_ctx runs the
 * draft model; or the main model itself (self-speculation: its first self_layers layers score);
 * or, with params->any_vocab, a model with another tokenizer (prompt_text required: the draft
 * scores its own tokens of the text, and each main token takes the max over the draft tokens its
 * bytes overlap). The draft context is reset first; stats (may be NULL) gets the draft's timings. */
SP_API sp_status sp_specprefill_score(sp_context *draft_ctx, const sp_model *main_model, const sp_token *prompt, int n,
                                      const char *prompt_text, const sp_specprefill_params *params, float *importance,
                                      sp_specprefill_stats *stats);
/* Stage 4: kept[j] ∈ {0, 1}: the best chunks by mean importance — ceil(n_chunks × keep_rate), or
 * with keep_mass the fewest holding that share of the importance — the last chunk (counted in
 * the budget) and, on top, BOS and control tokens; *n_kept (may be NULL) counts them. */
SP_API sp_status sp_specprefill_select(const sp_model *main_model, const sp_token *prompt, int n, const float *importance,
                                       const sp_specprefill_params *params, uint8_t *kept, int *n_kept);
/* Stage 5: ctx's model prefills only the kept tokens, each at its original position (kept[n-1]
 * must be set); logits (n_vocab) of the token after the prompt. Generation continues at n. */
SP_API sp_status sp_prefill_kept(sp_context *ctx, const sp_token *prompt, int n, const uint8_t *kept, float *logits);
/* SP_OK if the parameters are valid, else the error names the first that is not. Every stage
 * checks them; front ends use this to validate what a user sent. */
SP_API sp_status sp_specprefill_params_check(const sp_specprefill_params *params);

/* ---------------------------------------------------- speculative decoding */
/*
 * The SpecPrefill draft has read the whole prompt; after the first token it can propose the next
 * few, which the main model checks in one forward pass. The caller's sampler decides: greedy, the
 * text is token for token what plain decoding gives; sampling, each proposal is accepted with
 * probability min(1, p/q) and a refusal is replaced by a draw from the normalised residual
 * max(0, p − q), so the text is distributed as plain sampling's (p: the main model's distribution
 * through the sampler's chain, q: the draft's through the same chain). The draft must share the
 * main model's tokenizer and be another model (self-speculation's first-layer cache cannot
 * propose); its context needs room for the prompt, the output and SP_SPECDECODE_MAX_DRAFT more.
 */
#define SP_SPECDECODE_MAX_DRAFT 3 /* proposals per step: γ+1 verification rows, each computed as a single-row decode */
typedef struct {
    int draft_start, draft_min, draft_max; /* γ starts at start (brought within min..max) and adapts between min and max (default 2, 1, 3) */
    bool always;    /* propose at every step, never rest the draft (to measure a draft's acceptance; slower where it does not pay) */
} sp_specdecode_params;
typedef struct sp_specdecoder sp_specdecoder;

SP_API sp_specdecode_params sp_specdecode_default_params(void);
/* main_ctx holds the prompt (after a full or a speculative prefill); draft_ctx holds it too
 * (after sp_specprefill: its look-ahead is dropped) or not yet (then it reads it on the first step). */
SP_API sp_status sp_specdecoder_new(sp_context *main_ctx, sp_context *draft_ctx, const sp_token *prompt, int n_prompt,
                                    const sp_specdecode_params *params, sp_specdecoder **out);
/* A new sequence in the same contexts (main_ctx prefilled with it, draft_ctx too or reset): the
 * decoder keeps what it has learnt of the draft's cost and acceptance — a server's slot keeps one
 * decoder across requests, so that a draft that does not pay stays at rest instead of being tried
 * again on every request. params: NULL keeps the decoder's. Resets the counts of proposals. */
SP_API sp_status sp_specdecoder_restart(sp_specdecoder *sd, const sp_token *prompt, int n_prompt, const sp_specdecode_params *params);
/* One step: `logits` are the main model's for the next position (from the prefill, or the last
 * step, which leaves them there); the sampler picks, the draft proposes, the main model checks.
 * Writes 1 to max_out tokens into out and returns their count, or a negative sp_status. An
 * end-of-generation token may come anywhere among them: the caller stops there. With max_out 1
 * the step only picks the token: to go on, the caller decodes it in main_ctx at the next position
 * (alone, or batched with other sequences) and passes the logits it gets to the next step. */
SP_API int sp_specdecoder_step(sp_specdecoder *sd, sp_sampler *sampler, float *logits, sp_token *out, int max_out);
/* Proposals made and accepted in this sequence so far. */
SP_API void sp_specdecoder_stats(const sp_specdecoder *sd, long *drafted, long *accepted);
SP_API void sp_specdecoder_free(sp_specdecoder *sd);

#ifdef __cplusplus
}
#endif
#endif
