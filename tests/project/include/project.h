#ifndef PROJECT_H
#define PROJECT_H
#ifdef __cplusplus
extern "C" {
#endif
int util_scale(int x);
long geom_area(long w, long h);
long shapes_total(void);
double vec_length_sum(void);
#ifdef __cplusplus
}
#endif
#endif
