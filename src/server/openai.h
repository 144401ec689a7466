/* The OpenAI API's routes (openai.c), for the server's route lookup. */
#ifndef HY_SERVER_OPENAI_H
#define HY_SERVER_OPENAI_H

#include "server/server_impl.h"

extern const struct server_route openai_routes[];
extern const size_t openai_n_routes;

#endif
