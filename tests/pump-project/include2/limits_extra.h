#define REAL_LIMIT 99
