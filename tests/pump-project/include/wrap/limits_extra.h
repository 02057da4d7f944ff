/* Wraps the real one further down the search path. */
#include_next <limits_extra.h>
#define WRAPPED_LIMIT (REAL_LIMIT + 1)
