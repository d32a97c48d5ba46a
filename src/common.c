/* common.c -- the error record, status and type names, enum names, clocks.
 * No I/O. */
#include "rl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int rl_error_set(struct rl_error *err, int code, int http_status, const char *path, const char *fmt,
                 ...)
{
    va_list ap;

    if (err == NULL) return code;
    err->code = code;
    err->http_status = http_status;
    snprintf(err->path, sizeof(err->path), "%s", path ? path : "");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return code;
}

const char *rl_error_type(int http_status)
{
    switch (http_status) {
    case 400:
        return "validation_error";
    case 401:
        return "authentication_error";
    case 403:
        return "authorization_error";
    case 404:
        return "not_found";
    case 405:
        return "method_not_allowed";
    case 409:
        return "conflict_error";
    case 413:
        return "payload_too_large";
    case 429:
        return "rate_limit_error";
    case 503:
        return "service_unavailable";
    case 504:
        return "timeout_error";
    default:
        return "internal_error";
    }
}

const char *rl_status_text(int http_status)
{
    switch (http_status) {
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 429:
        return "Too Many Requests";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Internal Server Error";
    }
}

static const char *const rl_scope_names[RL_SCOPE_COUNT] = {"caller", "key", "org", "ip"};
static const char *const rl_envelope_names[RL_ENV_COUNT] = {"problem", "error", "typed",
                                                            "simple",  "flat",  "ws"};

static int rl_name_index(const char *const *names, int n, const char *s, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0) return i;
    return -1;
}

const char *rl_scope_name(enum rl_scope s)
{
    return rl_scope_names[s];
}

int rl_scope_from_name(const char *s, size_t len)
{
    return rl_name_index(rl_scope_names, RL_SCOPE_COUNT, s, len);
}

const char *rl_envelope_name(enum rl_envelope e)
{
    return rl_envelope_names[e];
}

int rl_envelope_from_name(const char *s, size_t len)
{
    return rl_name_index(rl_envelope_names, RL_ENV_COUNT, s, len);
}

uint64_t rl_fnv1a(uint64_t h, const void *p, size_t len)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

int64_t rl_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t rl_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t rl_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
