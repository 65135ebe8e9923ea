/* errors.h: the wire error codes of the nearestd protocol.
 *
 * The list lives in errors.def (one row per code); this header only expands
 * it. Lower layers keep their own small enums (GEO_ERR_*, STORE_ERR_*); the
 * command layer maps them to these codes in one place (cmd.c). */
#ifndef NEARESTD_ERRORS_H
#define NEARESTD_ERRORS_H

/* Row numbers of errors.def, 0-based; only used to build enum cmd_err. */
enum cmd_err_row {
#define ERR_DEF(name, word, msg) CMD_ERR_ROW_##name,
#include "errors.def"
#undef ERR_DEF
    CMD_ERR_ROW_COUNT
};

/* A wire error: CMD_ERR_SYNTAX is -1, the next row -2, and so on. */
enum cmd_err {
    CMD_OK = 0,
#define ERR_DEF(name, word, msg) CMD_ERR_##name = -1 - CMD_ERR_ROW_##name,
#include "errors.def"
#undef ERR_DEF
};

#define CMD_ERR_COUNT ((int)CMD_ERR_ROW_COUNT)

/* Returns the wire word of a code ("SYNTAX"), a static string; "INTERNAL"
 * for anything that is not a cmd_err below 0. */
const char *cmd_err_word(int code);

/* Returns the default message of a code, a static string; the INTERNAL
 * message for anything that is not a cmd_err below 0. */
const char *cmd_err_message(int code);

#endif
