/* test_http.h -- a tiny blocking HTTP/1.1 client for tests: one request per
 * connection (Connection: close), full response read with a time bound. */
#ifndef RL_TEST_HTTP_H
#define RL_TEST_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define RL_TEST_HTTP_MAX_HEADERS 64

struct rl_test_response {
    int status; /* 0 when no response came (connection refused, timeout) */
    size_t nheaders;
    struct {
        char name[64];
        char value[2048];
    } headers[RL_TEST_HTTP_MAX_HEADERS];
    char *body; /* NUL-terminated, malloc'd; rl_test_response_free */
    size_t body_len;
};

/* Send `method path` to 127.0.0.1:port with extra header lines `headers`
 * ("Name: value\r\n" each, may be NULL) and body (may be NULL).
 * Returns 0 when a full response was read, negative otherwise (status 0). */
int rl_test_http(uint16_t port, const char *method, const char *path, const char *headers,
                 const char *body, size_t body_len, struct rl_test_response *res);

/* The value of a header (case-insensitive name), or NULL. How many times it appears. */
const char *rl_test_header(const struct rl_test_response *res, const char *name);
int rl_test_header_count(const struct rl_test_response *res, const char *name);

void rl_test_response_free(struct rl_test_response *res);

#endif
