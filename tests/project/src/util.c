#include "project.h"

static const char banner[] = "util built at scale " "3";

int util_scale(int x)
{
    return x * PROJECT_SCALE + (int)(sizeof banner > 1);
}
