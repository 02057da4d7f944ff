#include "computed.h"
#include COMP_HEADER

int comp_value(void) { return COMPUTED_VALUE; }
