/* test_http.c -- a tiny blocking HTTP/1.1 client for tests: one request per
 * connection, the whole response read with a 5 s bound. Only 127.0.0.1. */
#include "test_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define RL_TEST_HTTP_TIMEOUT_MS 5000

static int rl_test_http_connect(uint16_t port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int rl_test_http_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read until the peer closes (we sent Connection: close). */
static char *rl_test_http_read_all(int fd, size_t *len)
{
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap + 1);

    while (buf != NULL) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t r;

        if (poll(&p, 1, RL_TEST_HTTP_TIMEOUT_MS) <= 0)
            break;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (nb == NULL)
                break;
            buf = nb;
            cap *= 2;
        }
        r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    if (buf != NULL)
        buf[n] = '\0';
    *len = n;
    return buf;
}

static int rl_test_http_parse(char *raw, size_t len, struct rl_test_response *res)
{
    char *end = strstr(raw, "\r\n\r\n"), *line, *save = NULL;
    const char *cl;

    if (end == NULL || sscanf(raw, "HTTP/1.%*d %d", &res->status) != 1)
        return -1;
    *end = '\0';
    line = strtok_r(raw, "\r\n", &save); /* status line */
    while ((line = strtok_r(NULL, "\r\n", &save)) != NULL) {
        char *colon = strchr(line, ':');
        if (colon == NULL || res->nheaders == RL_TEST_HTTP_MAX_HEADERS)
            continue;
        *colon = '\0';
        snprintf(res->headers[res->nheaders].name, sizeof(res->headers[0].name), "%s", line);
        colon++;
        while (*colon == ' ')
            colon++;
        snprintf(res->headers[res->nheaders].value, sizeof(res->headers[0].value), "%s", colon);
        res->nheaders++;
    }
    res->body_len = len - (size_t)(end + 4 - raw);
    if ((cl = rl_test_header(res, "Content-Length")) != NULL &&
        (size_t)strtoul(cl, NULL, 10) != res->body_len)
        return -1; /* short read */
    res->body = malloc(res->body_len + 1);
    if (res->body == NULL)
        return -1;
    memcpy(res->body, end + 4, res->body_len);
    res->body[res->body_len] = '\0';
    return 0;
}

int rl_test_http(uint16_t port, const char *method, const char *path, const char *headers,
                 const char *body, size_t body_len, struct rl_test_response *res)
{
    char head[16384];
    char *raw;
    size_t len;
    int fd, n, rc;

    memset(res, 0, sizeof(*res));
    n = snprintf(head, sizeof(head),
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s"
                 "Content-Length: %zu\r\n\r\n",
                 method, path, headers ? headers : "", body ? body_len : 0);
    if (n < 0 || (size_t)n >= sizeof(head))
        return -1;
    if ((fd = rl_test_http_connect(port)) < 0)
        return -1;
    if (rl_test_http_write_all(fd, head, (size_t)n) != 0 ||
        (body && rl_test_http_write_all(fd, body, body_len) != 0)) {
        /* the server may answer early (413) and close: still read */
    }
    raw = rl_test_http_read_all(fd, &len);
    close(fd);
    if (raw == NULL)
        return -1;
    rc = rl_test_http_parse(raw, len, res);
    free(raw);
    if (rc != 0) {
        free(res->body);
        memset(res, 0, sizeof(*res));
    }
    return rc;
}

const char *rl_test_header(const struct rl_test_response *res, const char *name)
{
    for (size_t i = 0; i < res->nheaders; i++)
        if (strcasecmp(res->headers[i].name, name) == 0)
            return res->headers[i].value;
    return NULL;
}

int rl_test_header_count(const struct rl_test_response *res, const char *name)
{
    int n = 0;

    for (size_t i = 0; i < res->nheaders; i++)
        n += strcasecmp(res->headers[i].name, name) == 0;
    return n;
}

void rl_test_response_free(struct rl_test_response *res)
{
    free(res->body);
    res->body = NULL;
}
