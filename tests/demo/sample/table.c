/* A larger translation unit, so the monitor has something to show while it compiles. */
#include "sample.h"

#define ROW(n) n, n + 1, n + 2, n + 3, n + 4, n + 5, n + 6, n + 7
#define BLOCK(n) ROW(n), ROW(n + 8), ROW(n + 16), ROW(n + 24)
#define PAGE(n) BLOCK(n), BLOCK(n + 32), BLOCK(n + 64), BLOCK(n + 96)
#define BOOK(n) PAGE(n), PAGE(n + 128), PAGE(n + 256), PAGE(n + 384)

static const long table[] = {
    BOOK(0), BOOK(512), BOOK(1024), BOOK(1536), BOOK(2048), BOOK(2560), BOOK(3072), BOOK(3584),
};

#define F(i) long f##i(long x);  long f##i(long x) { return x * i + (x >> (i % 7)); }
#define F8(i) F(i##0) F(i##1) F(i##2) F(i##3) F(i##4) F(i##5) F(i##6) F(i##7)
F8(1) F8(2) F8(3) F8(4) F8(5) F8(6) F8(7)

long table_sum(void) {
    long s = 0;
    for (unsigned i = 0; i < sizeof table / sizeof table[0]; i++)
        s += table[i];
    s += f10(1) + f21(2) + f32(3) + f43(4) + f54(5) + f65(6) + f76(7);
    return s;
}
