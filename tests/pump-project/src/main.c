#include <stdio.h>
#include "link.h"
#include <limits_extra.h>
#include "app/util.h"

int main(void)
{
    printf("%s %d %d %d\n", CONFIG_GREETING, LINKED_VALUE, WRAPPED_LIMIT, util_twice(IMPL_FACTOR));
    return 0;
}
