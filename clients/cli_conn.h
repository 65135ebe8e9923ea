/* cli_conn.h: libnearest's connection, declared in nearest.h, the library's one
 * public header. This name stays for code written before nearest.h existed. */
#ifndef NEARESTD_CLI_CONN_H
#define NEARESTD_CLI_CONN_H

#include "nearest.h"

#endif
