#include "../local.h"
#include <string.h>

int deep_len(const char *s) { return (int)strlen(s) + LOCAL_VALUE; }
