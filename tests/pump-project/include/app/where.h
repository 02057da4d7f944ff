/* __FILE__ in a header: must name the client's path even when compiled remotely. */
static const char *const where_header = __FILE__;
