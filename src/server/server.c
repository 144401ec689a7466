/*
 * The server's HTTP glue (see server.h for what it serves, server_impl.h
 * for how the two APIs plug in): libmicrohttpd with one thread per
 * connection; the route tables of ollama.c and openai.c; the body limit;
 * request parsing shared by both APIs; generation jobs that run in the
 * connection's thread, streamed through a response callback that generates
 * as the client reads; disconnect detection.
 *
 * Why a thread per connection: a generation blocks its thread for seconds
 * (waiting for a sequence, evaluating), and MHD's callback responses may
 * block there. Connections are cheap next to a KV cache, and --parallel
 * bounds the work, not the connections.
 */
#include "server/server.h"

#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "core/err.h"
#include "core/log.h"
#include "core/timing.h"
#include "model/model_info.h"
#include "server/ollama.h"
#include "server/openai.h"
#include "server/server_impl.h"

/* ------------------------------------------------------------------ text -- */

/* Length of the valid UTF-8 sequence at s[0..n), 0 when it is not one. */
static size_t utf8_valid_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80) return 1;
    size_t len;
    uint32_t min;
    if ((s[0] & 0xE0) == 0xC0) len = 2, min = 0x80;
    else if ((s[0] & 0xF0) == 0xE0) len = 3, min = 0x800;
    else if ((s[0] & 0xF8) == 0xF0) len = 4, min = 0x10000;
    else return 0;
    if (len > n) return 0;
    uint32_t cp = s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

/* text[0..n) as a JSON string; bytes that are not UTF-8 (a model can emit
 * any byte) become U+FFFD, as JSON needs. */
json_t *server_json_text(const char *text, size_t n)
{
    struct sbuf b = {0};
    sb_addn(&b, "", 0);
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, run = 0;
    while (i < n) {
        size_t l = utf8_valid_len(s + i, n - i);
        if (l) {
            i += l;
            continue;
        }
        sb_addn(&b, text + run, i - run);
        sb_add(&b, "\xEF\xBF\xBD");
        run = ++i;
    }
    sb_addn(&b, text + run, n - run);
    json_t *j = json_stringn(b.p, b.len);
    free(b.p);
    HY_ASSERT(j != NULL);
    return j;
}

/* "2024-05-01T12:34:56.123456789Z" */
void server_iso_time(char *out, size_t cap, int64_t add_s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    time_t t = ts.tv_sec + add_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    char b[32];
    strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%09ldZ", b, ts.tv_nsec);
}

/* ------------------------------------------------------------- responses -- */

enum MHD_Result server_send_body(struct MHD_Connection *c, unsigned status, const char *type,
                                 const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result server_send_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    HY_ASSERT(s != NULL);
    enum MHD_Result r = server_send_body(c, status, "application/json; charset=utf-8", s, strlen(s));
    free(s);
    return r;
}

/* The error body in the API's shape: Ollama {"error": msg}, OpenAI
 * {"error": {"message", "type", "param", "code"}}. */
json_t *server_error_json(enum server_api api, unsigned status, const char *msg)
{
    if (api == SERVER_API_OLLAMA) return json_pack("{s:s}", "error", msg);
    const char *type = status == 404   ? "not_found_error"
                       : status >= 500 ? "api_error"
                                       : "invalid_request_error";
    return json_pack("{s:{s:s,s:s,s:n,s:n}}", "error", "message", msg, "type", type, "param",
                     "code");
}

enum MHD_Result server_send_error(struct MHD_Connection *c, enum server_api api, unsigned status,
                                  const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return server_send_json(c, status, server_error_json(api, status, msg));
}

/* ----------------------------------------------------------- connections -- */

/* Per-request state, from the headers to the end of the response. */
struct conn {
    const struct server_route *route; /* NULL: unknown path */
    enum server_api api;              /* the shape of error answers */
    unsigned early; /* a status decided before the body is read (404, 405, 413) */
    struct sbuf body;
    int64_t t0_us; /* when the request arrived */
};

/* True when the peer has closed its side (or the socket failed): data
 * waiting is not a close, a zero-byte peek is. */
static bool client_gone(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
    if (p.revents & POLLIN) {
        char ch;
        return recv(ci->connect_fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
    }
    return false;
}

/* ----------------------------------------------------------------- model -- */

bool server_name_matches(const struct server *s, const char *name)
{
    size_t n = strlen(name);
    if (n > 7 && !strcmp(name + n - 7, ":latest")) n -= 7;
    return n == strlen(s->name) && !strncasecmp(name, s->name, n);
}

json_t *server_model_details(const struct server *s)
{
    const struct model_info *mi = &s->e->m->info;
    char psize[32];
    const double p = (double)mi->n_params;
    if (p >= 1e9) snprintf(psize, sizeof psize, "%.1fB", p / 1e9);
    else if (p >= 1e6) snprintf(psize, sizeof psize, "%.1fM", p / 1e6);
    else snprintf(psize, sizeof psize, "%.1fK", p / 1e3);
    const char *ft = model_info_ftype_name(mi->file_type);
    const char *arch = mi->arch ? mi->arch : "";
    return json_pack("{s:s,s:s,s:s,s:[s],s:s,s:s}", "parent_model", "", "format", "gguf", "family",
                     arch, "families", arch, "parameter_size", psize, "quantization_level",
                     ft ? ft : "unknown");
}

const char *server_model_full_name(const struct server *s, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s:latest", s->name);
    return buf;
}

/* The request's model name (Ollama: "model", or "name" in older clients). */
static const char *req_model(json_t *b)
{
    const char *m = json_string_value(json_object_get(b, "model"));
    return m ? m : json_string_value(json_object_get(b, "name"));
}

enum MHD_Result server_check_model(struct server *s, struct MHD_Connection *c, enum server_api api,
                                   json_t *b, bool *ok)
{
    *ok = false;
    const char *m = req_model(b);
    if (!m || !*m) return server_send_error(c, api, 400, "model is required");
    if (!server_name_matches(s, m))
        return server_send_error(c, api, 404, "model \"%s\" not found, try pulling it first", m);
    *ok = true;
    return MHD_YES;
}

bool server_templated(const struct server *s)
{
    return s->tmpl_forced || s->e->chat_template != NULL;
}

/* -------------------------------------------------------------- requests -- */

void server_req_free(struct server_req *r)
{
    free(r->prompt);
    for (int i = 0; i < r->gp.n_stops; i++) free(r->stops[i]);
    free(r->stops);
}

bool server_fail(struct server_perr *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return false;
}

static bool get_num(json_t *o, const char *key, double lo, double hi, double *out, bool *set,
                    struct server_perr *e)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_number(v)) return server_fail(e, "'%s' must be a number", key);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) return server_fail(e, "'%s' is %g, outside [%g, %g]", key, d, lo, hi);
    *out = d;
    if (set) *set = true;
    return true;
}

static bool get_int(json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out, bool *set,
                    struct server_perr *e)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    double d;
    if (json_is_integer(v)) d = (double)json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == (double)(int64_t)json_real_value(v))
        d = json_real_value(v);
    else return server_fail(e, "'%s' must be an integer", key);
    if (d < (double)lo || d > (double)hi)
        return server_fail(e, "'%s' is %.0f, outside [%" PRId64 ", %" PRId64 "]", key, d, lo, hi);
    *out = (int64_t)d;
    if (set) *set = true;
    return true;
}

/* "stop": a string or an array of strings; empty strings are skipped. */
static bool get_stops(json_t *o, struct server_req *r, struct server_perr *e)
{
    json_t *v = json_object_get(o, "stop");
    if (!v || json_is_null(v)) return true;
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (!json_is_array(v) && !json_is_string(v))
        return server_fail(e, "'stop' must be a string or an array of strings");
    r->stops = mem_xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_array(v) ? json_array_get(v, i) : v;
        if (!json_is_string(s)) return server_fail(e, "'stop' must be a string or an array of strings");
        if (json_string_length(s) == 0) continue;
        r->stops[r->gp.n_stops++] = mem_xstrdup(json_string_value(s));
    }
    r->gp.stops = (const char *const *)r->stops;
    return true;
}

/* Sampling options: Ollama's "options" object or the OpenAI body itself.
 * Left out: `hypura run`'s defaults. */
bool server_parse_sampling(struct server *s, json_t *o, struct server_req *r, struct server_perr *e)
{
    struct sampler_params *sp = &r->gp.sp;
    *sp = sampler_default_params();
    r->gp.n_predict = -1;
    const int64_t n_ctx = s->e->n_ctx;
    double d;
    int64_t i;
    bool seed_set = false;
    if (!json_is_object(o)) return o == NULL || json_is_null(o) ? true : server_fail(e, "'options' must be an object");
    d = sp->temp;
    if (!get_num(o, "temperature", 0.0, 100.0, &d, NULL, e)) return false;
    sp->temp = (float)d;
    d = sp->top_p;
    if (!get_num(o, "top_p", 0.0, 1.0, &d, NULL, e)) return false;
    sp->top_p = (float)d;
    d = sp->min_p;
    if (!get_num(o, "min_p", 0.0, 1.0, &d, NULL, e)) return false;
    sp->min_p = (float)d;
    d = sp->repeat_penalty;
    if (!get_num(o, "repeat_penalty", 0.01, 100.0, &d, NULL, e)) return false;
    sp->repeat_penalty = (float)d;
    d = sp->presence_penalty;
    if (!get_num(o, "presence_penalty", -100.0, 100.0, &d, NULL, e)) return false;
    sp->presence_penalty = (float)d;
    d = sp->frequency_penalty;
    if (!get_num(o, "frequency_penalty", -100.0, 100.0, &d, NULL, e)) return false;
    sp->frequency_penalty = (float)d;
    i = sp->top_k;
    if (!get_int(o, "top_k", 0, INT32_MAX, &i, NULL, e)) return false;
    sp->top_k = (int32_t)i;
    i = sp->repeat_last_n;
    if (!get_int(o, "repeat_last_n", -1, INT32_MAX, &i, NULL, e)) return false;
    sp->repeat_last_n = (int32_t)(i < 0 ? n_ctx : HY_MIN(i, n_ctx));
    i = -1;
    if (!get_int(o, "seed", INT64_MIN, INT64_MAX, &i, &seed_set, e)) return false;
    if (seed_set && i >= 0)
        sp->seed = (uint64_t)i;
    else
        sp->seed = (uint64_t)timing_now_us() ^ (atomic_fetch_add(&s->n_req, 1) << 40);
    /* Ollama: num_predict; OpenAI: max_tokens, or max_completion_tokens */
    const char *np = r->api == SERVER_API_OLLAMA ? "num_predict"
                     : json_object_get(o, "max_completion_tokens") ? "max_completion_tokens"
                                                                    : "max_tokens";
    i = -1;
    if (!get_int(o, np, r->api == SERVER_API_OLLAMA ? -2 : 0, INT32_MAX, &i, NULL, e)) return false;
    r->gp.n_predict = i < 0 ? -1 : i;
    i = 0;
    if (!get_int(o, "num_ctx", 0, INT32_MAX, &i, NULL, e)) return false;
    if (!get_stops(o, r, e)) return false;
    /* anything else the sampler refuses */
    struct sampler probe;
    if (sampler_init(&probe, 1, sp) != HY_OK) return server_fail(e, "%s", err_msg());
    sampler_free(&probe);
    return true;
}

/* The text of a message's content: a string, or OpenAI's array of parts of
 * which only "text" parts are supported. NULL after fail(). */
static char *content_text(json_t *c, struct server_perr *e)
{
    if (!c || json_is_null(c)) return mem_xstrdup("");
    if (json_is_string(c)) return mem_xstrdup(json_string_value(c));
    if (!json_is_array(c)) return server_fail(e, "a message's 'content' must be a string"), NULL;
    struct sbuf b = {0};
    sb_add(&b, "");
    for (size_t i = 0; i < json_array_size(c); i++) {
        json_t *p = json_array_get(c, i);
        const char *type = json_string_value(json_object_get(p, "type"));
        const char *text = json_string_value(json_object_get(p, "text"));
        if (!type || strcmp(type, "text") != 0 || !text) {
            free(b.p);
            return server_fail(e, "content part %zu: only {\"type\": \"text\", \"text\": ...} parts are "
                           "supported", i), NULL;
        }
        sb_add(&b, text);
    }
    return b.p;
}

/* messages -> prompt text through the model's chat template. */
bool server_format_messages(struct server *s, json_t *msgs, char **out, struct server_perr *e)
{
    if (!json_is_array(msgs)) return server_fail(e, "'messages' must be an array");
    const size_t n = json_array_size(msgs);
    struct chat_msg *m = mem_xcalloc(n + 1, sizeof(*m));
    char **texts = mem_xcalloc(n + 1, sizeof(char *));
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        json_t *x = json_array_get(msgs, i);
        const char *role = json_string_value(json_object_get(x, "role"));
        if (!json_is_object(x) || !role) {
            ok = server_fail(e, "message %zu has no 'role'", i);
            break;
        }
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") &&
            strcmp(role, "tool") && strcmp(role, "developer")) {
            ok = server_fail(e, "message %zu: unknown role '%s' (system, user, assistant, tool)", i, role);
            break;
        }
        json_t *images = json_object_get(x, "images");
        if (json_is_array(images) && json_array_size(images) > 0) {
            ok = server_fail(e, "message %zu: images are not supported by this model", i);
            break;
        }
        if (!(texts[i] = content_text(json_object_get(x, "content"), e))) {
            ok = false;
            break;
        }
        m[i].role = strcmp(role, "developer") ? role : "system";
        m[i].content = texts[i];
    }
    if (ok) *out = chat_template_format(s->tmpl, m, n, true);
    for (size_t i = 0; i < n; i++) free(texts[i]);
    free(texts);
    free(m);
    return ok;
}

bool server_get_bool(json_t *b, const char *key, bool def, bool *out, struct server_perr *e)
{
    json_t *v = json_object_get(b, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return true;
    }
    if (!json_is_boolean(v)) return server_fail(e, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return true;
}

/* Fields every generation request shares: format (accepted: "json" or a
 * schema, not enforced), keep_alive (accepted), stream; tools are refused. */
bool server_parse_common(json_t *b, struct server_req *r, struct server_perr *e)
{
    json_t *tools = json_object_get(b, "tools");
    if (json_is_array(tools) && json_array_size(tools) > 0)
        return server_fail(e, "this model does not support tools");
    json_t *f = json_object_get(b, "format");
    if (f && !json_is_null(f) && !json_is_object(f) &&
        !(json_is_string(f) && (!strcmp(json_string_value(f), "json") || !json_string_length(f))))
        return server_fail(e, "'format' must be \"json\" or a JSON schema object");
    return server_get_bool(b, "stream", r->api == SERVER_API_OLLAMA, &r->stream, e);
}

/* ------------------------------------------------------------------ jobs -- */

static void job_release(struct server_job *j)
{
    if (j->g) {
        j->st = *engine_gen_stats(j->g);
        int64_t n;
        const int32_t *t = engine_gen_tokens(j->g, &n);
        j->tokens = mem_xcalloc((size_t)(j->r.n_prompt + n + 1), sizeof(int32_t));
        memcpy(j->tokens, j->r.prompt, (size_t)j->r.n_prompt * sizeof(int32_t));
        memcpy(j->tokens + j->r.n_prompt, t, (size_t)n * sizeof(int32_t));
        j->n_tokens = j->r.n_prompt + n;
        engine_gen_free(j->g);
        j->g = NULL;
    }
    if (j->seq >= 0) {
        engine_seq_release(j->srv->e, j->seq);
        j->seq = -1;
    }
}

static void job_free(struct server_job *j)
{
    job_release(j);
    server_req_free(&j->r);
    free(j->text.p);
    free(j->out.p);
    free(j->tokens);
    free(j);
}

/* Not streamed: the whole answer becomes the error (with its status);
 * streamed: the API's error object ends the stream. */
static void emit_error(struct server_job *j, unsigned status, const char *msg)
{
    if (j->r.stream) {
        j->fmt->error(j, status, msg);
        return;
    }
    j->err_status = status;
    j->out.len = 0;
    sb_add_json(&j->out, server_error_json(j->r.api, status, msg));
}

/* Advances the job: takes a sequence and evaluates the prompt, or generates
 * one token; what is to be sent lands in j->out. */
static void job_step(struct server_job *j)
{
    struct engine *e = j->srv->e;
    if (j->state == JOB_NEW) {
        const int64_t t = timing_now_us();
        j->seq = engine_seq_acquire(e, j->r.prompt, j->r.n_prompt);
        j->wait_us = timing_now_us() - t;
        enum hy_status st =
            engine_gen_start(e, j->seq, j->r.prompt, j->r.n_prompt, &j->r.gp, &j->g);
        if (st) {
            emit_error(j, st == HY_ERR_INVALID_ARG ? 400 : 500, err_msg());
            job_release(j);
            j->state = JOB_END;
            return;
        }
        j->state = JOB_RUNNING;
        if (j->r.stream && j->fmt->start) j->fmt->start(j);
        return;
    }
    if (j->state != JOB_RUNNING) return;
    if (atomic_load(&j->srv->stopping) || client_gone(j->c)) engine_gen_cancel(j->g);
    const char *txt;
    size_t n;
    bool done;
    enum hy_status st = engine_gen_next(j->g, &txt, &n, &done);
    if (st) {
        emit_error(j, 500, err_msg());
        job_release(j);
        j->state = JOB_END;
        return;
    }
    if (n) {
        if (j->r.stream)
            j->fmt->piece(j, txt, n);
        else
            sb_addn(&j->text, txt, n);
    }
    if (done) {
        job_release(j);
        j->fmt->final(j);
        j->state = JOB_END;
    }
}

static ssize_t job_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct server_job *j = cls;
    while (j->out_off == j->out.len) {
        j->out_off = j->out.len = 0;
        if (j->state == JOB_END) return MHD_CONTENT_READER_END_OF_STREAM;
        job_step(j);
    }
    size_t n = HY_MIN(max, j->out.len - j->out_off);
    memcpy(buf, j->out.p + j->out_off, n);
    j->out_off += n;
    return (ssize_t)n;
}

static void job_reader_free(void *cls)
{
    job_free(cls);
}

enum MHD_Result server_run_job(struct server *s, struct MHD_Connection *c, int64_t t0_us,
                               struct server_req *r, const struct server_fmt *fmt)
{
    struct server_job *j = mem_xcalloc(1, sizeof(*j));
    j->srv = s;
    j->c = c;
    j->fmt = fmt;
    j->r = *r;
    memset(r, 0, sizeof *r);
    j->t0_us = t0_us;
    j->seq = -1;
    j->created = (int64_t)time(NULL);
    snprintf(j->id, sizeof j->id, "%s-%" PRIx64 "%04" PRIx64,
             j->r.kind == SERVER_KIND_CHAT ? "chatcmpl" : "cmpl", (uint64_t)timing_now_us(),
             (uint64_t)(atomic_fetch_add(&s->n_req, 1) & 0xffff));
    if (!j->r.stream) {
        while (j->state != JOB_END) job_step(j);
        enum MHD_Result ret = server_send_body(c, j->err_status ? j->err_status : 200,
                                        "application/json; charset=utf-8", j->out.p, j->out.len);
        job_free(j);
        return ret;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, job_reader, j, job_reader_free);
    if (!resp) {
        job_free(j);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, fmt->stream_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ret = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

bool server_tokenize_prompt(struct server *s, const char *text, bool raw, struct server_req *r,
                            struct server_perr *e)
{
    unsigned flags = TOKENIZER_PARSE_SPECIAL | TOKENIZER_ADD_BOS | (raw ? TOKENIZER_ADD_EOS : 0);
    int32_t *ids = NULL;
    int64_t n = 0;
    if (engine_tokenize(s->e, text, strlen(text), flags, &ids, &n) != HY_OK)
        return server_fail(e, "cannot tokenize the prompt: %s", err_msg());
    r->prompt = ids;
    r->n_prompt = n;
    if (n == 0) return server_fail(e, "the prompt has no tokens");
    if (n >= s->e->n_ctx)
        return server_fail(e,
                    "the prompt has %" PRId64 " tokens, which leaves no room in the context of %" PRId64
                    " tokens (hint: start the server with a larger -c)",
                    n, s->e->n_ctx);
    return true;
}

/* --------------------------------------------------------------- routing -- */

static const struct server_route *find_in(const struct server_route *t, size_t n, const char *url)
{
    for (size_t i = 0; i < n; i++) {
        const struct server_route *r = &t[i];
        if (r->prefix ? !strncmp(url, r->path, strlen(r->path)) && url[strlen(r->path)]
                      : !strcmp(url, r->path))
            return r;
    }
    return NULL;
}

static bool method_allowed(const struct server_route *r, const char *method)
{
    const size_t n = strlen(method);
    for (const char *p = r->methods; (p = strstr(p, method)); p += n)
        if ((p == r->methods || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' ')) return true;
    return false;
}

/* The API a path belongs to, for the shape of its errors. */
static enum server_api url_api(const char *url)
{
    return strncmp(url, "/v1/", 4) == 0 ? SERVER_API_OPENAI : SERVER_API_OLLAMA;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls)
{
    (void)version;
    struct server *s = cls;
    struct conn *cn = *con_cls;
    if (!cn) {
        cn = mem_xcalloc(1, sizeof(*cn));
        cn->t0_us = timing_now_us();
        *con_cls = cn;
        cn->api = url_api(url);
        cn->route = cn->api == SERVER_API_OPENAI ? find_in(openai_routes, openai_n_routes, url)
                                                 : find_in(ollama_routes, ollama_n_routes, url);
        if (!cn->route) cn->early = 404;
        else if (!method_allowed(cn->route, method)) cn->early = 405;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->max_body)
            return server_send_error(c, cn->api, 413,
                              "the request body (%s bytes) is larger than the limit of %" PRIu64
                              " bytes", cl, s->max_body);
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cn->early) {
            if (cn->body.len + *upload_size > s->max_body)
                cn->early = 413;
            else
                sb_addn(&cn->body, upload_data, *upload_size);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    const enum server_api api = cn->api;
    switch (cn->early) {
    case 404:
        return server_send_error(c, api, 404, "%s %s: no such endpoint", method, url);
    case 405: {
        char msg[256];
        snprintf(msg, sizeof msg, "method %s not allowed on %s (allowed: %s)", method, url,
                 cn->route->methods);
        json_t *j = server_error_json(api, 405, msg);
        char *body = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        struct MHD_Response *r =
            MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json; charset=utf-8");
        char allow[64];
        snprintf(allow, sizeof allow, "%s", cn->route->methods);
        for (char *p = allow; *p; p++)
            if (*p == ' ') *p = ',';
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
        enum MHD_Result ret = MHD_queue_response(c, 405, r);
        MHD_destroy_response(r);
        return ret;
    }
    case 413:
        return server_send_error(c, api, 413, "the request body is larger than the limit of %" PRIu64
                                       " bytes", s->max_body);
    default:
        break;
    }
    json_t *body = NULL;
    if (cn->route->json_body) {
        json_error_t je;
        if (cn->body.len == 0) return server_send_error(c, api, 400, "the request has no JSON body");
        body = json_loadb(cn->body.p, cn->body.len, 0, &je);
        if (!body)
            return server_send_error(c, api, 400, "invalid JSON in the request body: %s (line %d, column %d)",
                              je.text, je.line, je.column);
        if (!json_is_object(body)) {
            json_decref(body);
            return server_send_error(c, api, 400, "the request body must be a JSON object");
        }
    } else if (cn->route->prefix) {
        body = json_pack("{s:s}", "model", url + strlen(cn->route->path));
    }
    enum MHD_Result ret = cn->route->fn(s, c, cn->t0_us, body);
    json_decref(body);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct conn *cn = *con_cls;
    if (!cn) return;
    free(cn->body.p);
    free(cn);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n') msg[--n] = '\0';
    LOG_D("http: %s", msg);
}

/* ------------------------------------------------------------- lifecycle -- */

/* 64 hex digits from the file's identity (path, size, modification time):
 * two FNV-1a streams, enough to tell versions of a file apart. Not a hash of
 * the contents, which would mean reading gigabytes at start-up. */
static char *file_digest(const char *path, const struct stat *st)
{
    char key[4200];
    snprintf(key, sizeof key, "%s|%lld|%lld.%09ld", path, (long long)st->st_size,
             (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
    char *out = mem_xmalloc(65);
    uint64_t h = 1469598103934665603ull;
    for (int part = 0; part < 4; part++) {
        for (const char *p = key; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
        h = (h ^ (uint64_t)part) * 1099511628211ull;
        snprintf(out + 16 * part, 17, "%016" PRIx64, h);
    }
    return out;
}

enum hy_status server_open(struct engine *e, const struct server_opts *o, struct server **out)
{
    *out = NULL;
    const char *host = o->host ? o->host : "127.0.0.1";
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", o->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(host, port_s, &hints, &ai);
    if (gai != 0)
        return err_set(HY_ERR_INVALID_ARG, "--host %s: cannot resolve the address: %s", host,
                       gai_strerror(gai));

    struct server *s = mem_xcalloc(1, sizeof(*s));
    s->e = e;
    s->max_body = o->max_body_bytes ? o->max_body_bytes : SERVER_DEFAULT_MAX_BODY;
    atomic_init(&s->stopping, false);
    atomic_init(&s->n_req, 0);
    const char *base = strrchr(e->model_path, '/');
    base = base ? base + 1 : e->model_path;
    s->name = mem_xstrdup(base);
    size_t bl = strlen(s->name);
    if (bl > 5 && !strcasecmp(s->name + bl - 5, ".gguf")) s->name[bl - 5] = '\0';
    struct stat st;
    memset(&st, 0, sizeof st);
    stat(e->model_path, &st);
    s->file_bytes = (uint64_t)st.st_size;
    s->digest = file_digest(e->model_path, &st);
    {
        time_t t = st.st_mtim.tv_sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        char b[32];
        strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(s->modified_at, sizeof s->modified_at, "%s.%09ldZ", b, st.st_mtim.tv_nsec);
    }
    s->tmpl = chat_template_detect(e->chat_template);

    /* poll(), not select(): no FD_SETSIZE ceiling on connections */
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s,
                            MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)512,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                            MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->d) {
        enum hy_status r = err_set(HY_ERR_IO, "cannot listen on %s port %d (in use, or not an "
                                   "address of this machine)\nhint: pick another --port or --host",
                                   host, o->port);
        server_close(s);
        return r;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_LISTEN_FD);
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    s->port = o->port;
    if (di && getsockname(di->listen_fd, (struct sockaddr *)&sa, &sl) == 0) {
        if (sa.ss_family == AF_INET) s->port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
        else if (sa.ss_family == AF_INET6) s->port = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    }
    *out = s;
    return HY_OK;
}

void server_set_chat_template(struct server *s, enum chat_template t)
{
    s->tmpl = t;
    s->tmpl_forced = true;
}

int server_port(const struct server *s)
{
    return s->port;
}

const char *server_model_name(const struct server *s)
{
    return s->name;
}

void server_close(struct server *s)
{
    if (!s) return;
    atomic_store(&s->stopping, true);
    if (s->d) MHD_stop_daemon(s->d);
    free(s->name);
    free(s->digest);
    free(s);
}
