#include <stdio.h>
#include "project.h"

int main(void)
{
    printf("scale=%d area=%ld shapes=%ld vec=%.1f\n", util_scale(7), geom_area(3, 4),
           shapes_total(), vec_length_sum());
    return 0;
}
