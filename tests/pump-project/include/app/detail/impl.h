#define IMPL_FACTOR 2
