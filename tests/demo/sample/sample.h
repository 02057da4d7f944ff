#ifndef SAMPLE_H
#define SAMPLE_H
const char *greeting(void);
long fib(int n);
long table_sum(void);
unsigned checksum(const char *s);
#endif
