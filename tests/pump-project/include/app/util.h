#ifndef APP_UTIL_H
#define APP_UTIL_H
#include "detail/impl.h"
int util_twice(int x);
#endif
