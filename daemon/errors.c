/* errors.c: the code-to-word and code-to-message tables, built from errors.def. */
#include "errors.h"

static const char *const err_words[] = {
#define ERR_DEF(name, word, msg) word,
#include "errors.def"
#undef ERR_DEF
};

static const char *const err_messages[] = {
#define ERR_DEF(name, word, msg) msg,
#include "errors.def"
#undef ERR_DEF
};

static int row_of(int code) {
    int row = -1 - code;
    return row >= 0 && row < CMD_ERR_COUNT ? row : CMD_ERR_ROW_INTERNAL;
}

const char *cmd_err_word(int code) {
    return err_words[row_of(code)];
}

const char *cmd_err_message(int code) {
    return err_messages[row_of(code)];
}
