/* it_support.h: what every integration test needs to reach a real nearestd
 * over loopback, written once. The integration tests (it_*.c) link it as the
 * static library nearest_it_support. */
#ifndef NEARESTD_IT_SUPPORT_H
#define NEARESTD_IT_SUPPORT_H

#include <stddef.h>

/* Returns a TCP port on 127.0.0.1 that was free a moment ago (bound to port 0
 * and released), or -1 when no socket could be had. Another process may take
 * it before the daemon binds it; tests on one machine rarely collide. */
int its_free_port(void);

/* Sends all len bytes of buf on fd, retrying short sends and EINTR, without
 * SIGPIPE. A failed send fails the running cmocka test. */
void its_send_all(int fd, const char *buf, size_t len);

#endif
