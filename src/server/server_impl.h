/*
 * What the server's HTTP glue (server.c) shares with its two APIs (ollama.c,
 * openai.c). Not a public header: only src/server includes it.
 *
 * A request's path leads to a route (struct server_route) of one of the two
 * API tables; server.c checks the method, reads and parses the body, and
 * calls the route. A generation route parses its request into a struct
 * server_req (every problem is a 400 before any response starts) and hands
 * it to server_run_job with its API's format (struct server_fmt): how to
 * write a piece of text, the final object and an error in that API's shape.
 * The job then runs in the connection's thread (server.c).
 */
#ifndef HY_SERVER_SERVER_IMPL_H
#define HY_SERVER_SERVER_IMPL_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat_template.h"
#include "core/base.h"
#include "core/mem.h"
#include "engine/engine.h"

struct server {
    struct engine *e; /* borrowed */
    struct MHD_Daemon *d;
    int port;
    uint64_t max_body;
    char *name;   /* owned: the model's API name */
    char *digest; /* owned: 64 hex digits identifying the file version */
    enum chat_template tmpl;
    bool tmpl_forced; /* server_set_chat_template */
    uint64_t file_bytes;
    char modified_at[64];
    atomic_bool stopping;
    atomic_uint_fast64_t n_req; /* for ids and default seeds */
};

/* ------------------------------------------------------------------ text -- */

/* A growing NUL-terminated string. */
struct sbuf {
    char *p; /* owned */
    size_t len, cap;
};

static inline void sb_addn(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = 2 * (b->len + n + 1);
        b->p = mem_xrealloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static inline void sb_add(struct sbuf *b, const char *s)
{
    sb_addn(b, s, strlen(s));
}

/* Appends j as compact JSON and drops the reference. */
static inline void sb_add_json(struct sbuf *b, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    HY_ASSERT(s != NULL);
    sb_add(b, s);
    free(s);
    json_decref(j);
}

/* text[0..n) as a JSON string; bytes that are not UTF-8 (a model can emit
 * any byte) become U+FFFD, as JSON needs. */
json_t *server_json_text(const char *text, size_t n);

/* Now (plus add_s seconds) as "2024-05-01T12:34:56.123456789Z". */
void server_iso_time(char *out, size_t cap, int64_t add_s);

/* ------------------------------------------------------------- responses -- */

enum server_api { SERVER_API_OLLAMA, SERVER_API_OPENAI };

enum MHD_Result server_send_body(struct MHD_Connection *c, unsigned status, const char *type,
                                 const char *body, size_t len);
/* Sends j (the reference is dropped). */
enum MHD_Result server_send_json(struct MHD_Connection *c, unsigned status, json_t *j);
/* The error body in the API's shape: Ollama {"error": msg}, OpenAI
 * {"error": {"message", "type", "param", "code"}}. */
json_t *server_error_json(enum server_api api, unsigned status, const char *msg);
enum MHD_Result server_send_error(struct MHD_Connection *c, enum server_api api, unsigned status,
                                  const char *fmt, ...) HY_PRINTF(4, 5);

/* ----------------------------------------------------------------- model -- */

/* The model's name with its tag, "NAME:latest", in buf. */
const char *server_model_full_name(const struct server *s, char *buf, size_t cap);
/* Ollama's "details" object. */
json_t *server_model_details(const struct server *s);
/* 400 for a request without a model ("model", or "name" in older Ollama
 * clients), 404 for one this server does not have; MHD_YES with *ok set
 * when it is ours. */
enum MHD_Result server_check_model(struct server *s, struct MHD_Connection *c,
                                   enum server_api api, json_t *body, bool *ok);
bool server_name_matches(const struct server *s, const char *name);
/* True when prompts are formatted with a chat template (the model has one,
 * or one was forced). */
bool server_templated(const struct server *s);

/* -------------------------------------------------------------- requests -- */

enum server_kind { SERVER_KIND_GENERATE, SERVER_KIND_CHAT };

/* A generation request, parsed and checked. */
struct server_req {
    enum server_api api;
    enum server_kind kind;
    bool stream;
    bool include_usage; /* OpenAI stream_options.include_usage */
    int32_t *prompt;    /* owned */
    int64_t n_prompt;
    struct engine_gen_params gp;
    char **stops; /* owned, [gp.n_stops] */
};

void server_req_free(struct server_req *r);

/* The message of a failed parse. */
struct server_perr {
    char msg[512];
};

/* Sets e's message; returns false. */
bool server_fail(struct server_perr *e, const char *fmt, ...) HY_PRINTF(2, 3);

/* An optional boolean field (def when absent or null). */
bool server_get_bool(json_t *o, const char *key, bool def, bool *out, struct server_perr *e);

/* Fields every generation request shares: format ("json" or a schema:
 * accepted, not enforced), keep_alive (accepted), stream (default: true for
 * Ollama, false for OpenAI); tools are refused. */
bool server_parse_common(json_t *body, struct server_req *r, struct server_perr *e);

/* Sampling options from o (Ollama's "options" object, or the OpenAI body
 * itself: temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n,
 * presence_penalty, frequency_penalty, seed, num_predict / max_tokens /
 * max_completion_tokens, num_ctx (checked, the server's context holds),
 * stop). Left out: `hypura run`'s defaults, a random seed, no limit. */
bool server_parse_sampling(struct server *s, json_t *o, struct server_req *r,
                           struct server_perr *e);

/* A "messages" array formatted with the server's chat template into *out
 * (owned by the caller). */
bool server_format_messages(struct server *s, json_t *msgs, char **out, struct server_perr *e);

/* r->prompt from text: templated text gets the BOS the vocabulary asks for;
 * raw text is tokenized exactly as `hypura run -p`. Fails when the prompt
 * leaves no room in the context. */
bool server_tokenize_prompt(struct server *s, const char *text, bool raw, struct server_req *r,
                            struct server_perr *e);

/* ------------------------------------------------------------------ jobs -- */

/* One generation, from the first token to the final object. */
struct server_job {
    struct server *srv;
    struct MHD_Connection *c;
    const struct server_fmt *fmt;
    struct server_req r;
    int64_t t0_us;   /* request arrival */
    int64_t wait_us; /* waiting for a sequence */
    char id[48];     /* OpenAI: chatcmpl-..., cmpl-... */
    int64_t created; /* unix seconds */
    int seq;         /* held sequence; -1 when none */
    struct engine_gen *g;
    struct engine_gen_stats st; /* of the finished generation */
    enum { JOB_NEW, JOB_RUNNING, JOB_END } state;
    unsigned err_status; /* non-streamed: an error's HTTP status (0: none) */
    struct sbuf text;    /* non-streamed: the whole reply */
    struct sbuf out;     /* bytes to send: [out_off, out.len) */
    size_t out_off;
    int32_t *tokens; /* owned, once finished: prompt + generated tokens */
    int64_t n_tokens;
};

/* How an API writes a job's output into j->out. */
struct server_fmt {
    const char *stream_type; /* Content-Type of a streamed answer */
    /* streamed: after the prompt was evaluated (may be NULL) */
    void (*start)(struct server_job *j);
    /* streamed: a piece of text */
    void (*piece)(struct server_job *j, const char *text, size_t len);
    /* the last object; not streamed: the whole answer, j->text being the reply */
    void (*final)(struct server_job *j);
    /* streamed: an error after the answer started */
    void (*error)(struct server_job *j, unsigned status, const char *msg);
};

/* Runs r (moved out of *r) to its end and answers (not streamed), or
 * starts a streamed answer that generates as the client reads. */
enum MHD_Result server_run_job(struct server *s, struct MHD_Connection *c, int64_t t0_us,
                               struct server_req *r, const struct server_fmt *fmt);

/* ---------------------------------------------------------------- routes -- */

/* t0_us: when the request arrived; body: the parsed JSON object for routes
 * with json_body, {"model": tail} for prefix routes, else NULL. */
typedef enum MHD_Result (*server_route_fn)(struct server *s, struct MHD_Connection *c,
                                           int64_t t0_us, json_t *body);

struct server_route {
    const char *path; /* exact, or a prefix followed by an identifier when prefix is set */
    bool prefix;
    const char *methods; /* space-separated: "GET HEAD", "POST" */
    bool json_body;      /* the body must be a JSON object */
    server_route_fn fn;
};

#endif
