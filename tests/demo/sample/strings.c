#include <string.h>
#include "sample.h"

unsigned checksum(const char *s) {
    unsigned h = 2166136261u;
    for (size_t i = 0; i < strlen(s); i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}
