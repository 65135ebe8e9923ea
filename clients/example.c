/* example.c: a small program using libnearest as an outside project would:
 * `#include <nearest.h>`, built with `pkg-config --cflags --libs nearest`.
 * tests/it_libnearest.c installs the library, compiles this file against the
 * installed copy and compares its output with the daemon's own answers.
 *
 *   example HOST PORT
 *
 * It pipelines three requests (all sent before any answer is read), then
 * prints each answer: the three nearest schools with their level, the
 * community of the point and who serves it, and the server's error for an
 * unknown category. Exit status 0, or 1 on a connection failure. */
#include <stdio.h>
#include <stdlib.h>

#include <nearest.h>

static void print_reply(const struct cli_reply *reply) {
    if (reply->kind == CLI_REPLY_ERR) {
        printf("error %s: %s\n", reply->code, reply->message);
        return;
    }
    for (size_t i = 0; i < reply->n_records; i++) {
        struct cli_facility f;
        struct cli_area a;
        if (cli_record_facility(&reply->records[i], &f) == 0) {
            const char *level = cli_facility_attr(&f, "level");
            printf("facility %s %s %.6f %.6f %.1f level=%s\n", f.id, f.name, f.lat_deg,
                   f.lon_deg, f.distance_m, level != NULL ? level : "-");
        } else if (cli_record_area(&reply->records[i], &a) == 0) {
            printf("area %s %s %s served_by=%s\n", a.id, a.kind, a.name,
                   a.served_by != NULL ? a.served_by : "-");
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: example HOST PORT\n");
        return 1;
    }
    struct cli_conn *conn = cli_conn_open(argv[1], atoi(argv[2]), CLI_DEFAULT_TIMEOUT_MS);
    if (conn == NULL || cli_conn_err(conn) != 0) {
        fprintf(stderr, "example: %s\n", conn ? cli_conn_errstr(conn) : "out of memory");
        cli_conn_close(conn);
        return 1;
    }
    const char *nearest[] = {"NEAREST", "school", "36.16", "120.41", "K", "3"};
    const char *serves[] = {"SERVES", "36.16", "120.41", "community"};
    const char *wrong = "NEAREST hospital 36.16 120.41";
    int status = 0;
    if (cli_conn_send(conn, 6, nearest) < 0 || cli_conn_send(conn, 4, serves) < 0 ||
        cli_conn_send_line(conn, wrong, sizeof "NEAREST hospital 36.16 120.41" - 1) < 0) {
        status = 1;
    }
    for (int i = 0; i < 3 && status == 0; i++) {
        struct cli_reply *reply = NULL; /* ours: freed with cli_reply_free() */
        if (cli_conn_read_reply(conn, &reply) < 0) {
            fprintf(stderr, "example: %s\n", cli_conn_errstr(conn));
            status = 1;
            break;
        }
        print_reply(reply);
        cli_reply_free(reply);
    }
    cli_conn_close(conn);
    return status;
}
