/*
 * The engine: one model ready to generate, shared by `hypura run` and the
 * HTTP server. It owns the model, the compute backend, the tokenizer, the
 * placement plan and one or more sequences (a forward pass with its own KV
 * cache), and turns prompt tokens into a stream of text pieces.
 *
 *   engine_open          model header, backend, sequences (KV caches), tokenizer, plan
 *   engine_load_weights  the weights' bytes (the only step that reads tensor data)
 *   engine_tokenize      text -> tokens
 *   engine_gen_start     prompt into a sequence (prefix reuse, prefill)
 *   engine_gen_next      one token sampled, its text released through the stop filter
 *   engine_gen_free      stats stay readable until then
 *
 * Prefix reuse. Each sequence remembers the tokens its KV cache holds. A
 * prompt that starts with some of them keeps that part of the cache
 * (forward_truncate) and evaluates only the rest; at least its last token is
 * evaluated, because sampling needs its logits. Logits do not depend on how a
 * sequence was split into evaluation calls (forward.h), so the output is the
 * same as with a fresh cache. A multi-turn chat re-evaluates only the new
 * turn.
 *
 * Generation, per token (the order of llama.cpp's CLI): stop at the
 * n_predict limit; sample; an end-of-generation token ends it (not shown,
 * not evaluated); otherwise detokenize (whole UTF-8 characters only), pass
 * through the stop-string filter (a stop string and what follows it are never
 * shown), then evaluate the token unless the limit or a full context ends it.
 * The first piece keeps its leading space: the text continues the prompt.
 *
 * Threads. One engine may serve several threads, each holding its own
 * sequence (engine_seq_acquire): sampling and detokenizing run in parallel,
 * forward evaluations are serialised by the engine's lock (the backend runs
 * one op at a time over its own thread pool), so concurrent generations
 * interleave token by token. A generation (struct engine_gen) belongs to one
 * thread.
 *
 * Weights: engine_load_weights attaches the weight store in the mode the
 * plan chose (or --mode forced), so the forward pass streams what does not
 * fit without knowing it.
 *
 * Not here: chat templates (src/chat), HTTP (src/server), printing.
 */
#ifndef HY_ENGINE_ENGINE_H
#define HY_ENGINE_ENGINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base.h"
#include "model/forward.h"
#include "model/model.h"
#include "plan/plan.h"
#include "sample/sampler.h"
#include "io/io.h"
#include "text/tokenizer.h"

#define ENGINE_DEFAULT_CTX 2048

struct engine_opts {
    const char *model_path;
    int64_t n_ctx;     /* KV positions per sequence; 0: the model's training context, or
                          ENGINE_DEFAULT_CTX when the file does not say */
    int64_t n_threads; /* >= 1 */
    int64_t n_batch;   /* prompt tokens per step; 0: FORWARD_DEFAULT_BATCH */
    uint32_t kv_type;  /* enum hy_type of the KV cache (forward_config.kv_type) */
    int n_seq;         /* sequences (KV caches); 0: 1 */
    bool logits_all;   /* the sequences' forwards keep every token's logits of a step
                          (forward_eval_all: hypura perplexity) */
    /* Placement plan for ram_budget_bytes on this hardware; NULL: no plan. */
    const struct plan_hw *hw;
    uint64_t ram_budget_bytes;
    /* placement mode: NULL or "auto" (the plan's), "resident", "dense-stream",
     * "expert-stream", "mmap" (the baseline: weights through a memory map) */
    const char *mode;
    struct io_config io; /* how streamed weights are read (--io) */
    /* where per-model statistics persist (expert co-activation); NULL: nowhere */
    const char *cache_dir;
    /* The GPU: NULL or "off" (CPU only), "auto" (CUDA when a device is
     * present), "on" (CUDA, an error without a device). With a GPU the plan
     * places tensors on it up to gpu_budget_bytes (0: free VRAM minus
     * headroom); gpu_host says how host weights are computed (cuda_host_policy:
     * 0 auto, 1 cpu, 2 copy). */
    const char *gpu;
    uint64_t gpu_budget_bytes;
    int gpu_host;
    /* llama.cpp's -ngl: with gpu_layers_set and no gpu_budget_bytes, the
     * budget is plan_gpu_layers_budget's for gpu_layers (at most the default
     * one) */
    bool gpu_layers_set;
    int64_t gpu_layers;
};

/* A sequence: a KV cache and the tokens in it. */
struct engine_seq {
    struct forward *f; /* owned */
    int32_t *tokens;   /* owned, [n_ctx]: tokens[0..n_tokens) are in the KV cache */
    int64_t n_tokens;
    bool busy; /* held by a thread (engine_seq_acquire) */
};

struct engine {
    char *model_path;     /* owned */
    const char *mode;     /* the mode the weights are placed in (store_mode_name), once loaded;
                             the plan's until then */
    enum plan_force force; /* from engine_opts.mode */
    bool use_mmap;         /* engine_opts.mode "mmap" */
    struct io_config io;
    char *cache_dir;       /* owned; NULL: none */
    uint64_t proc_read0;   /* /proc/self/io read_bytes after the load (mmap accounting) */
    struct model *m;      /* owned */
    struct backend *be;   /* owned */
    bool on_gpu;          /* be is the CUDA backend */
    /* why --gpu auto stayed on the CPU (a device present, or a GPU budget
     * asked for without one), or that the GPU budget asked for was more than
     * the device has; "" else */
    char gpu_note[160];
    uint64_t gpu_budget_bytes; /* the GPU tier's budget, when on_gpu */
    int64_t gpu_layers;        /* engine_opts.gpu_layers; -1: not given */
    struct tokenizer tok; /* owned when have_tok */
    bool have_tok;
    int64_t n_ctx;
    int64_t n_threads;
    int n_seq;
    struct engine_seq *seq; /* owned, [n_seq] */
    struct plan plan;       /* valid when have_plan */
    bool have_plan;
    char plan_err[512]; /* why there is no plan, when hw was given and planning failed */
    char *chat_template; /* owned: tokenizer.chat_template, NULL when the file has none */
    /* Serialises forward evaluations and guards busy flags. */
    pthread_mutex_t lock;
    pthread_cond_t seq_free;
};

/* Opens the model (header only), starts the CPU backend, allocates the
 * sequences' KV caches and reads the tokenizer, in that order, then plans
 * the placement when o->hw is set (a failed plan is not an error: plan_err
 * says why). Weights are not read: engine_load_weights does that. Errors: those
 * of model_open, cpu_backend_init, forward_init and tokenizer_init, and
 * HY_ERR_FORMAT when the vocabulary is larger than the embedding. */
HY_MUST_CHECK enum hy_status engine_open(const struct engine_opts *o, struct engine **out);

/* NULL is a no-op. No generation may be running. */
void engine_close(struct engine *e);

/* What engine_open gives the plan beside the weights and the KV cache, from
 * a model's header alone (hypura plan): plan_params.compute_bytes (RAM) and,
 * with a GPU budget (the CUDA backend), plan_params.gpu_compute_bytes, for
 * one sequence of n_ctx tokens, batch n_batch (0: the default) and KV cache
 * type kv_type. Errors: those of forward_sizes_of, and HY_ERR_UNSUPPORTED with
 * a GPU budget when the model's heads are larger than the GPU's attention
 * takes (CUDA_ATT_MAX_HEAD_DIM). */
HY_MUST_CHECK enum hy_status engine_plan_work(const struct model_info *mi, int64_t n_ctx,
                                              int64_t n_batch, uint32_t kv_type,
                                              uint64_t gpu_budget, uint64_t *ram_work,
                                              uint64_t *gpu_work);

/* Places the model's weights as the plan says (progress may be NULL): a
 * weight store (src/store) in mode resident or dense-stream, or the mmap
 * baseline. Without a plan everything is resident. Errors: those of
 * store_open (HY_ERR_OOM, HY_ERR_IO). Calling it again is a no-op. */
HY_MUST_CHECK enum hy_status engine_load_weights(struct engine *e, model_progress_fn progress,
                                                 void *user);

/* Bytes read from the model file: at load, and since (streaming; in mmap
 * mode what the kernel read for this process since the load, from
 * /proc/self/io); read stalls of the streaming store. */
struct engine_io {
    uint64_t load_bytes, run_bytes;
    uint64_t stalls;
    int64_t stall_us;
    uint64_t resident_bytes; /* weights held in RAM (arena), pool excluded */
    uint64_t pool_bytes;
};
struct engine_io engine_io(const struct engine *e);

/* Tokens of text[0..len) under the model's tokenizer (flags: TOKENIZER_*),
 * in *out (owned by the caller, free()) and *n_out. Errors: none in practice
 * (tokenizer_tokenize's). */
HY_MUST_CHECK enum hy_status engine_tokenize(const struct engine *e, const char *text, size_t len,
                                             unsigned flags, int32_t **out, int64_t *n_out);

/* Sequence s for the calling thread: the free sequence whose cache shares
 * the longest prefix with prompt[0..n_prompt) (n_prompt may be 0), waiting
 * while every sequence is busy. Release with engine_seq_release. */
int engine_seq_acquire(struct engine *e, const int32_t *prompt, int64_t n_prompt);
void engine_seq_release(struct engine *e, int seq);

/* Why a generation ended. */
enum engine_stop {
    ENGINE_STOP_NONE = 0, /* still running */
    ENGINE_STOP_EOG,      /* an end-of-generation token */
    ENGINE_STOP_STRING,   /* a stop string */
    ENGINE_STOP_LIMIT,    /* the n_predict limit */
    ENGINE_STOP_CTX,      /* the context is full */
    ENGINE_STOP_CANCEL,   /* engine_gen_cancel */
};

/* "end of generation", "a stop string", "the -n limit", "a full context", "cancelled" */
const char *engine_stop_text(enum engine_stop s);
/* As the Ollama and OpenAI APIs say it: "stop" (EOG, stop string, cancel) or "length". */
const char *engine_stop_api(enum engine_stop s);

struct engine_gen_params {
    struct sampler_params sp;
    int64_t n_predict;        /* tokens to generate at most; -1: until EOG or a full context */
    const char *const *stops; /* borrowed, [n_stops] non-empty strings; outlive the generation */
    int n_stops;
};

struct engine_gen_stats {
    int64_t n_prompt;      /* prompt tokens */
    int64_t n_prompt_eval; /* of them, evaluated (the rest came from the cache) */
    int64_t n_gen;         /* tokens generated (an end-of-generation token not counted) */
    int64_t n_decode;      /* forward passes of one token */
    int64_t prompt_us;     /* prefix reuse and prompt evaluation */
    int64_t gen_us;        /* sampling, detokenizing and decoding after the prompt */
    int64_t decode_us;
    /* read from the model file while evaluating the prompt, and while
     * generating; the time spent waiting for reads while generating
     * (engine_io's; shared by concurrent generations) */
    uint64_t prompt_read_bytes, gen_read_bytes;
    int64_t gen_stall_us;
    enum engine_stop stop;
};

struct engine_gen;

/* Starts a generation in sequence seq (held by the caller): keeps the cached
 * prefix the prompt shares, evaluates the rest. The prompt's tokens are fed to
 * the sampler's penalties. Errors: HY_ERR_INVALID_ARG (an empty prompt, one
 * that leaves no room in the context, a bad sampler parameter or stop
 * string), or the forward pass's (the sequence's cache is then emptied). */
HY_MUST_CHECK enum hy_status engine_gen_start(struct engine *e, int seq, const int32_t *prompt,
                                              int64_t n_prompt, const struct engine_gen_params *p,
                                              struct engine_gen **out);

/* Generates one token. *text and *len get the text that is now certain to be
 * output (possibly empty; valid until the next call); *done is set when the
 * generation has ended (the text returned with it is its last). After done,
 * further calls return no text. Errors: those of forward_eval (the
 * generation is then over and the sequence's cache emptied). */
HY_MUST_CHECK enum hy_status engine_gen_next(struct engine_gen *g, const char **text, size_t *len,
                                             bool *done);

/* Ends the generation at the next engine_gen_next, which returns the
 * held-back text as its last (stop reason ENGINE_STOP_CANCEL). May be called
 * from another thread. */
void engine_gen_cancel(struct engine_gen *g);

const struct engine_gen_stats *engine_gen_stats(const struct engine_gen *g);

/* The tokens generated so far (the end-of-generation token not included);
 * valid until the next engine_gen_next or engine_gen_free. */
const int32_t *engine_gen_tokens(const struct engine_gen *g, int64_t *n);

/* NULL is a no-op. The sequence keeps its cache for the next request. */
void engine_gen_free(struct engine_gen *g);

/* Callback of engine_generate: text[0..len) to output (len may be 0 only
 * at the end); return false to stop generating (ENGINE_STOP_CANCEL). */
typedef bool (*engine_piece_fn)(void *user, const char *text, size_t len);

/* engine_gen_start, then engine_gen_next until done, calling piece for
 * every non-empty text; *stats gets the result. */
HY_MUST_CHECK enum hy_status engine_generate(struct engine *e, int seq, const int32_t *prompt,
                                             int64_t n_prompt, const struct engine_gen_params *p,
                                             engine_piece_fn piece, void *user,
                                             struct engine_gen_stats *stats);

#endif
