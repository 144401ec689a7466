/*
 * The CUDA backend's entry points in a build without CUDA (HY_CUDA off):
 * no device, and a clear error for whoever asks for one.
 */
#include "backend/cuda/cuda_backend.h"

#include "core/err.h"

int cuda_device_count(void)
{
    return 0;
}

enum hy_status cuda_host_check_rows(uint32_t type, const void *w, size_t row_bytes, int64_t n_cols,
                                    const float *x, float *values, float dots[2])
{
    (void)type;
    (void)w;
    (void)row_bytes;
    (void)n_cols;
    (void)x;
    (void)values;
    (void)dots;
    return err_set(HY_ERR_UNSUPPORTED, "hypura was built without CUDA");
}

bool cuda_device_memory(int dev, uint64_t *free_bytes, uint64_t *total_bytes)
{
    (void)dev;
    *free_bytes = 0;
    *total_bytes = 0;
    return false;
}

enum hy_status cuda_backend_create(const struct cuda_backend_config *cfg, struct backend **out)
{
    (void)cfg;
    *out = NULL;
    return err_set(HY_ERR_UNSUPPORTED,
                   "no CUDA device: hypura was built without CUDA (configure with -DHY_CUDA=ON "
                   "where nvcc is installed)");
}

enum hy_status cuda_backend_set_weight_cache(struct backend *be, uint64_t bytes)
{
    (void)be;
    (void)bytes;
    return err_set(HY_ERR_UNSUPPORTED, "no CUDA device: hypura was built without CUDA");
}

void cuda_backend_attention_groups(int64_t min_keys)
{
    (void)min_keys;
}

void cuda_backend_weight_cache_sizes(struct backend *be, const uint64_t *sizes, const int *counts,
                                     int n)
{
    (void)be;
    (void)sizes;
    (void)counts;
    (void)n;
}

bool backend_is_cuda(const struct backend *be)
{
    (void)be;
    return false;
}

struct cuda_backend_rates cuda_backend_rates(const struct backend *be)
{
    (void)be;
    return (struct cuda_backend_rates){0};
}

struct cuda_backend_stats cuda_backend_stats(const struct backend *be)
{
    (void)be;
    return (struct cuda_backend_stats){0};
}

void cuda_backend_reset_stats(struct backend *be)
{
    (void)be;
}

uint64_t cuda_backend_device_bytes(const struct backend *be)
{
    (void)be;
    return 0;
}
