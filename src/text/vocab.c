#include "text/vocab.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/mem.h"

struct vocab_trie_node {
    int32_t child;   /* first child, -1 when none */
    int32_t sibling; /* next child of the same parent, -1 when none */
    bool terminal;   /* a special's piece ends here */
    uint8_t byte;
};

/* ---- special tokens -------------------------------------------------------- */

/* a goes after b: shorter, or as long and a higher id */
static bool special_after(const struct vocab_view *v, int32_t a, int32_t b)
{
    if (v->piece_len[a] != v->piece_len[b]) return v->piece_len[a] < v->piece_len[b];
    return a > b;
}

/* Merge sort of ids by special_after (thousands of entries; no qsort_r in C11). */
static void sort_specials(const struct vocab_view *v, int32_t *ids, int32_t *tmp, int32_t n)
{
    if (n < 2) return;
    int32_t h = n / 2;
    sort_specials(v, ids, tmp, h);
    sort_specials(v, ids + h, tmp, n - h);
    int32_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = special_after(v, ids[i], ids[j]) ? ids[j++] : ids[i++];
    while (i < h) tmp[k++] = ids[i++];
    while (j < n) tmp[k++] = ids[j++];
    memcpy(ids, tmp, sizeof(*ids) * (size_t)n);
}

static int32_t trie_add_node(struct vocab_specials *s, int32_t *cap, uint8_t byte)
{
    if (s->n_nodes == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        s->nodes = mem_xrealloc(s->nodes, sizeof(*s->nodes) * (size_t)*cap);
    }
    s->nodes[s->n_nodes] = (struct vocab_trie_node){-1, -1, false, byte};
    return s->n_nodes++;
}

/* Adds a piece; returns its end node. */
static int32_t trie_insert(struct vocab_specials *s, int32_t *cap, const char *p, uint32_t len)
{
    int32_t node = s->root[(uint8_t)p[0]];
    if (node < 0) node = s->root[(uint8_t)p[0]] = trie_add_node(s, cap, (uint8_t)p[0]);
    for (uint32_t i = 1; i < len; i++) {
        int32_t c = s->nodes[node].child;
        while (c >= 0 && s->nodes[c].byte != (uint8_t)p[i]) c = s->nodes[c].sibling;
        if (c < 0) {
            c = trie_add_node(s, cap, (uint8_t)p[i]);
            s->nodes[c].sibling = s->nodes[node].child;
            s->nodes[node].child = c;
        }
        node = c;
    }
    s->nodes[node].terminal = true;
    return node;
}

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == needle[i]) i++;
        if (i == n) return true;
    }
    return false;
}

void vocab_specials_init(struct vocab_specials *s, const struct vocab_view *v,
                         const char *model_name)
{
    memset(s, 0, sizeof(*s));
    for (int b = 0; b < 256; b++) s->root[b] = -1;
    s->ids = mem_xcalloc((size_t)v->n + 1, sizeof(*s->ids));
    for (int32_t i = 0; i < v->n; i++) {
        uint8_t ty = v->types[i];
        if (v->piece_len[i] > 0 &&
            (ty == VOCAB_TOK_CONTROL || ty == VOCAB_TOK_USER_DEFINED || ty == VOCAB_TOK_UNKNOWN))
            s->ids[s->n++] = i;
    }
    int32_t *tmp = mem_xcalloc((size_t)s->n + 1, sizeof(*tmp));
    sort_specials(v, s->ids, tmp, s->n);
    free(tmp);

    /* llama.cpp: a model named Phi-3 strips the white space after every
     * special token but <unk>, <s> and <|endoftext|>, and after </s> */
    s->strip = mem_xcalloc((size_t)s->n + 1, 1);
    if (model_name && (contains_ci(model_name, "phi-3") || contains_ci(model_name, "phi3"))) {
        for (int32_t k = 0; k < s->n; k++) {
            const char *p = v->pieces[s->ids[k]];
            if (strcmp(p, "<unk>") != 0 && strcmp(p, "<s>") != 0 && strcmp(p, "<|endoftext|>") != 0)
                s->strip[k] = VOCAB_RSTRIP;
        }
    }

    int32_t cap = 0;
    s->node_of = mem_xcalloc((size_t)s->n + 1, sizeof(*s->node_of));
    for (int32_t k = 0; k < s->n; k++)
        s->node_of[k] = trie_insert(s, &cap, v->pieces[s->ids[k]], v->piece_len[s->ids[k]]);
}

void vocab_specials_free(struct vocab_specials *s)
{
    if (!s) return;
    free(s->ids);
    free(s->strip);
    free(s->node_of);
    free(s->nodes);
    memset(s, 0, sizeof(*s));
}

/* C-locale isspace, as llama.cpp strips with */
static bool is_space_byte(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

struct frags {
    struct vocab_frag *a;
    size_t n, cap;
};

static void frags_push(struct frags *f, int32_t id, size_t off, size_t len)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 16;
        f->a = mem_xrealloc(f->a, sizeof(*f->a) * f->cap);
    }
    f->a[f->n++] = (struct vocab_frag){id, off, len};
}

/* One special token's pass over the fragments in, written to out. */
static void split_by(const struct vocab_specials *s, const struct vocab_view *v, int32_t k,
                     const char *text, const struct frags *in, struct frags *out)
{
    const int32_t id = s->ids[k];
    const char *piece = v->pieces[id];
    const size_t plen = v->piece_len[id];
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        const struct vocab_frag *f = &in->a[i];
        if (f->id >= 0) {
            frags_push(out, f->id, f->off, f->len);
            continue;
        }
        size_t base = f->off, blen = f->len;
        for (;;) {
            const char *hit = blen >= plen ? memmem(text + base, blen, piece, plen) : NULL;
            if (!hit) {
                if (blen > 0) frags_push(out, -1, base, blen);
                break;
            }
            const size_t m = (size_t)(hit - text);
            size_t left = m - base;
            if (s->strip[k] & VOCAB_LSTRIP)
                while (left > 0 && is_space_byte(text[base + left - 1])) left--;
            if (left > 0) frags_push(out, -1, base, left);
            frags_push(out, id, m, plen);
            size_t rbase = m + plen, rlen = base + blen - rbase;
            if (rlen == 0) break;
            if (s->strip[k] & VOCAB_RSTRIP)
                while (rlen > 0 && is_space_byte(text[rbase])) rbase++, rlen--;
            base = rbase;
            blen = rlen;
        }
    }
}

size_t vocab_partition(const struct vocab_specials *s, const struct vocab_view *v, const char *text,
                       size_t len, bool parse_special, struct vocab_frag **out)
{
    struct frags a = {0}, b = {0};
    if (len > 0) frags_push(&a, -1, 0, len);
    if (s->n > 0 && len > 0) {
        /* which special pieces occur anywhere in the text (per trie node, so
         * that duplicate pieces of different types are both seen) */
        bool *occurs = mem_xcalloc((size_t)s->n_nodes, sizeof(*occurs));
        bool any = false;
        for (size_t i = 0; i < len; i++) {
            int32_t node = s->root[(uint8_t)text[i]];
            for (size_t d = 1; node >= 0; d++) {
                if (s->nodes[node].terminal) {
                    occurs[node] = true;
                    any = true;
                }
                if (i + d >= len) break;
                int32_t c = s->nodes[node].child;
                while (c >= 0 && s->nodes[c].byte != (uint8_t)text[i + d]) c = s->nodes[c].sibling;
                node = c;
            }
        }
        for (int32_t k = 0; any && k < s->n; k++) {
            if (!occurs[s->node_of[k]]) continue;
            uint8_t ty = v->types[s->ids[k]];
            if (!parse_special && ty != VOCAB_TOK_USER_DEFINED) continue;
            split_by(s, v, k, text, &a, &b);
            struct frags x = a;
            a = b;
            b = x;
        }
        free(occurs);
    }
    free(b.a);
    *out = a.a;
    return a.n;
}

/* ---- end of generation ----------------------------------------------------- */

/* A special token llama.cpp looks for: by key, else by one of its texts. */
struct marker {
    const char *key;
    const char *old_key; /* deprecated key name, or NULL */
    bool eog;
    const char *texts[11]; /* NULL-terminated */
};

/* clang-format off */
static const struct marker MARKERS[] = {
    {"tokenizer.ggml.eot_token_id", NULL, true,
     {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
      "<EOT>", "_<EOT>", "<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>",
      "<end_of_utterance>"}},
    {"tokenizer.ggml.eom_token_id", NULL, true, {"<|eom_id|>"}},
    {"tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id", false,
     {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
      "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "<PRE>", "\xe2\x96\x81<PRE>",
      "<|code_prefix|>"}},
    {"tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id", false,
     {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
      "<\xef\xbd\x9c" "fim\xe2\x96\x81" "hole\xef\xbd\x9c>", "<SUF>", "\xe2\x96\x81<SUF>",
      "<|code_suffix|>"}},
    {"tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id", false,
     {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
      "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>", "<MID>", "\xe2\x96\x81<MID>",
      "<|code_middle|>"}},
    {"tokenizer.ggml.fim_pad_token_id", NULL, true,
     {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>"}},
    {"tokenizer.ggml.fim_rep_token_id", NULL, true,
     {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}},
    {"tokenizer.ggml.fim_sep_token_id", NULL, true, {"<|file_sep|>"}},
};
/* clang-format on */

static const char *const EOG_TEXTS[] = {
    "<|eot_id|>",      "<|im_end|>",         "<|end|>",    "<|return|>", "<|call|>",
    "<end_of_turn>",   "<|endoftext|>",      "<|eom_id|>", "<EOT>",      "_<EOT>",
    "<|end_of_text|>", "<end_of_utterance>", NULL};

static const char *const HARMONY_USER[] = {"<|channel|>", "<|message|>", "<|start|>",
                                           "<|constrain|>", NULL};

static int32_t find_text(const struct vocab_view *v, const char *text)
{
    int64_t id = strmap_find(v->map, text);
    return id >= 0 && id < v->n ? (int32_t)id : -1;
}

/* The id of key (or old_key), -1 when absent or outside the vocabulary. */
HY_MUST_CHECK static enum hy_status key_id(const struct gguf_ctx *g, const struct vocab_view *v,
                                           const char *key, int32_t *out)
{
    int64_t id;
    enum hy_status st = gguf_get_int_or(g, key, -1, &id);
    if (st) return st;
    if (id >= 0 && id < v->n) *out = (int32_t)id;
    return HY_OK;
}

static void add_id(int32_t *set, int32_t *n, int32_t id)
{
    if (id < 0) return;
    for (int32_t i = 0; i < *n; i++)
        if (set[i] == id) return;
    set[(*n)++] = id;
}

enum hy_status vocab_find_eog(const struct gguf_ctx *g, const struct vocab_view *v, int32_t eos_id,
                              int32_t **eog, int32_t *n_eog)
{
    enum hy_status st;
    /* every marker, every EOG text, eos: a small bounded set */
    const size_t cap = HY_ARRAY_LEN(MARKERS) + HY_ARRAY_LEN(EOG_TEXTS) + 2;
    int32_t *set = mem_xcalloc(cap, sizeof(*set));
    int32_t n = 0;
    for (size_t m = 0; m < HY_ARRAY_LEN(MARKERS); m++) {
        const struct marker *mk = &MARKERS[m];
        int32_t id = -1;
        if ((st = key_id(g, v, mk->key, &id))) goto fail;
        if (mk->old_key && (st = key_id(g, v, mk->old_key, &id))) goto fail;
        if (id < 0) {
            for (size_t t = 0; id < 0 && mk->texts[t]; t++) id = find_text(v, mk->texts[t]);
            if (id >= 0) v->types[id] = VOCAB_TOK_CONTROL;
        }
        if (mk->eog) add_id(set, &n, id);
    }
    int32_t id_return = -1, id_call = -1, id_end = -1;
    for (size_t t = 0; EOG_TEXTS[t]; t++) {
        int32_t id = find_text(v, EOG_TEXTS[t]);
        if (id < 0) continue;
        v->types[id] = VOCAB_TOK_CONTROL;
        add_id(set, &n, id);
        if (!strcmp(EOG_TEXTS[t], "<|return|>")) id_return = id;
        if (!strcmp(EOG_TEXTS[t], "<|call|>")) id_call = id;
        if (!strcmp(EOG_TEXTS[t], "<|end|>")) id_end = id;
    }
    for (size_t t = 0; HARMONY_USER[t]; t++) {
        int32_t id = find_text(v, HARMONY_USER[t]);
        if (id >= 0) v->types[id] = VOCAB_TOK_USER_DEFINED;
    }
    add_id(set, &n, eos_id >= 0 && eos_id < v->n ? eos_id : -1);
    if (id_return >= 0 && id_call >= 0 && id_end >= 0) {
        for (int32_t i = 0; i < n; i++)
            if (set[i] == id_end) set[i] = set[--n];
        v->types[id_end] = VOCAB_TOK_USER_DEFINED;
    }
    for (int32_t i = 1; i < n; i++) {
        int32_t x = set[i], j = i - 1;
        while (j >= 0 && set[j] > x) {
            set[j + 1] = set[j];
            j--;
        }
        set[j + 1] = x;
    }
    *eog = set;
    *n_eog = n;
    return HY_OK;
fail:
    free(set);
    *eog = NULL;
    *n_eog = 0;
    return st;
}

bool vocab_is_eog(const int32_t *eog, int32_t n_eog, int32_t id)
{
    int32_t lo = 0, hi = n_eog;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (eog[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n_eog && eog[lo] == id;
}
