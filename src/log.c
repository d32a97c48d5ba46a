/* log.c -- JSON lines on stderr, one write(2) per line so threads never
 * interleave. Knows nothing of HTTP or Redis. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum rl_log_level rl_log_level = RL_LOG_INFO;
static const char *const rl_log_names[] = {"debug", "info", "warn", "error"};

void rl_log_set_level(enum rl_log_level l)
{
    rl_log_level = l;
}

static void rl_log_write(enum rl_log_level l, const char *msg, const char *fields);

void rl_log(enum rl_log_level l, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (l < rl_log_level) return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    rl_log_write(l, msg, NULL);
}

void rl_log_fields(enum rl_log_level l, const char *msg, const char *fields)
{
    if (l >= rl_log_level) rl_log_write(l, msg, fields);
}

static void rl_log_write(enum rl_log_level l, const char *msg, const char *fields)
{
    char line[2304], ts[32];
    struct timeval tv;
    struct tm tm;
    size_t o = 0;
    int n;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line, sizeof(line), "{\"ts\":\"%s.%03dZ\",\"level\":\"%s\",\"msg\":\"", ts,
                 (int)(tv.tv_usec / 1000), rl_log_names[l]);
    o = (size_t)n;
    /* JSON-escape the message */
    for (const unsigned char *p = (const unsigned char *)msg; *p && o + 8 < sizeof(line); p++) {
        if (*p == '"' || *p == '\\') {
            line[o++] = '\\';
            line[o++] = (char)*p;
        } else if (*p < 0x20) {
            o += (size_t)snprintf(line + o, sizeof(line) - o, "\\u%04x", *p);
        } else {
            line[o++] = (char)*p;
        }
    }
    if (fields != NULL && o + strlen(fields) + 8 < sizeof(line))
        o += (size_t)snprintf(line + o, sizeof(line) - o, "\",%s", fields);
    else
        line[o++] = '"';
    memcpy(line + o, "}\n", 2);
    o += 2;
    if (write(STDERR_FILENO, line, o) < 0) {
        /* nowhere left to report it */
    }
}
