#include <string>
#include <vector>
#include "app/util.h"

int util_twice(int x)
{
    std::vector<std::string> v(x, CONFIG_GREETING);
    return static_cast<int>(v.size()) * IMPL_FACTOR;
}
