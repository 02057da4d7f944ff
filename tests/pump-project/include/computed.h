#define COMP_HEADER "app/comp_impl.h"
