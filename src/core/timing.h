/* Monotonic time for measurements. */
#ifndef HY_CORE_TIMING_H
#define HY_CORE_TIMING_H

#include <stdint.h>

/* Microseconds on CLOCK_MONOTONIC. */
int64_t timing_now_us(void);

#endif
