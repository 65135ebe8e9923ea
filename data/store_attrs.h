/* store_attrs.h: what a valid record looks like, shared by the store (which
 * refuses bad records) and the importer/exporter (which turn CSV cells into
 * typed JSON attributes and back). Private to data/.
 *
 * The attributes nearestd knows per category, with their types, are listed in
 * store_attrs.c and in docs/IMPORT.md; attributes it does not know are kept
 * as they come. */
#ifndef NEARESTD_STORE_ATTRS_H
#define NEARESTD_STORE_ATTRS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Longest text store_format_double() writes, with its NUL. */
#define STORE_DOUBLE_TEXT_MAX 32

/* Writes the printf-style message to err[0..err_len-1], cut to fit and
 * NUL-terminated; does nothing when err is NULL or err_len is 0. */
void store_set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* True when id is 1..STORE_ID_MAX_BYTES bytes of [A-Za-z0-9_.:-]. */
bool store_id_is_valid(const char *id);

/* True when s is well-formed UTF-8 (no overlongs, surrogates or stray bytes). */
bool store_utf8_is_valid(const char *s);

/* True when text is opening hours that data/hours.h accepts; otherwise writes
 * the reason (with the byte offset) to err. */
bool store_hours_check(const char *text, char *err, size_t err_len);

/* Parses attrs text (NULL or "" reads as "{}") and checks every attribute
 * known for `category` (-1: none known). On success returns 0 and *out is a
 * new reference, to json_decref(); otherwise STORE_ERR_ARG and
 * "attribute: reason" in err. */
int store_attrs_parse(int category, const char *text, json_t **out, char *err,
                      size_t err_len);

/* Converts the CSV cell `text` of attribute `name` to JSON: by the known type
 * of the attribute (integer, number, boolean, text, id array split on ';'),
 * or for an unknown attribute true/false -> boolean, a number -> number,
 * anything else -> text. An empty cell gives *out NULL (attribute absent),
 * except for a known text attribute of `category`, where it is "". Returns 0
 * with *out a new reference (or NULL), or
 * STORE_ERR_ARG with the reason (e.g. "bad number 'x'") in err. */
int store_attr_from_text(int category, const char *name, const char *text, json_t **out,
                         char *err, size_t err_len);

/* Writes the CSV cell for attribute value v into buf (the inverse of
 * store_attr_from_text: arrays joined with ';'). Returns 0, or STORE_ERR_NOMEM.
 * *buf is malloc'ed; the caller frees it. */
int store_attr_to_text(const json_t *v, char **buf);

/* Parses a whole string as a finite decimal number. Returns 0 or STORE_ERR_ARG. */
int store_parse_double(const char *text, double *out);

/* Writes the shortest text that reads back as exactly x ("%.17g" at worst). */
void store_format_double(double x, char out[STORE_DOUBLE_TEXT_MAX]);

#endif
