/* cli_reply.h: libnearest's answers, declared in nearest.h, the library's one
 * public header. This name stays for code written before nearest.h existed. */
#ifndef NEARESTD_CLI_REPLY_H
#define NEARESTD_CLI_REPLY_H

#include "nearest.h"

#endif
