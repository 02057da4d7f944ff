int unused_warning(int x) {
    int y;
    return x;
}
