/*
 * The HTTP server: the Ollama API and the OpenAI API over one engine.
 *
 * HTTP is libmicrohttpd's (one thread per connection, so a handler may block
 * while it generates); JSON is jansson's. Routes:
 *
 *   GET  /                      "Ollama is running" (liveness; HEAD too)
 *   GET  /api/version           {"version"}
 *   GET  /api/tags              the one model, as Ollama lists local models
 *   POST /api/show              details, model_info (the GGUF's scalar metadata), template
 *   GET  /api/ps                the model, loaded
 *   POST /api/generate          prompt -> text; NDJSON stream unless "stream": false
 *   POST /api/chat              messages -> reply, through the model's chat template
 *   GET  /v1/models[/ID]        OpenAI model list
 *   POST /v1/chat/completions   OpenAI chat; server-sent events with "stream": true
 *   POST /v1/completions        OpenAI legacy completions
 *
 * Requests and answers follow the two APIs' documentation: Ollama's final
 * object carries done_reason ("stop": end of generation or a stop string;
 * "length": num_predict or a full context) and durations in nanoseconds;
 * OpenAI's answers carry usage and finish_reason, and streams end with
 * "data: [DONE]". Sampling options a request leaves out take `hypura run`'s
 * defaults (llama.cpp's), so that the same request gives the same text as
 * `hypura run` with the same flags; /api/generate with "raw": true, or on a
 * model without a chat template, evaluates the prompt exactly as `run -p`
 * does.
 *
 * Generation. Each request takes one of the engine's sequences (the one
 * whose KV cache shares the longest prefix with its prompt: a multi-turn
 * chat only evaluates its new turn), waiting while all are busy (--parallel
 * sets how many there are); evaluations of different sequences interleave
 * token by token. A streamed request generates as the client reads; a
 * client that disconnects (the socket is checked before every token) ends
 * its generation and frees the sequence.
 *
 * Bad requests never stop the server: unknown path 404, wrong method 405
 * (with Allow), a body over the limit 413, malformed JSON or a bad field 400,
 * an unknown model 404 ("model \"x\" not found, try pulling it first"), all
 * with a JSON error body in the API's own shape.
 *
 * Files: server.c (HTTP glue, request parsing, generation jobs), ollama.c
 * and openai.c (each API's routes and answer shapes), server_impl.h (what
 * they share).
 *
 * Not here: images, tools, format "json" enforcement (accepted, not
 * constrained), more than one model, unloading (keep_alive is accepted).
 */
#ifndef HY_SERVER_SERVER_H
#define HY_SERVER_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "chat/chat_template.h"
#include "core/base.h"
#include "engine/engine.h"

#define SERVER_DEFAULT_PORT      11434
#define SERVER_DEFAULT_MAX_BODY (8u << 20)

struct server_opts {
    const char *host; /* address to bind (numeric or a name); NULL: 127.0.0.1 */
    int port;         /* 0: any free port (server_port says which) */
    uint64_t max_body_bytes; /* 0: SERVER_DEFAULT_MAX_BODY */
};

struct server;

/* Starts serving e (loaded, borrowed until server_close) on host:port.
 * The model's API name is its file name without ".gguf" (":latest" is
 * accepted after it). Errors: HY_ERR_INVALID_ARG (a host that does not
 * resolve), HY_ERR_IO (the address cannot be bound, naming it and the
 * system's reason). */
HY_MUST_CHECK enum hy_status server_open(struct engine *e, const struct server_opts *o,
                                         struct server **out);

/* Formats chat requests in family t instead of the one detected from the
 * model's tokenizer.chat_template (call before the first request). */
void server_set_chat_template(struct server *s, enum chat_template t);

/* The port it listens on. */
int server_port(const struct server *s);

/* The model's API name ("llama-Q4_K_M"). */
const char *server_model_name(const struct server *s);

/* Stops accepting, ends running generations at their next token, waits for
 * the connections' threads. NULL is a no-op. */
void server_close(struct server *s);

#endif
