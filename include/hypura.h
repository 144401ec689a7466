/*
 * hypura — public API.
 *
 * Only what a program embedding hypura needs: status codes and version. The
 * engine's handles are added here as opaque types when they become public.
 */
#ifndef HYPURA_H
#define HYPURA_H

#ifdef __cplusplus
extern "C" {
#endif

#define HY_VERSION_MAJOR 0
#define HY_VERSION_MINOR 1
#define HY_VERSION_PATCH 0
#define HY_VERSION_STRING "0.1.0"

/* Every fallible function returns one of these; the detail of the last error
 * on the calling thread is in hy_last_error(). */
enum hy_status {
    HY_OK = 0,
    HY_ERR_INVALID_ARG,  /* a flag, option or argument value is wrong */
    HY_ERR_IO,           /* open/read/write failed or was short */
    HY_ERR_FORMAT,       /* a file does not follow its format (GGUF, vocab, ...) */
    HY_ERR_UNSUPPORTED,  /* well-formed, but not something hypura handles (yet) */
    HY_ERR_OOM,          /* a tier-sized allocation failed */
    HY_ERR_CUDA,         /* a CUDA call failed */
    HY_ERR_EXISTS,       /* refusing to overwrite an existing file */
    HY_ERR_INTERNAL,     /* a bug: an invariant did not hold */
    HY_STATUS_COUNT
};

/* Short stable name of a status ("HY_ERR_FORMAT"). Never NULL. */
const char *hy_status_str(enum hy_status status);

/* Message describing the last error set on this thread, "" if none. The
 * pointer stays valid until the next error is set on this thread. */
const char *hy_last_error(void);

/* Version string of the library, e.g. "0.1.0". */
const char *hy_version(void);

#ifdef __cplusplus
}
#endif

#endif
