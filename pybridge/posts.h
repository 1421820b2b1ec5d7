/* Receives posted lazily by pmrun._fast (see posts.go). pmrun._fast keeps a
 * copy of this layout and checks its size (pm_posts_area). */
#include <stdint.h>

#define PM_POSTS 32

typedef struct {
    int64_t req;  /* its handle, reserved by pm_req_reserve */
    int64_t comm; /* the communicator's handle */
    int64_t src, tag;
    void *buf;
    int64_t cap;
} pm_post;

typedef struct {
    uint32_t lock; /* 1 while a thread reads or changes the list */
    uint32_t n;    /* entries in p, oldest first */
    pm_post p[PM_POSTS];
} pm_posts_t;

extern pm_posts_t pm_posts;
