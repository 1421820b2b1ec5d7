#include "posts.h"

pm_posts_t pm_posts;
