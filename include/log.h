/* log.h -- one JSON object per line on stderr: {"ts":...,"level":...,"msg":...}.
 * Thread-safe (one write(2) per line). Knows nothing of HTTP or Redis. */
#ifndef RL_LOG_H
#define RL_LOG_H

enum rl_log_level { RL_LOG_DEBUG, RL_LOG_INFO, RL_LOG_WARN, RL_LOG_ERROR };

void rl_log_set_level(enum rl_log_level l);
void rl_log(enum rl_log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A line with extra members: `fields` is a JSON fragment '"k":v,"k2":v2'
 * the caller built (its strings already escaped). */
void rl_log_fields(enum rl_log_level l, const char *msg, const char *fields);

#define rl_log_info(...)  rl_log(RL_LOG_INFO, __VA_ARGS__)
#define rl_log_warn(...)  rl_log(RL_LOG_WARN, __VA_ARGS__)
#define rl_log_error(...) rl_log(RL_LOG_ERROR, __VA_ARGS__)

#endif
