/* commands_md.c: prints the command table of commands.def as Markdown.
 *
 * The README's command list is this program's output, pasted between two
 * marker lines; the CTest check readme_commands runs it and fails when the
 * README and the table disagree. Like redis-cli including Redis's
 * commands.def, it expands the same rows with its own macro, so it needs none
 * of the daemon's code. */
#include <stdio.h>

struct command_row {
    const char *usage;
    const char *summary;
    int writes;
};

static const struct command_row rows[] = {
#define CMD_DEF(name, min_args, max_args, handler, writes, usage, summary) \
    {usage, summary, writes},
#include "commands.def"
#undef CMD_DEF
};

/* Prints text with each "|" escaped, so it stays inside one table cell. */
static void put_cell(const char *text) {
    for (const char *p = text; *p; p++) {
        if (*p == '|') {
            putchar('\\');
        }
        putchar(*p);
    }
}

int main(void) {
    printf("| command | what it does |\n|---|---|\n");
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        printf("| `");
        put_cell(rows[i].usage);
        printf("` | ");
        put_cell(rows[i].summary);
        printf("%s |\n", rows[i].writes ? " (a write)" : "");
    }
    return 0;
}
