/*
 * The Ollama API (as docs.ollama.com/api describes it) over the server's
 * glue: routes, request parsing, and the shape of its answers.
 *
 *   GET  /               "Ollama is running"
 *   GET  /api/version    {"version"}
 *   GET  /api/tags       {"models": [{name, model, modified_at, size, digest, details}]}
 *   GET  /api/ps         {"models": [{name, model, size, digest, details, expires_at,
 *                         size_vram, context_length}]}
 *   POST /api/show       {modelfile, parameters, template, details, model_info,
 *                         capabilities, modified_at}
 *   POST /api/generate   prompt (+ system, raw, context) -> "response"
 *   POST /api/chat       messages -> "message"
 *
 * Generation answers stream as NDJSON unless "stream": false; every object
 * has model and created_at, the last one done: true, done_reason ("stop" or
 * "length"), and the durations in nanoseconds: total_duration (from the
 * request's arrival), load_duration (waiting for a free sequence: the model
 * is always loaded), prompt_eval_duration, eval_duration; prompt_eval_count
 * is the prompt's tokens (cached ones included), eval_count the generated
 * ones. /api/generate also returns "context" (prompt and reply tokens),
 * which a next request may pass back. /api/ps's size is the memory the
 * model takes (its weights wherever they lie, the KV caches, and with a GPU
 * all the backend holds there), size_vram the GPU's part of it (0 on the
 * CPU): `ollama ps` reads the CPU/GPU split from the two.
 *
 * /api/generate formats the prompt (and system) with the chat template
 * unless "raw" is true or the model has no template: then the prompt is
 * evaluated exactly as `hypura run -p` evaluates it. A request with nothing
 * to generate answers done_reason "load", as Ollama does.
 */
#include "server/ollama.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>

#include "backend/cuda/cuda_backend.h"
#include "core/err.h"
#include "core/timing.h"
#include "store/store.h"

/* -------------------------------------------------------------- answers -- */

static json_t *head(const struct server_job *j)
{
    char name[512], now[64];
    server_iso_time(now, sizeof now, 0);
    return json_pack("{s:s,s:s}", "model", server_model_full_name(j->srv, name, sizeof name),
                     "created_at", now);
}

static void set_text(json_t *o, const struct server_job *j, const char *txt, size_t n)
{
    if (j->r.kind == SERVER_KIND_CHAT)
        json_object_set_new(o, "message", json_pack("{s:s,s:o}", "role", "assistant", "content",
                                                     server_json_text(txt, n)));
    else
        json_object_set_new(o, "response", server_json_text(txt, n));
}

static void ollama_piece(struct server_job *j, const char *txt, size_t n)
{
    json_t *o = head(j);
    set_text(o, j, txt, n);
    json_object_set_new(o, "done", json_false());
    sb_add_json(&j->out, o);
    sb_add(&j->out, "\n");
}

static void ollama_final(struct server_job *j)
{
    const struct engine_gen_stats *st = &j->st;
    json_t *o = head(j);
    if (j->r.stream)
        set_text(o, j, "", 0);
    else
        set_text(o, j, j->text.p ? j->text.p : "", j->text.len);
    json_object_set_new(o, "done", json_true());
    json_object_set_new(o, "done_reason", json_string(engine_stop_api(st->stop)));
    if (j->r.kind == SERVER_KIND_GENERATE) {
        json_t *ctx = json_array();
        for (int64_t i = 0; i < j->n_tokens; i++) json_array_append_new(ctx, json_integer(j->tokens[i]));
        json_object_set_new(o, "context", ctx);
    }
    const int64_t total_us = timing_now_us() - j->t0_us;
    json_object_set_new(o, "total_duration", json_integer((json_int_t)total_us * 1000));
    json_object_set_new(o, "load_duration", json_integer((json_int_t)j->wait_us * 1000));
    json_object_set_new(o, "prompt_eval_count", json_integer((json_int_t)j->r.n_prompt));
    json_object_set_new(o, "prompt_eval_duration", json_integer((json_int_t)st->prompt_us * 1000));
    json_object_set_new(o, "eval_count", json_integer((json_int_t)st->n_gen));
    json_object_set_new(o, "eval_duration", json_integer((json_int_t)st->gen_us * 1000));
    sb_add_json(&j->out, o);
    if (j->r.stream) sb_add(&j->out, "\n");
}

static void ollama_error(struct server_job *j, unsigned status, const char *msg)
{
    sb_add_json(&j->out, server_error_json(SERVER_API_OLLAMA, status, msg));
    sb_add(&j->out, "\n");
}

static const struct server_fmt fmt = {
    .stream_type = "application/x-ndjson",
    .piece = ollama_piece,
    .final = ollama_final,
    .error = ollama_error,
};

/* --------------------------------------------------------------- models -- */

static json_t *model_entry(const struct server *s, bool loaded)
{
    char full[512];
    server_model_full_name(s, full, sizeof full);
    json_t *j = json_pack("{s:s,s:s,s:I,s:s,s:o}", "name", full, "model", full, "size",
                          (json_int_t)s->file_bytes, "digest", s->digest, "details",
                          server_model_details(s));
    if (loaded) {
        char exp[64];
        server_iso_time(exp, sizeof exp, (int64_t)100 * 365 * 86400); /* never unloaded */
        json_object_set_new(j, "expires_at", json_string(exp));
        json_object_set_new(j, "context_length", json_integer((json_int_t)s->e->n_ctx));
        /* with a GPU: the weights it does not hold, and all it holds (its
         * weights, the KV caches, buffers and expert cache); else the
         * weights and the KV caches. Read between forward steps (the
         * engine's lock). */
        struct engine *e = s->e;
        pthread_mutex_lock(&e->lock);
        const uint64_t vram = e->on_gpu ? cuda_backend_device_bytes(e->be) : 0;
        const uint64_t gw = e->on_gpu && e->m->store ? store_stats(e->m->store).gpu_bytes : 0;
        pthread_mutex_unlock(&e->lock);
        uint64_t bytes = e->m->weight_bytes - HY_MIN(gw, e->m->weight_bytes) + vram;
        for (int i = 0; i < e->n_seq && !e->on_gpu; i++) bytes += forward_kv_bytes(e->seq[i].f);
        json_object_set_new(j, "size", json_integer((json_int_t)bytes));
        json_object_set_new(j, "size_vram", json_integer((json_int_t)vram));
    } else {
        json_object_set_new(j, "modified_at", json_string(s->modified_at));
    }
    return j;
}

/* The GGUF's metadata as /api/show's model_info: scalars and strings (arrays,
 * such as the vocabulary, are left out, as Ollama does without "verbose"). */
static json_t *model_info_json(const struct server *s)
{
    const struct gguf_ctx *g = s->e->m->gguf;
    json_t *j = json_object();
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const struct gguf_kv *kv = &g->kv[i];
        const struct gguf_value *v = &kv->val;
        json_t *x = NULL;
        switch (v->type) {
        case GGUF_UINT8: case GGUF_UINT16: case GGUF_UINT32: case GGUF_UINT64:
            x = json_integer((json_int_t)v->v.u64);
            break;
        case GGUF_INT8: case GGUF_INT16: case GGUF_INT32: case GGUF_INT64:
            x = json_integer((json_int_t)v->v.i64);
            break;
        case GGUF_FLOAT32: case GGUF_FLOAT64:
            x = json_real(v->v.f64);
            break;
        case GGUF_BOOL:
            x = json_boolean(v->v.b);
            break;
        case GGUF_STRING:
            x = server_json_text(v->v.str.data, (size_t)v->v.str.len);
            break;
        default:
            break;
        }
        if (x) json_object_set_new(j, kv->key, x);
    }
    json_object_set_new(j, "general.parameter_count",
                        json_integer((json_int_t)s->e->m->info.n_params));
    return j;
}

/* --------------------------------------------------------------- routes -- */

static enum MHD_Result r_root(struct server *s, struct MHD_Connection *c, int64_t t0, json_t *b)
{
    static const char msg[] = "Ollama is running";
    return server_send_body(c, 200, "text/plain; charset=utf-8", msg, sizeof msg - 1);
}

static enum MHD_Result r_version(struct server *s, struct MHD_Connection *c, int64_t t0, json_t *b)
{
    return server_send_json(c, 200, json_pack("{s:s}", "version", hy_version()));
}

static enum MHD_Result r_tags(struct server *s, struct MHD_Connection *c, int64_t t0, json_t *b)
{
    return server_send_json(c, 200, json_pack("{s:[o]}", "models", model_entry(s, false)));
}

static enum MHD_Result r_ps(struct server *s, struct MHD_Connection *c, int64_t t0, json_t *b)
{
    return server_send_json(c, 200, json_pack("{s:[o]}", "models", model_entry(s, true)));
}

static enum MHD_Result r_show(struct server *s, struct MHD_Connection *c, int64_t t0, json_t *b)
{
    bool ok;
    enum MHD_Result ret = server_check_model(s, c, SERVER_API_OLLAMA, b, &ok);
    if (!ok) return ret;
    const char *tmpl = s->e->chat_template ? s->e->chat_template : "{{ .Prompt }}";
    char mf[1024];
    snprintf(mf, sizeof mf, "# Modelfile generated by hypura\nFROM %s\n", s->e->model_path);
    json_t *o = json_pack("{s:s,s:s,s:o,s:o,s:o,s:s,s:[s]}", "modelfile", mf, "parameters", "",
                          "template", server_json_text(tmpl, strlen(tmpl)), "details",
                          server_model_details(s), "model_info", model_info_json(s),
                          "modified_at", s->modified_at, "capabilities", "completion");
    return server_send_json(c, 200, o);
}

/* The answer to a request with nothing to generate. */
static enum MHD_Result send_loaded(struct server *s, struct MHD_Connection *c, bool chat)
{
    char name[512], now[64];
    server_iso_time(now, sizeof now, 0);
    json_t *o = json_pack("{s:s,s:s}", "model", server_model_full_name(s, name, sizeof name),
                          "created_at", now);
    if (chat)
        json_object_set_new(o, "message",
                            json_pack("{s:s,s:s}", "role", "assistant", "content", ""));
    else
        json_object_set_new(o, "response", json_string(""));
    json_object_set_new(o, "done", json_true());
    json_object_set_new(o, "done_reason", json_string("load"));
    return server_send_json(c, 200, o);
}

/* A previous answer's "context" tokens, then text without a second BOS. */
static bool prompt_with_context(struct server *s, json_t *ctx, const char *text,
                                struct server_req *r, struct server_perr *e)
{
    const size_t nc = json_array_size(ctx);
    int32_t *ids = NULL;
    int64_t n = 0;
    if (engine_tokenize(s->e, text, strlen(text), TOKENIZER_PARSE_SPECIAL, &ids, &n))
        return server_fail(e, "cannot tokenize the prompt: %s", err_msg());
    r->prompt = mem_xcalloc(nc + (size_t)n + 1, sizeof(int32_t));
    for (size_t i = 0; i < nc; i++) {
        json_t *t = json_array_get(ctx, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 ||
            json_integer_value(t) >= s->e->m->n_vocab) {
            free(ids);
            return server_fail(e, "'context' element %zu is not a token id of this model", i);
        }
        r->prompt[i] = (int32_t)json_integer_value(t);
    }
    memcpy(r->prompt + nc, ids, (size_t)n * sizeof(int32_t));
    free(ids);
    r->n_prompt = (int64_t)nc + n;
    if (r->n_prompt >= s->e->n_ctx)
        return server_fail(e,
                           "context and prompt have %" PRId64 " tokens, which leaves no room in "
                           "the context of %" PRId64 " tokens",
                           r->n_prompt, s->e->n_ctx);
    return true;
}

static enum MHD_Result r_generate(struct server *s, struct MHD_Connection *c, int64_t t0, json_t *b)
{
    bool ok;
    enum MHD_Result ret = server_check_model(s, c, SERVER_API_OLLAMA, b, &ok);
    if (!ok) return ret;
    struct server_req r = {.api = SERVER_API_OLLAMA, .kind = SERVER_KIND_GENERATE};
    struct server_perr e = {{0}};
    json_t *jp = json_object_get(b, "prompt"), *js = json_object_get(b, "system");
    json_t *ctx = json_object_get(b, "context"), *images = json_object_get(b, "images");
    bool raw = false;
    char *text = NULL;
    if (!server_parse_common(b, &r, &e) || !server_get_bool(b, "raw", false, &raw, &e)) goto bad;
    if (jp && !json_is_null(jp) && !json_is_string(jp)) {
        server_fail(&e, "'prompt' must be a string");
        goto bad;
    }
    if (js && !json_is_null(js) && !json_is_string(js)) {
        server_fail(&e, "'system' must be a string");
        goto bad;
    }
    if (ctx && !json_is_null(ctx) && !json_is_array(ctx)) {
        server_fail(&e, "'context' must be an array of token ids");
        goto bad;
    }
    if (json_is_array(images) && json_array_size(images) > 0) {
        server_fail(&e, "images are not supported by this model");
        goto bad;
    }
    const char *prompt = jp ? json_string_value(jp) : NULL;
    if ((!prompt || !*prompt) && json_array_size(ctx) == 0) {
        server_req_free(&r);
        return send_loaded(s, c, false);
    }
    if (!server_parse_sampling(s, json_object_get(b, "options"), &r, &e)) goto bad;
    raw = raw || !server_templated(s);
    if (raw) {
        text = mem_xstrdup(prompt ? prompt : "");
    } else {
        struct chat_msg m[2];
        size_t n = 0;
        const char *sys = js ? json_string_value(js) : NULL;
        if (sys && *sys) m[n++] = (struct chat_msg){"system", sys};
        m[n++] = (struct chat_msg){"user", prompt ? prompt : ""};
        text = chat_template_format(s->tmpl, m, n, true);
    }
    if (json_array_size(ctx) > 0 ? !prompt_with_context(s, ctx, text, &r, &e)
                                 : !server_tokenize_prompt(s, text, raw, &r, &e))
        goto bad;
    free(text);
    return server_run_job(s, c, t0, &r, &fmt);
bad:
    free(text);
    server_req_free(&r);
    return server_send_error(c, SERVER_API_OLLAMA, 400, "%s", e.msg);
}

static enum MHD_Result r_chat(struct server *s, struct MHD_Connection *c, int64_t t0, json_t *b)
{
    bool ok;
    enum MHD_Result ret = server_check_model(s, c, SERVER_API_OLLAMA, b, &ok);
    if (!ok) return ret;
    struct server_req r = {.api = SERVER_API_OLLAMA, .kind = SERVER_KIND_CHAT};
    struct server_perr e = {{0}};
    char *text = NULL;
    json_t *msgs = json_object_get(b, "messages");
    if (!server_parse_common(b, &r, &e)) goto bad;
    if (!msgs || json_is_null(msgs) || (json_is_array(msgs) && json_array_size(msgs) == 0)) {
        server_req_free(&r);
        return send_loaded(s, c, true);
    }
    if (!server_parse_sampling(s, json_object_get(b, "options"), &r, &e)) goto bad;
    if (!server_format_messages(s, msgs, &text, &e)) goto bad;
    if (!server_tokenize_prompt(s, text, false, &r, &e)) goto bad;
    free(text);
    return server_run_job(s, c, t0, &r, &fmt);
bad:
    free(text);
    server_req_free(&r);
    return server_send_error(c, SERVER_API_OLLAMA, 400, "%s", e.msg);
}

const struct server_route ollama_routes[] = {
    {"/", false, "GET HEAD", false, r_root},
    {"/api/version", false, "GET HEAD", false, r_version},
    {"/api/tags", false, "GET HEAD", false, r_tags},
    {"/api/ps", false, "GET HEAD", false, r_ps},
    {"/api/show", false, "POST", true, r_show},
    {"/api/generate", false, "POST", true, r_generate},
    {"/api/chat", false, "POST", true, r_chat},
};
const size_t ollama_n_routes = HY_ARRAY_LEN(ollama_routes);
