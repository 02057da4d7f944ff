/* Built by the test with absolute -I and source paths (as CMake does), not by the Makefile. */
#include <app/where.h>

const char *where_source(void) { return __FILE__; }
const char *where_hdr(void) { return where_header; }
