#include "sample.h"

const char *greeting(void) { return "Hallo distcc!"; }
