#include <stdio.h>
#include "sample.h"

int main(void) {
    printf("%s\n", greeting());
    printf("fib(30) = %ld\n", fib(30));
    printf("table sum = %ld\n", table_sum());
    printf("checksum = %u\n", checksum(greeting()));
    return 0;
}
