#include "model/synth_vocab.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/mem.h"
#include "core/strmap.h"

#define SPM_SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's word-start mark */

/* Common English words (the TinyStories register), most frequent first. */
static const char *const common_words[] = {
    "the", "and", "a", "to", "was", "he", "she", "it", "of", "in", "they", "said", "his", "her", "you",
    "with", "on", "that", "had", "for", "is", "at", "but", "day", "one", "so", "were", "big", "not",
    "saw", "very", "them", "up", "time", "play", "happy", "there", "little", "upon", "once", "mom",
    "friend", "wanted", "went", "all", "we", "be", "have", "this", "what", "are", "from", "out", "can",
    "do", "go", "like", "me", "my", "no", "now", "see", "then", "too", "when", "will", "would", "could",
    "about", "after", "again", "away", "back", "because", "came", "come", "did", "down", "every",
    "find", "found", "fun", "get", "good", "got", "help", "home", "house", "into", "just", "know",
    "look", "looked", "love", "made", "make", "many", "more", "much", "new", "nice", "old", "other",
    "over", "park", "people", "put", "ran", "red", "run", "sad", "sky", "small", "some", "sun", "tree",
    "toy", "two", "under", "us", "water", "way", "what", "where", "who", "why", "yes", "your", "girl",
    "boy", "cat", "dog", "bird", "ball", "car", "book", "fish", "flower", "garden", "school", "story",
    "world", "thing", "things", "think", "thought", "together", "learned", "lesson", "smiled",
    "laughed", "named", "lived", "loved", "liked", "asked", "felt", "feel", "hug", "hand", "head",
    "eyes", "open", "close", "long", "high", "hard", "warm", "cold", "green", "blue", "yellow", "best",
    "first", "last", "next", "night", "morning", "today", "tomorrow", "always", "never", "something",
    "everyone", "everything", "anything", "nothing", "how", "if", "or", "an", "by", "as", "our", "their",
    "him", "its", "been", "than", "which", "these", "those", "here", "well", "only", "even", "also",
    "model", "token", "expert", "layer", "memory", "disk", "stream", "hypura",
};

static const char *const capitalised[] = {"The", "Once", "One", "She", "He", "They", "It", "Lily", "Tim",
                                          "Ben", "Mia", "Sam", "Max", "Sue", "Tom", "Anna", "Jack"};

struct vbuild {
    struct synth_vocab *v;
    int64_t cap;
    struct strmap seen;
};

/* Adds s (copied) if new and there is room. */
static void vb_add(struct vbuild *b, const char *s, int32_t type, float score)
{
    struct synth_vocab *v = b->v;
    if (v->n >= b->cap) return;
    if (strmap_find(&b->seen, s) >= 0) return;
    v->tokens[v->n] = mem_xstrdup(s);
    v->types[v->n] = type;
    v->scores[v->n] = score;
    strmap_put(&b->seen, v->tokens[v->n], v->n);
    v->n++;
}

/* "▁" + every prefix of w, shortest first. */
static void vb_add_word(struct vbuild *b, const char *w)
{
    char piece[64];
    size_t len = strlen(w);
    for (size_t i = 1; i <= len && i + sizeof(SPM_SPACE) < sizeof(piece); i++) {
        memcpy(piece, SPM_SPACE, 3);
        memcpy(piece + 3, w, i);
        piece[3 + i] = '\0';
        vb_add(b, piece, SYNTH_TOK_NORMAL, -(float)b->v->n);
    }
}

enum hy_status synth_vocab_init(struct synth_vocab *v, int64_t n)
{
    memset(v, 0, sizeof(*v));
    if (n < SYNTH_VOCAB_MIN || n > (1 << 24))
        return err_set(HY_ERR_INVALID_ARG,
                       "vocabulary size %" PRId64 " is out of range for the built-in vocabulary [%d, %d]", n,
                       SYNTH_VOCAB_MIN, 1 << 24);
    v->tokens = mem_xcalloc((size_t)n, sizeof(*v->tokens));
    v->scores = mem_xcalloc((size_t)n, sizeof(*v->scores));
    v->types = mem_xcalloc((size_t)n, sizeof(*v->types));
    struct vbuild b = {v, n, {0}};
    strmap_init(&b.seen, (size_t)n);
    vb_add(&b, "<unk>", SYNTH_TOK_UNKNOWN, 0.0f);
    vb_add(&b, "<s>", SYNTH_TOK_CONTROL, 0.0f);
    vb_add(&b, "</s>", SYNTH_TOK_CONTROL, 0.0f);
    char tmp[16];
    for (int byte = 0; byte < 256; byte++) {
        snprintf(tmp, sizeof tmp, "<0x%02X>", byte);
        vb_add(&b, tmp, SYNTH_TOK_BYTE, 0.0f);
    }
    vb_add(&b, SPM_SPACE, SYNTH_TOK_NORMAL, -(float)v->n);
    for (int ch = 0x21; ch < 0x7f; ch++) {
        tmp[0] = (char)ch;
        tmp[1] = '\0';
        vb_add(&b, tmp, SYNTH_TOK_NORMAL, -(float)v->n);
    }
    for (size_t i = 0; i < HY_ARRAY_LEN(common_words); i++) vb_add_word(&b, common_words[i]);
    for (size_t i = 0; i < HY_ARRAY_LEN(capitalised); i++) vb_add_word(&b, capitalised[i]);
    /* all lowercase strings by length: prefixes always come first */
    char w[8];
    for (int len = 1; len <= 6 && v->n < n; len++) {
        int idx[6] = {0};
        for (;;) {
            for (int k = 0; k < len; k++) w[k] = (char)('a' + idx[k]);
            w[len] = '\0';
            char piece[16];
            memcpy(piece, SPM_SPACE, 3);
            memcpy(piece + 3, w, (size_t)len + 1);
            vb_add(&b, piece, SYNTH_TOK_NORMAL, -(float)v->n);
            if (v->n >= n) break;
            int k = len - 1;
            while (k >= 0 && ++idx[k] == 26) idx[k--] = 0;
            if (k < 0) break;
        }
    }
    strmap_free(&b.seen);
    HY_ASSERT(v->n == n);
    return HY_OK;
}

void synth_vocab_free(struct synth_vocab *v)
{
    if (!v->tokens) return;
    for (int64_t i = 0; i < v->n; i++) free(v->tokens[i]);
    free(v->tokens);
    free(v->scores);
    free(v->types);
    memset(v, 0, sizeof(*v));
}
