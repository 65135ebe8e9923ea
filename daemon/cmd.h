/* cmd.h: the command table, the dispatcher and the handlers.
 *
 * A request line arrives here already cut out of the byte stream by proto_;
 * cmd_execute() tokenizes it, finds the command in the table built from
 * commands.def, checks its arity, and runs its handler, which writes the
 * answer to a struct reply. Nothing here sees a socket, so tests drive the
 * whole command layer with strings (tests/test_commands.c).
 *
 * Every function runs on the event-loop thread and may read the catalogue
 * directly, except cmd_writes_run(). Writes leave the loop: a write handler
 * validates the request and leaves a struct cmd_write in the session
 * (cmd_execute() returns CMD_QUEUED); the server collects the writes of all
 * connections and hands each group to cmd_writes_run() on a worker thread,
 * which commits it to the store in one transaction (one fsync for the
 * group); back on the loop thread, cmd_write_finish() applies each committed
 * change to the catalogue and answers. */
#ifndef NEARESTD_CMD_H
#define NEARESTD_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "errors.h"
#include "geo_crs.h"
#include "reply.h"

#define CMD_DEFAULT_K 5           /* NEAREST without K */
#define CMD_MAX_K 1000            /* largest K of NEAREST and LIMIT of RADIUS */
#define CMD_DEFAULT_LIMIT 100     /* RADIUS without LIMIT */
#define CMD_MAX_WHERE 8           /* WHERE conditions in one query */
#define CMD_QUEUED 2              /* cmd_execute(): a write was queued, its answer comes later */
#define CMD_BATCHED 3             /* cmd_execute(): a query waits in env->batch (cmd_batch_run()) */
#define CMD_BATCH_MAX 64          /* queries one batch holds */
#define CMD_BATCH_K 32            /* a larger K or LIMIT runs at once, not in a batch */
#define CMD_MAX_COMMANDS 32       /* rows commands.def may have (per-command counters) */

/* Counters the daemon shows in STATS. The server owns them and counts
 * connections and write groups; cmd_execute() counts requests and errors,
 * cmd_write_finish() writes. The server also counts requests and errors by
 * command and the database's size, so without a server those read 0. */
struct cmd_stats {
    uint64_t requests;            /* request lines executed */
    uint64_t errors;              /* of which answered ERR */
    uint64_t writes;              /* PUT and DEL sent to the store */
    uint64_t write_groups;        /* group commits that carried them */
    uint64_t connections_total;   /* accepted since start */
    uint64_t connections_open;
    int64_t started_unix;         /* seconds since the epoch at start */
    uint64_t requests_by_cmd[CMD_MAX_COMMANDS]; /* by commands.def row: answered requests */
    uint64_t errors_by_cmd[CMD_MAX_COMMANDS];   /* of which ERR (a write's after its commit) */
    uint64_t db_bytes;            /* database file plus its WAL, after the last commit */
    uint64_t batches;             /* cmd_batch_run() calls that ran queries */
    uint64_t batched_queries;     /* the queries they ran */
};

/* What every request may use. All borrowed; the server owns them. */
struct cmd_env {
    struct catalog *catalog;
    struct cmd_stats *stats;      /* the counters this thread's requests add to */
    /* When several threads serve requests, each with its own counters: fills
     * *out with the totals STATS shows (NULL: STATS shows *stats). */
    void (*stats_total)(void *arg, struct cmd_stats *out);
    void *stats_total_arg;
    /* When set, NEAREST and RADIUS wait here instead of running, if there is
     * room and they have no WHERE and a K or LIMIT up to CMD_BATCH_K: the
     * dispatcher returns CMD_BATCHED and appends nothing to `out` yet. The
     * caller then runs every waiting query at once with cmd_batch_run(),
     * which answers each in its `out`, and until then must not append to
     * those replies, free them, or change the argv the queries came from.
     * NULL runs every request at once. */
    struct cmd_batch *batch;
};

/* Queries waiting to run together (cmd_env.batch). Their index searches run
 * side by side (geo_index_nearest_batch()), and the facilities of all their
 * hits are fetched from memory together, so that one query's cache misses
 * overlap with the others' instead of following them: at 10^6 facilities and
 * more, waiting for memory is most of a NEAREST's time. */
struct cmd_batch;

/* Returns an empty batch, or NULL when out of memory. */
struct cmd_batch *cmd_batch_new(void);

/* Frees a batch; its waiting queries, if any, are dropped unanswered. NULL
 * is a no-op. */
void cmd_batch_free(struct cmd_batch *b);

/* The number of queries waiting in b. */
size_t cmd_batch_count(const struct cmd_batch *b);

/* Runs the waiting queries and answers each in the `out` it was dispatched
 * with, in the format it would have been answered in then. rcs[i] (room for
 * cmd_batch_count() entries; may be NULL) gets what cmd_dispatch() would
 * have returned for the i-th query to wait: 0 or the cmd_err it answered
 * (counted in env->stats as cmd_dispatch() counts it). Leaves b empty. */
void cmd_batch_run(const struct cmd_env *env, struct cmd_batch *b, int *rcs);

enum cmd_write_kind {
    CMD_WRITE_PUT = 0,            /* insert or replace rec */
    CMD_WRITE_DEL = 1,            /* delete rec.id */
    CMD_WRITE_SET = 2,            /* change the fields of rec.id that are set in rec */
};

/* A validated write waiting for the group commit. Owned by whoever holds it:
 * the session right after the handler, then the server, which frees it with
 * cmd_write_free() after cmd_write_finish(). */
struct cmd_write {
    enum cmd_write_kind kind;
    struct store_facility rec;    /* DEL: only rec.id is set; strings point into text.
                                   * SET: the changes (NULL string, category -1 and
                                   * NAN position mean unchanged) until
                                   * cmd_writes_run() replaces them with the whole
                                   * new record */
    char *text;                   /* owns every string of rec */
    int result;                   /* set by cmd_writes_run(): 0 or a store_err */
    char message[256];            /* the store's message when result != 0 */
    void *owner;                  /* the server's connection; NULL once it is gone */
    struct cmd_write *next;       /* the server's queue */
};

/* Per-connection state. Start it zeroed (cmd_session_init()). */
struct cmd_session {
    enum geo_crs crs;             /* coordinates in and out; GEO_CRS_WGS84 by default */
    enum reply_format format;     /* of the answers; REPLY_TEXT by default */
    bool quit;                    /* set by QUIT: close once the answer is sent */
    struct cmd_write *pending;    /* set by a write handler, taken by the server */
};

struct cmd_call;
typedef int (*cmd_handler_fn)(struct cmd_call *call);

/* One row of commands.def. */
struct cmd_spec {
    const char *name;             /* upper case */
    int min_args;                 /* arguments after the name */
    int max_args;
    cmd_handler_fn handler;
    bool writes;                  /* changes the catalogue: answered after the group commit */
    const char *usage;
    const char *summary;
};

/* A request being executed, as its handler sees it. */
struct cmd_call {
    const struct cmd_env *env;
    struct cmd_session *session;
    const struct cmd_spec *spec;
    size_t argc;                  /* argv[0] is the command name as typed */
    char **argv;
    struct reply *out;
};

/* Sets a session to its defaults. */
void cmd_session_init(struct cmd_session *s);

/* Returns the command table (static) and its length in *n. */
const struct cmd_spec *cmd_table(size_t *n);

/* Returns the command called `name` (ASCII case ignored), or NULL. */
const struct cmd_spec *cmd_lookup(const char *name);

/* Executes one request line: line[0..len-1], NUL-terminated, modified in
 * place. Appends exactly one answer to `out`, except for a blank line, which
 * gets none, and a query that waits in env->batch, whose answer
 * cmd_batch_run() appends. Returns 0, 1 for a blank line, CMD_BATCHED, or the
 * cmd_err it answered. */
int cmd_execute(const struct cmd_env *env, struct cmd_session *session, char *line,
                size_t len, struct reply *out);

/* Answers ERR SYNTAX for a request line that proto_split() refused, and
 * counts it, as cmd_execute() does for such a line (for a server that splits
 * lines itself and dispatches them with cmd_dispatch()). Returns the cmd_err. */
int cmd_answer_split_error(const struct cmd_env *env, struct cmd_session *session,
                           struct reply *out);

/* Runs an already tokenized request (argv[0] is the command). Answers like
 * cmd_execute(). argc must be at least 1. */
int cmd_dispatch(const struct cmd_env *env, struct cmd_session *session, size_t argc,
                 char **argv, struct reply *out);

/* cmd_dispatch() of a request whose command the caller has looked up already:
 * `spec` must be cmd_lookup(argv[0]) (NULL answers ERR UNKNOWN). The server's
 * write gate looks the command up first, and this spares the second lookup. */
int cmd_dispatch_spec(const struct cmd_env *env, struct cmd_session *session,
                      const struct cmd_spec *spec, size_t argc, char **argv,
                      struct reply *out);

/* Runs a group of writes (a list linked by `next`) against the store in one
 * batch: each write's result and message are set; if the commit fails, every
 * write of the group gets the commit's error. Safe on a worker thread as long
 * as nothing else uses the store meanwhile. Returns 0 or the commit's error. */
int cmd_writes_run(struct store *st, struct cmd_write *list);

/* On the loop thread after cmd_writes_run(): applies a committed write to the
 * catalogue, then, if `out` is not NULL, answers it there in the session's
 * format and coordinate system (PUT: "OK 1" and the record; DEL: "OK 0"; or
 * the ERR of a failed write). session and out are NULL when the client has
 * gone; the catalogue is updated all the same. */
void cmd_write_finish(const struct cmd_env *env, const struct cmd_session *session,
                      const struct cmd_write *w, struct reply *out);

/* Frees a write. NULL is a no-op. */
void cmd_write_free(struct cmd_write *w);

/* Handlers, one per commands.def row; called only through the dispatcher. */
#define CMD_DEF(name, min, max, handler, writes, usage, summary) \
    int handler(struct cmd_call *call);
#include "commands.def"
#undef CMD_DEF

#endif
