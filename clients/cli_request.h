/* cli_request.h: libnearest's request building, declared in nearest.h, the library's one
 * public header. This name stays for code written before nearest.h existed. */
#ifndef NEARESTD_CLI_REQUEST_H
#define NEARESTD_CLI_REQUEST_H

#include "nearest.h"

#endif
