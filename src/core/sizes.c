#include "core/sizes.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"

enum hy_status sizes_parse(const char *text, uint64_t *out_bytes)
{
    const char *p = text;
    if (!p || !*p) return err_set(HY_ERR_INVALID_ARG, "empty size");
    if (!isdigit((unsigned char)*p) && *p != '.')
        return err_set(HY_ERR_INVALID_ARG, "'%s' is not a size (expected e.g. 512M, 8G, 1.5GiB)", text);
    char *end = NULL;
    double v = strtod(p, &end);
    if (end == p || !isfinite(v) || v < 0)
        return err_set(HY_ERR_INVALID_ARG, "'%s' is not a size (expected e.g. 512M, 8G, 1.5GiB)", text);
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {
        {"", 1.0},           {"b", 1.0},
        {"k", 1024.0},       {"kib", 1024.0},       {"kb", 1e3},
        {"m", 1048576.0},    {"mib", 1048576.0},    {"mb", 1e6},
        {"g", 1073741824.0}, {"gib", 1073741824.0}, {"gb", 1e9},
        {"t", 1099511627776.0}, {"tib", 1099511627776.0}, {"tb", 1e12},
    };
    while (*end == ' ') end++;
    for (size_t i = 0; i < HY_ARRAY_LEN(units); i++) {
        if (strcasecmp(end, units[i].suffix) == 0) {
            /* Rounded in double and converted directly: llround() goes
             * through long long and is undefined from 2^63 up, which valid
             * sizes reach ("9000000000G"). 2^64 is exact as a double. */
            double bytes = floor(v * units[i].mult + 0.5);
            if (bytes >= 18446744073709551616.0)
                return err_set(HY_ERR_INVALID_ARG, "size '%s' is too large", text);
            *out_bytes = (uint64_t)bytes;
            return HY_OK;
        }
    }
    return err_set(HY_ERR_INVALID_ARG,
                   "'%s': unknown size unit '%s' (use K, M, G, T, KiB, MiB, GiB, TiB, KB, MB, GB, TB)",
                   text, end);
}

char *sizes_format(uint64_t bytes, char *buf, size_t cap)
{
    static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    if (bytes < 1024) {
        snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
        return buf;
    }
    double v = (double)bytes;
    size_t u = 0;
    while (v >= 1024.0 && u + 1 < HY_ARRAY_LEN(names)) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, cap, "%.2f %s", v, names[u]);
    return buf;
}
