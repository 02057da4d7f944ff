#include <cmath>
#include <array>
#include "project.h"

template <typename T> struct Vec2 {
    T x, y;
    T length() const { return std::sqrt(x * x + y * y); }
};

extern "C" double vec_length_sum(void)
{
    std::array<Vec2<double>, 2> vs{{{3.0, 4.0}, {6.0, 8.0}}};
    double s = 0;
    for (const auto &v : vs)
        s += v.length();
    return s;
}
