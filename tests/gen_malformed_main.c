/*
 * gen_malformed [--valid] OUTDIR
 *
 * Writes every malformed case of gen_malformed.c as OUTDIR/<case>.gguf (or,
 * with --valid, every valid variant), for command-line tests and as a fuzz
 * seed corpus. OUTDIR must exist. Prints the number of files written.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen_malformed.h"

static int write_file(const char *path, const struct gen_file *f)
{
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        fprintf(stderr, "gen_malformed: error: %s: cannot create: %s\n", path, strerror(errno));
        return -1;
    }
    size_t put = f->len ? fwrite(f->data, 1, f->len, fp) : 0;
    int closed = fclose(fp);
    if (put != f->len || closed != 0) {
        fprintf(stderr, "gen_malformed: error: %s: write failed\n", path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int valid = argc == 3 && strcmp(argv[1], "--valid") == 0;
    if (argc != 2 + valid || argv[argc - 1][0] == '-') {
        fprintf(stderr, "usage: gen_malformed [--valid] OUTDIR\n");
        return 2;
    }
    const char *dir = argv[argc - 1];
    size_t n = valid ? gen_valid_count() : gen_malformed_count();
    for (size_t i = 0; i < n; i++) {
        const struct gen_case *c = valid ? gen_valid_case(i) : gen_malformed_case(i);
        struct gen_file f;
        gen_build(c, &f);
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s.gguf", dir, c->name);
        int rc = write_file(path, &f);
        free(f.data);
        if (rc) return 1;
    }
    printf("gen_malformed: wrote %zu %s files to %s\n", n, valid ? "valid" : "malformed", dir);
    return 0;
}
