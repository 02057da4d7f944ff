/* Reached through the symlink include/link.h. */
#define LINKED_VALUE 41
