/*
 * The OpenAI API (the subset Ollama's compatibility layer serves) over the
 * server's glue:
 *
 *   GET  /v1/models              {"object": "list", "data": [{id, object, created, owned_by}]}
 *   GET  /v1/models/ID           one of them, 404 for another id
 *   POST /v1/chat/completions    messages -> choices[0].message
 *   POST /v1/completions         prompt -> choices[0].text
 *
 * Request fields: model, messages or prompt (a string, or an array of one),
 * stream, stream_options.include_usage, max_tokens (or
 * max_completion_tokens), temperature, top_p, stop (a string or an array),
 * seed, frequency_penalty, presence_penalty; n must be 1. Answers carry id,
 * object, created, model, choices with finish_reason ("stop" or "length")
 * and usage; streams are server-sent events, "data: {chunk}" each, the
 * first chat chunk giving the role, the last one the finish_reason (then a
 * usage chunk when asked for), ending with "data: [DONE]". Errors are
 * {"error": {"message", "type", "param", "code"}}.
 *
 * /v1/completions evaluates the prompt exactly as `hypura run -p` does; chat
 * messages go through the model's chat template.
 */
#include "server/openai.h"

#include <stdio.h>

/* -------------------------------------------------------------- answers -- */

static json_t *chunk_head(const struct server_job *j, const char *object)
{
    char name[512];
    return json_pack("{s:s,s:s,s:I,s:s,s:s}", "id", j->id, "object", object, "created",
                     (json_int_t)j->created, "model",
                     server_model_full_name(j->srv, name, sizeof name), "system_fingerprint",
                     "hypura");
}

static void add_event(struct server_job *j, json_t *o)
{
    sb_add(&j->out, "data: ");
    sb_add_json(&j->out, o);
    sb_add(&j->out, "\n\n");
}

static const char *chunk_object(const struct server_job *j)
{
    return j->r.kind == SERVER_KIND_CHAT ? "chat.completion.chunk" : "text_completion";
}

/* The first chat chunk: the assistant's role. */
static void openai_start(struct server_job *j)
{
    if (j->r.kind != SERVER_KIND_CHAT) return;
    json_t *o = chunk_head(j, chunk_object(j));
    json_object_set_new(o, "choices",
                        json_pack("[{s:i,s:{s:s,s:s},s:n}]", "index", 0, "delta", "role",
                                  "assistant", "content", "", "finish_reason"));
    add_event(j, o);
}

static void openai_piece(struct server_job *j, const char *txt, size_t n)
{
    json_t *o = chunk_head(j, chunk_object(j));
    json_t *choice =
        j->r.kind == SERVER_KIND_CHAT
            ? json_pack("{s:i,s:{s:o},s:n}", "index", 0, "delta", "content",
                        server_json_text(txt, n), "finish_reason")
            : json_pack("{s:i,s:o,s:n,s:n}", "index", 0, "text", server_json_text(txt, n),
                        "logprobs", "finish_reason");
    json_object_set_new(o, "choices", json_pack("[o]", choice));
    add_event(j, o);
}

static json_t *usage_json(const struct server_job *j)
{
    return json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)j->r.n_prompt,
                     "completion_tokens", (json_int_t)j->st.n_gen, "total_tokens",
                     (json_int_t)(j->r.n_prompt + j->st.n_gen));
}

static void openai_final(struct server_job *j)
{
    const bool chat = j->r.kind == SERVER_KIND_CHAT;
    const char *reason = engine_stop_api(j->st.stop);
    if (!j->r.stream) {
        const char *txt = j->text.p ? j->text.p : "";
        json_t *o = chunk_head(j, chat ? "chat.completion" : "text_completion");
        json_t *choice =
            chat ? json_pack("{s:i,s:{s:s,s:o},s:n,s:s}", "index", 0, "message", "role",
                             "assistant", "content", server_json_text(txt, j->text.len),
                             "logprobs", "finish_reason", reason)
                 : json_pack("{s:i,s:o,s:n,s:s}", "index", 0, "text",
                             server_json_text(txt, j->text.len), "logprobs", "finish_reason",
                             reason);
        json_object_set_new(o, "choices", json_pack("[o]", choice));
        json_object_set_new(o, "usage", usage_json(j));
        sb_add_json(&j->out, o);
        return;
    }
    json_t *o = chunk_head(j, chunk_object(j));
    json_t *choice = chat ? json_pack("{s:i,s:{},s:s}", "index", 0, "delta", "finish_reason", reason)
                          : json_pack("{s:i,s:s,s:n,s:s}", "index", 0, "text", "", "logprobs",
                                      "finish_reason", reason);
    json_object_set_new(o, "choices", json_pack("[o]", choice));
    add_event(j, o);
    if (j->r.include_usage) {
        json_t *u = chunk_head(j, chunk_object(j));
        json_object_set_new(u, "choices", json_array());
        json_object_set_new(u, "usage", usage_json(j));
        add_event(j, u);
    }
    sb_add(&j->out, "data: [DONE]\n\n");
}

static void openai_error(struct server_job *j, unsigned status, const char *msg)
{
    add_event(j, server_error_json(SERVER_API_OPENAI, status, msg));
    sb_add(&j->out, "data: [DONE]\n\n");
}

static const struct server_fmt fmt = {
    .stream_type = "text/event-stream",
    .start = openai_start,
    .piece = openai_piece,
    .final = openai_final,
    .error = openai_error,
};

/* --------------------------------------------------------------- routes -- */

static json_t *model_json(const struct server *s)
{
    char name[512];
    return json_pack("{s:s,s:s,s:I,s:s}", "id", server_model_full_name(s, name, sizeof name),
                     "object", "model", "created", (json_int_t)0, "owned_by", "library");
}

static enum MHD_Result r_models(struct server *s, struct MHD_Connection *c, int64_t t0, json_t *b)
{
    return server_send_json(c, 200,
                            json_pack("{s:s,s:[o]}", "object", "list", "data", model_json(s)));
}

static enum MHD_Result r_model_one(struct server *s, struct MHD_Connection *c, int64_t t0,
                                   json_t *b)
{
    const char *id = json_string_value(json_object_get(b, "model"));
    if (!id || !server_name_matches(s, id))
        return server_send_error(c, SERVER_API_OPENAI, 404,
                                 "model \"%s\" not found, try pulling it first", id ? id : "");
    return server_send_json(c, 200, model_json(s));
}

static enum MHD_Result generate(struct server *s, struct MHD_Connection *c, int64_t t0, json_t *b,
                                bool chat)
{
    bool ok;
    enum MHD_Result ret = server_check_model(s, c, SERVER_API_OPENAI, b, &ok);
    if (!ok) return ret;
    struct server_req r = {.api = SERVER_API_OPENAI,
                           .kind = chat ? SERVER_KIND_CHAT : SERVER_KIND_GENERATE};
    struct server_perr e = {{0}};
    char *text = NULL;
    if (!server_parse_common(b, &r, &e)) goto bad;
    json_t *so = json_object_get(b, "stream_options");
    if (json_is_object(so) && json_is_true(json_object_get(so, "include_usage")))
        r.include_usage = true;
    json_t *nn = json_object_get(b, "n");
    if (nn && !json_is_null(nn) && !(json_is_integer(nn) && json_integer_value(nn) == 1)) {
        server_fail(&e, "'n': only 1 choice is supported");
        goto bad;
    }
    if (!server_parse_sampling(s, b, &r, &e)) goto bad;
    if (chat) {
        json_t *msgs = json_object_get(b, "messages");
        if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
            server_fail(&e, "'messages' must be a non-empty array");
            goto bad;
        }
        if (!server_format_messages(s, msgs, &text, &e)) goto bad;
    } else {
        json_t *p = json_object_get(b, "prompt");
        if (json_is_array(p) && json_array_size(p) == 1) p = json_array_get(p, 0);
        if (!json_is_string(p)) {
            server_fail(&e, "'prompt' must be a string (or an array of one string)");
            goto bad;
        }
        text = mem_xstrdup(json_string_value(p));
    }
    if (!server_tokenize_prompt(s, text, !chat, &r, &e)) goto bad;
    free(text);
    return server_run_job(s, c, t0, &r, &fmt);
bad:
    free(text);
    server_req_free(&r);
    return server_send_error(c, SERVER_API_OPENAI, 400, "%s", e.msg);
}

static enum MHD_Result r_chat_completions(struct server *s, struct MHD_Connection *c, int64_t t0,
                                          json_t *b)
{
    return generate(s, c, t0, b, true);
}

static enum MHD_Result r_completions(struct server *s, struct MHD_Connection *c, int64_t t0,
                                     json_t *b)
{
    return generate(s, c, t0, b, false);
}

const struct server_route openai_routes[] = {
    {"/v1/models", false, "GET HEAD", false, r_models},
    {"/v1/models/", true, "GET HEAD", false, r_model_one},
    {"/v1/chat/completions", false, "POST", true, r_chat_completions},
    {"/v1/completions", false, "POST", true, r_completions},
};
const size_t openai_n_routes = HY_ARRAY_LEN(openai_routes);
