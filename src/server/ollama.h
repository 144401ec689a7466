/* The Ollama API's routes (ollama.c), for the server's route lookup. */
#ifndef HY_SERVER_OLLAMA_H
#define HY_SERVER_OLLAMA_H

#include "server/server_impl.h"

extern const struct server_route ollama_routes[];
extern const size_t ollama_n_routes;

#endif
