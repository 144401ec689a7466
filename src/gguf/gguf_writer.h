/*
 * GGUF writer (version 3), for `hypura synth`, for tests and for tools that
 * rewrite models.
 *
 * Use: gguf_writer_init; set key/values and add tensor infos in the order the
 * file should have them; gguf_writer_begin writes the header, the key/values,
 * the tensor directory and the padding to the sink; then the data of every
 * tensor, in the order they were added, through gguf_writer_write_data (any
 * chunking; the padding between tensors is inserted automatically);
 * gguf_writer_finish checks that every byte was given and flushes.
 *
 * Writes are buffered into large chunks (8 MiB) so that multi-GiB outputs go
 * out as big sequential writes.
 *
 * The file sink writes to "<path>.partial" and renames it over <path> only in
 * gguf_writer_file_commit, so an interrupted write never leaves a truncated
 * model under the final name; it refuses an existing <path> unless force.
 */
#ifndef HY_GGUF_GGUF_WRITER_H
#define HY_GGUF_GGUF_WRITER_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf.h"

struct gguf_sink {
    /* Writes all n bytes; 0 on success, -1 after err_set on failure. */
    int (*write)(void *user, const void *p, size_t n);
    void *user;
};

struct gguf_writer;

/* alignment: a power of two; GGUF_DEFAULT_ALIGNMENT unless there is a reason.
 * A value other than 32 is recorded as general.alignment. */
struct gguf_writer *gguf_writer_init(uint32_t alignment);
void gguf_writer_free(struct gguf_writer *w);

/* Setting a key that is already set replaces its value in place. Strings and
 * arrays are copied. */
void gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v);
void gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v);
void gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v);
void gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v);
void gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v);
void gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v);
void gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const char *const *v, uint64_t n);
void gguf_writer_set_arr_f32(struct gguf_writer *w, const char *key, const float *v, uint64_t n);
void gguf_writer_set_arr_i32(struct gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
/* Any value, including nested arrays (e.g. one taken from a parsed file). */
void gguf_writer_set_value(struct gguf_writer *w, const char *key, const struct gguf_value *v);

/* Adds a tensor info; returns its index. name unique, 1..4 dims, ne[0] a
 * multiple of the type's block size (asserted: these are our own inputs). */
uint64_t gguf_writer_add_tensor(struct gguf_writer *w, const char *name, uint32_t type,
                                uint32_t n_dims, const int64_t *ne);

uint64_t gguf_writer_n_tensors(const struct gguf_writer *w);
/* Bytes of tensor i's data. */
uint64_t gguf_writer_tensor_bytes(const struct gguf_writer *w, uint64_t i);
/* Total bytes of the file that gguf_writer_finish will have produced. */
uint64_t gguf_writer_total_bytes(const struct gguf_writer *w);

/* The sink is copied; what its user pointer points to must outlive the writing. */
HY_MUST_CHECK enum hy_status gguf_writer_begin(struct gguf_writer *w, const struct gguf_sink *sink);
HY_MUST_CHECK enum hy_status gguf_writer_write_data(struct gguf_writer *w, const void *p, size_t n);
HY_MUST_CHECK enum hy_status gguf_writer_finish(struct gguf_writer *w);
/* Hands what is buffered to the sink now (e.g. to keep just the header after
 * gguf_writer_begin). Errors: the sink's. */
HY_MUST_CHECK enum hy_status gguf_writer_flush(struct gguf_writer *w);

/* File sink. */
struct gguf_writer_file {
    int fd;
    char *path;     /* owned */
    char *tmp_path; /* owned: path + ".partial" */
};

/* HY_ERR_EXISTS when path exists and !force; HY_ERR_IO naming the path otherwise. */
HY_MUST_CHECK enum hy_status gguf_writer_file_open(struct gguf_writer_file *f, const char *path, bool force);
struct gguf_sink gguf_writer_file_sink(struct gguf_writer_file *f);
/* fsync, close, rename over the final path. */
HY_MUST_CHECK enum hy_status gguf_writer_file_commit(struct gguf_writer_file *f);
/* Close and remove the partial file (after a failure). */
void gguf_writer_file_abort(struct gguf_writer_file *f);

/* Memory sink: appends to a growable buffer (tests, fuzz seeds). */
struct gguf_writer_mem {
    unsigned char *data; /* owned; free() */
    size_t len, cap;
};
struct gguf_sink gguf_writer_mem_sink(struct gguf_writer_mem *m);

#endif
