#include "project.h"

long geom_area(long w, long h)
{
    return w * h;
}
