/* http_support.c: see http_support.h. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "http_support.h"

struct hs_state {
    struct hs_response *r;
    bool head;
    bool in_value;
    bool done;
};

/* Appends at[0..n-1] to the malloc'ed string *s. */
static int append(char **s, size_t *len, const char *at, size_t n) {
    char *p = realloc(*s, *len + n + 1);
    if (!p) {
        return -1;
    }
    memcpy(p + *len, at, n);
    *len += n;
    p[*len] = '\0';
    *s = p;
    return 0;
}

static int on_field(http_parser *p, const char *at, size_t n) {
    struct hs_state *st = p->data;
    struct hs_response *r = st->r;
    if (st->in_value || r->n_headers == 0) {
        if (r->n_headers == HS_MAX_HEADERS) {
            return -1;
        }
        r->n_headers++;
        st->in_value = false;
    }
    size_t len = r->names[r->n_headers - 1] ? strlen(r->names[r->n_headers - 1]) : 0;
    return append(&r->names[r->n_headers - 1], &len, at, n);
}

static int on_value(http_parser *p, const char *at, size_t n) {
    struct hs_state *st = p->data;
    struct hs_response *r = st->r;
    st->in_value = true;
    size_t len = r->values[r->n_headers - 1] ? strlen(r->values[r->n_headers - 1]) : 0;
    return append(&r->values[r->n_headers - 1], &len, at, n);
}

static int on_headers_complete(http_parser *p) {
    struct hs_state *st = p->data;
    return st->head ? 1 : 0; /* 1: this response has no body */
}

static int on_body(http_parser *p, const char *at, size_t n) {
    struct hs_state *st = p->data;
    return append(&st->r->body, &st->r->body_len, at, n);
}

static int on_complete(http_parser *p) {
    struct hs_state *st = p->data;
    st->done = true;
    st->r->status = (int)p->status_code;
    st->r->keep_alive = http_should_keep_alive(p);
    http_parser_pause(p, 1);
    return 0;
}

void hs_response_free(struct hs_response *r) {
    for (size_t i = 0; i < HS_MAX_HEADERS; i++) {
        free(r->names[i]);
        free(r->values[i]);
    }
    free(r->body);
    memset(r, 0, sizeof *r);
}

long hs_parse(const char *data, size_t len, bool head, struct hs_response *out) {
    static const http_parser_settings settings = {
        .on_header_field = on_field,
        .on_header_value = on_value,
        .on_headers_complete = on_headers_complete,
        .on_body = on_body,
        .on_message_complete = on_complete,
    };
    memset(out, 0, sizeof *out);
    struct hs_state st = {.r = out, .head = head};
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &st;
    size_t used = len > 0 ? http_parser_execute(&p, &settings, data, len) : 0;
    enum http_errno e = HTTP_PARSER_ERRNO(&p);
    if (e != HPE_OK && e != HPE_PAUSED) {
        hs_response_free(out);
        return -1;
    }
    if (!st.done) {
        hs_response_free(out);
        return 0;
    }
    if (!out->body) {
        size_t zero = 0;
        append(&out->body, &zero, "", 0);
    }
    return (long)used;
}

const char *hs_header(const struct hs_response *r, const char *name) {
    for (size_t i = 0; i < r->n_headers; i++) {
        if (r->names[i] && strcasecmp(r->names[i], name) == 0) {
            return r->values[i] ? r->values[i] : "";
        }
    }
    return NULL;
}
