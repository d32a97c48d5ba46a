/* store_redis.c -- bucket decisions in Redis: one Lua script per batch of up
 * to RL_REDIS_BATCH_MAX decisions (EVALSHA, reloaded on NOSCRIPT), pipelined
 * on one hiredis async connection driven by its own thread and epoll loop,
 * each decision with its own deadline. Knows nothing of HTTP. Time comes from
 * Redis TIME, never the local clock. Invariant: only the loop thread touches
 * the redisAsyncContext; other threads only append to the queue. */
#include "log.h"
#include "store.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define RL_REDIS_BATCH_MAX    64    /* decisions per EVALSHA */
#define RL_REDIS_INFLIGHT_MAX 4     /* EVALSHA calls in flight while jobs queue up */
#define RL_REDIS_QUEUE_MAX    10000 /* queued + in-flight jobs; beyond: RL_EUNAVAIL */
#define RL_REDIS_CONNECT_MS   1000  /* connect + AUTH + SELECT + SCRIPT LOAD */
#define RL_REDIS_BACKOFF_MIN  50    /* ms before the first reconnect, doubling */
#define RL_REDIS_BACKOFF_MAX  1000
#define RL_REDIS_STUCK_MIN_MS 1000 /* a call older than max(this, 20*timeout): stuck */
#define RL_REDIS_IDEM_MAX     (64 + 5 + 17 + 3 * RL_ID_MAX + 1)

/*-----------------------------------------------------------------------------
 * The script
 *---------------------------------------------------------------------------*/

/* A line-by-line copy of bucket.c (rl_bucket_debt, rl_bucket_eval,
 * rl_bucket_ttl_ms) plus the store semantics of store.h, for a whole batch.
 * Lua numbers are doubles, exact below 2^53; config keeps burst * window_ms
 * below 2^52, so every tick count is exact, and idiv corrects math.floor where
 * the double quotient rounds across an integer.
 *
 * ARGV[1]  number of decisions; then per decision:
 *          op (0 check, 1 peek, 2 reset), nbuckets, cost, has_idem (0/1),
 *          [fingerprint (decimal string), idem_ttl_ms]  when has_idem,
 *          then per bucket: limit, burst, window_ms, shadow (0/1).
 * KEYS     per decision: its bucket keys in order, then its idempotency key
 *          when has_idem.
 * Reply    a flat array of integers: now_ms, then per decision: status
 *          (0 ok, 1 replayed, 2 conflict), allowed (0/1), then per bucket:
 *          allowed (0/1), remaining, reset_ms, retry_ms.
 * A bucket is the string "TATMS:FRAC:LIMIT:WINDOWMS" (SET PX until it is full
 * again; DEL when full): strings are the smallest encoding for the many idle
 * buckets; LIMIT and WINDOWMS are the shape it was written under (bucket.h).
 * An idempotency record is "FINGERPRINT,allowed,a1,r1,s1,t1,..." (SET PX). */
static const char rl_redis_script[] =
    "local function idiv(a, b)\n"
    "  local q = math.floor(a / b)\n"
    "  local r = a - q * b\n"
    "  if r < 0 then q = q - 1; r = r + b elseif r >= b then q = q + 1; r = r - b end\n"
    "  return q, r\n"
    "end\n"
    "-- st = {tat, frac, limit, window}: limit/window 0 = the current shape\n"
    "local function debt(limit, burst, window, st, now)\n"
    "  local tat, frac = st[1], st[2]\n"
    "  local ol, ow = st[3], st[4]\n"
    "  if ol <= 0 then ol = limit end\n"
    "  if ow <= 0 then ow = window end\n"
    "  local cap = burst * window\n"
    "  if frac >= ol then frac = ol - 1 end\n"
    "  if tat < now or (tat == now and frac <= 0) then return 0 end\n"
    "  if tat - now > 4503599627370496 / ol then return cap end\n"
    "  local d = (tat - now) * ol + frac\n"
    "  if ol == limit and ow == window then\n"
    "    if d < cap then return d end\n"
    "    return cap\n"
    "  end\n"
    "  local q, r = idiv(d, ow)\n"
    "  if q >= burst then return cap end\n"
    "  d = q * window + math.ceil(r * window / ow)\n"
    "  if d < cap then return d end\n"
    "  return cap\n"
    "end\n"
    "-- allowed, remaining, reset_ms, retry_ms, next tat_ms, next frac\n"
    "local function eval(limit, burst, window, st, now, cost)\n"
    "  local cap = burst * window\n"
    "  local d = debt(limit, burst, window, st, now)\n"
    "  local add = cost * window\n"
    "  local after = d + add\n"
    "  local allowed, retry, left = 1, 0, 0\n"
    "  if after <= cap or cost == 0 then\n"
    "    if cap > after then left = cap - after end\n"
    "  else\n"
    "    allowed = 0\n"
    "    after = d\n"
    "    if cap > d then left = cap - d end\n"
    "    retry = idiv(d + add - cap + limit - 1, limit)\n"
    "    if retry < 1 then retry = 1 end\n"
    "  end\n"
    "  local remaining = idiv(left, window)\n"
    "  local q, r = idiv(after, limit)\n"
    "  local ntat, nfrac = now + q, r\n"
    "  if after == 0 then ntat, nfrac = 0, 0 end\n"
    "  local reset = now + idiv(after + limit - 1, limit)\n"
    "  return allowed, remaining, reset, retry, ntat, nfrac\n"
    "end\n"
    "local function load(key)\n"
    "  local v = redis.call('GET', key)\n"
    "  if not v then return {0, 0, 0, 0} end\n"
    "  local t, f, l, w = string.match(v, '^(%d+):(%d+):(%d+):(%d+)$')\n"
    "  if not t then return {0, 0, 0, 0} end\n"
    "  return {tonumber(t), tonumber(f), tonumber(l), tonumber(w)}\n"
    "end\n"
    "-- ttl = rl_bucket_ttl_ms of the new state = reset_ms - now\n"
    "local function save(x, tat, frac, ttl)\n"
    "  if ttl <= 0 then redis.call('DEL', x.key)\n"
    "  else redis.call('SET', x.key, string.format('%d:%d:%d:%d', tat, frac, x.limit, x.window),\n"
    "                  'PX', ttl) end\n"
    "end\n"
    "-- one check/peek/reset over its buckets b: allowed, {{a, rem, reset, retry}...}\n"
    "local function decide(op, cost, b, now)\n"
    "  local res, cur, allowed = {}, {}, 1\n"
    "  if op == 2 then\n"
    "    for i, x in ipairs(b) do redis.call('DEL', x.key); res[i] = {1, x.burst, now, 0} end\n"
    "    return 1, res\n"
    "  end\n"
    "  if op == 1 then cost = 0 end\n"
    "  for i, x in ipairs(b) do\n"
    "    cur[i] = load(x.key)\n"
    "    res[i] = {eval(x.limit, x.burst, x.window, cur[i], now, cost)}\n"
    "    if res[i][1] == 0 and not x.shadow then allowed = 0 end\n"
    "  end\n"
    "  for i, x in ipairs(b) do\n"
    "    local r = res[i]\n"
    "    if cost > 0 and r[1] == 1 and allowed == 1 then\n"
    "      save(x, r[5], r[6], r[3] - now)\n"
    "    elseif cost > 0 and r[1] == 1 then -- had the tokens, not charged\n"
    "      local _, rem, reset = eval(x.limit, x.burst, x.window, cur[i], now, 0)\n"
    "      r[2], r[3] = rem, reset\n"
    "    end\n"
    "  end\n"
    "  return allowed, res\n"
    "end\n"
    "local function push(out, allowed, res)\n"
    "  out[#out + 1] = allowed\n"
    "  for _, r in ipairs(res) do\n"
    "    for j = 1, 4 do out[#out + 1] = r[j] end\n"
    "  end\n"
    "end\n"
    "-- a live record: replay it (status 1) or refuse it (status 2); nil if none\n"
    "local function replay(ikey, fp, nb, out)\n"
    "  local rec = redis.call('GET', ikey)\n"
    "  if not rec then return nil end\n"
    "  local f = {}\n"
    "  for v in string.gmatch(rec, '[^,]+') do f[#f + 1] = v end\n"
    "  if f[1] ~= fp or #f ~= 2 + 4 * nb then\n"
    "    out[#out + 1] = 2\n"
    "    for _ = 1, 1 + 4 * nb do out[#out + 1] = 0 end\n"
    "    return true\n"
    "  end\n"
    "  out[#out + 1] = 1\n"
    "  for j = 2, #f do out[#out + 1] = tonumber(f[j]) end\n"
    "  return true\n"
    "end\n"
    "local function record(ikey, fp, ttl, allowed, res)\n"
    "  local f = {fp, string.format('%d', allowed)}\n"
    "  for _, r in ipairs(res) do\n"
    "    for j = 1, 4 do f[#f + 1] = string.format('%d', r[j]) end\n"
    "  end\n"
    "  redis.call('SET', ikey, table.concat(f, ','), 'PX', ttl)\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + idiv(tonumber(t[2]), 1000)\n"
    "local out = {now}\n"
    "local a, k = 2, 1\n"
    "for _ = 1, tonumber(ARGV[1]) do\n"
    "  local op, nb, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])\n"
    "  local idem, fp, ittl, ikey = ARGV[a + 3] == '1', nil, 0, nil\n"
    "  a = a + 4\n"
    "  if idem then fp, ittl = ARGV[a], tonumber(ARGV[a + 1]); a = a + 2 end\n"
    "  local b = {}\n"
    "  for i = 1, nb do\n"
    "    b[i] = {key = KEYS[k], limit = tonumber(ARGV[a]), burst = tonumber(ARGV[a + 1]),\n"
    "            window = tonumber(ARGV[a + 2]), shadow = ARGV[a + 3] == '1'}\n"
    "    a, k = a + 4, k + 1\n"
    "  end\n"
    "  if idem then ikey = KEYS[k]; k = k + 1 end\n"
    "  if not (idem and replay(ikey, fp, nb, out)) then\n"
    "    local allowed, res = decide(op, cost, b, now)\n"
    "    out[#out + 1] = 0\n"
    "    push(out, allowed, res)\n"
    "    if idem then record(ikey, fp, ittl, allowed, res) end\n"
    "  end\n"
    "end\n"
    "return out\n";

/*-----------------------------------------------------------------------------
 * The store
 *---------------------------------------------------------------------------*/

enum rl_redis_state { RL_REDIS_DOWN, RL_REDIS_CONNECTING, RL_REDIS_READY };

struct rl_store_redis;

/* One EVALSHA call: its jobs, in ARGV order. A slot is NULL once its job got
 * its answer elsewhere (deadline); nb keeps the reply layout for it. */
struct rl_redis_batch {
    struct rl_redis_batch *prev, *next; /* the in-flight list, oldest first */
    struct rl_store_redis *s;
    int64_t sent_ms; /* monotonic */
    bool retried;    /* resent with EVAL after NOSCRIPT */
    size_t njobs;
    struct rl_job *jobs[RL_REDIS_BATCH_MAX];
    size_t nb[RL_REDIS_BATCH_MAX];
};

/* The hiredis <-> epoll adapter's state for the one live connection. */
struct rl_redis_ev {
    struct rl_store_redis *s;
    int fd;
    uint64_t gen; /* epoll data: tells this connection's events from a dead one's */
    bool reading, writing, added;
};

struct rl_store_redis {
    struct rl_store base; /* first: a struct rl_store * is one of these */

    /* copied from the config */
    char host[256];
    int port;
    char *unix_path, *user, *password;
    char name[300]; /* "host:port" or the socket path, for the log */
    int db;
    int timeout_ms;
    int64_t stuck_ms;

    /* the loop thread's own */
    pthread_t thread;
    int epfd, evfd;
    atomic_bool stop;
    redisAsyncContext *ac; /* NULL while there is no connection */
    struct rl_redis_ev ev;
    uint64_t gens;
    int64_t connect_deadline, reconnect_at, backoff; /* monotonic ms */
    bool drop; /* a callback asks the loop to drop the connection */
    bool logged_down;
    char sha[41];
    struct rl_redis_batch *first, *last; /* in flight */
    int inflight;

    /* shared with the submitting threads, under lock */
    pthread_mutex_t lock;
    atomic_int state; /* written under lock, by the loop thread */
    bool closing;
    bool joined;                /* rl_redis_stop has (or is) joining the loop thread */
    struct rl_job *head, *tail; /* the queue, in deadline order */
    atomic_int pending;         /* queued + in-flight jobs */
};

static int rl_redis_submit(struct rl_store *s, struct rl_job *job);
static bool rl_redis_ready(struct rl_store *s);
static void rl_redis_stop(struct rl_store *s);
static void rl_redis_close(struct rl_store *s);

static const struct rl_store_ops rl_redis_ops = {"redis", rl_redis_submit, rl_redis_ready,
                                                 rl_redis_stop, rl_redis_close};

static void rl_redis_connect(struct rl_store_redis *s);
static int rl_redis_send(struct rl_store_redis *s, struct rl_redis_batch *b, bool full);

/* Give job its final status (not RL_OK) and hand it back. The job may be
 * freed by its submitter as soon as done() runs: nothing touches it after. */
static void rl_redis_finish(struct rl_store_redis *s, struct rl_job *job, int status)
{
    memset(&job->result, 0, sizeof(job->result));
    job->result.status = status;
    atomic_fetch_sub(&s->pending, 1);
    job->done(job);
}

/* Finish a list of jobs linked through job->next. */
static void rl_redis_finish_list(struct rl_store_redis *s, struct rl_job *list, int status)
{
    while (list != NULL) {
        struct rl_job *next = list->next;

        rl_redis_finish(s, list, status);
        list = next;
    }
}

/*-----------------------------------------------------------------------------
 * The epoll adapter for hiredis (shaped like hiredis/adapters/ae.h)
 *---------------------------------------------------------------------------*/

static void rl_redis_ev_update(struct rl_redis_ev *e)
{
    struct epoll_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.events = (e->reading ? EPOLLIN : 0) | (e->writing ? EPOLLOUT : 0);
    ev.data.u64 = e->gen;
    if (ev.events == 0) {
        if (e->added) epoll_ctl(e->s->epfd, EPOLL_CTL_DEL, e->fd, NULL);
        e->added = false;
        return;
    }
    if (epoll_ctl(e->s->epfd, e->added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, e->fd, &ev) == 0)
        e->added = true;
    else
        rl_log_error("redis: epoll_ctl: %s", strerror(errno));
}

static void rl_redis_ev_add_read(void *p)
{
    struct rl_redis_ev *e = p;

    if (!e->reading) {
        e->reading = true;
        rl_redis_ev_update(e);
    }
}

static void rl_redis_ev_del_read(void *p)
{
    struct rl_redis_ev *e = p;

    if (e->reading) {
        e->reading = false;
        rl_redis_ev_update(e);
    }
}

static void rl_redis_ev_add_write(void *p)
{
    struct rl_redis_ev *e = p;

    if (!e->writing) {
        e->writing = true;
        rl_redis_ev_update(e);
    }
}

static void rl_redis_ev_del_write(void *p)
{
    struct rl_redis_ev *e = p;

    if (e->writing) {
        e->writing = false;
        rl_redis_ev_update(e);
    }
}

/* Called (maybe twice) before hiredis closes the fd. */
static void rl_redis_ev_cleanup(void *p)
{
    struct rl_redis_ev *e = p;

    e->reading = false;
    e->writing = false;
    rl_redis_ev_update(e);
}

static void rl_redis_ev_attach(struct rl_store_redis *s, redisAsyncContext *ac)
{
    memset(&s->ev, 0, sizeof(s->ev));
    s->ev.s = s;
    s->ev.fd = ac->c.fd;
    s->ev.gen = ++s->gens; /* never 0: 0 is the eventfd */
    ac->ev.addRead = rl_redis_ev_add_read;
    ac->ev.delRead = rl_redis_ev_del_read;
    ac->ev.addWrite = rl_redis_ev_add_write;
    ac->ev.delWrite = rl_redis_ev_del_write;
    ac->ev.cleanup = rl_redis_ev_cleanup;
    ac->ev.data = &s->ev;
}

/* One epoll event: the eventfd (a wake-up) or the connection's socket. The
 * context may be gone after HandleRead (disconnect): check before writing. */
static void rl_redis_ev_dispatch(struct rl_store_redis *s, const struct epoll_event *ev)
{
    uint64_t gen = ev->data.u64, v;
    redisAsyncContext *ac = s->ac;

    if (gen == 0) {
        if (read(s->evfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
            rl_log_error("redis: eventfd read: %s", strerror(errno));
        return;
    }
    if (ac == NULL || gen != s->ev.gen)
        return; /* an event of a connection closed earlier in this round */
    if ((ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && s->ev.reading) redisAsyncHandleRead(ac);
    if (s->ac == ac && gen == s->ev.gen && s->ev.writing &&
        (ev->events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        redisAsyncHandleWrite(ac);
}

/*-----------------------------------------------------------------------------
 * The queue (submitting threads -> loop thread)
 *---------------------------------------------------------------------------*/

static void rl_redis_wake(struct rl_store_redis *s)
{
    uint64_t one = 1;

    if (write(s->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        rl_log_error("redis: eventfd write: %s", strerror(errno));
}

/* Queue the job for the loop thread (RL_AGAIN), or answer RL_EUNAVAIL at
 * once (RL_OK, done() not called) when Redis is down between reconnects, the
 * store is closing or too many jobs wait already. */
static int rl_redis_submit(struct rl_store *base, struct rl_job *job)
{
    struct rl_store_redis *s = (struct rl_store_redis *)base;
    bool was_empty;

    memset(&job->result, 0, sizeof(job->result));
    if (job->n > RL_MAX_POLICIES || (job->idem_key != NULL && job->idem_len > RL_ID_MAX)) {
        job->result.status = RL_EINTERNAL; /* request parsing guarantees both */
        return RL_OK;
    }
    pthread_mutex_lock(&s->lock);
    if (s->closing || atomic_load(&s->state) == RL_REDIS_DOWN ||
        atomic_load(&s->pending) >= RL_REDIS_QUEUE_MAX) {
        pthread_mutex_unlock(&s->lock);
        job->result.status = RL_EUNAVAIL;
        return RL_OK;
    }
    /* taken under the lock, so the queue stays in deadline order */
    job->deadline_ms = rl_mono_ms() + s->timeout_ms;
    job->next = NULL;
    was_empty = s->head == NULL;
    if (was_empty)
        s->head = job;
    else
        s->tail->next = job;
    s->tail = job;
    atomic_fetch_add(&s->pending, 1);
    pthread_mutex_unlock(&s->lock);
    /* a non-empty queue is the loop's business already: it drains the queue
     * whenever it can send and wakes for the head's deadline */
    if (was_empty) rl_redis_wake(s);
    return RL_AGAIN;
}

/* Take up to max jobs from the head of the queue (all when max is 0), as a
 * list through job->next; *n is their count. */
static struct rl_job *rl_redis_take(struct rl_store_redis *s, size_t max, size_t *n)
{
    struct rl_job *list, *j;
    size_t k = 1;

    pthread_mutex_lock(&s->lock);
    list = s->head;
    if (list == NULL) {
        pthread_mutex_unlock(&s->lock);
        *n = 0;
        return NULL;
    }
    for (j = list; j->next != NULL && (max == 0 || k < max); j = j->next)
        k++;
    s->head = j->next;
    if (s->head == NULL) s->tail = NULL;
    j->next = NULL;
    pthread_mutex_unlock(&s->lock);
    *n = k;
    return list;
}

/* Take the queued jobs whose deadline has passed (they sit at the head). */
static struct rl_job *rl_redis_take_expired(struct rl_store_redis *s, int64_t now)
{
    struct rl_job *list = NULL, **tailp = &list;

    pthread_mutex_lock(&s->lock);
    while (s->head != NULL && s->head->deadline_ms <= now) {
        *tailp = s->head;
        tailp = &s->head->next;
        s->head = s->head->next;
    }
    *tailp = NULL;
    if (s->head == NULL) s->tail = NULL;
    pthread_mutex_unlock(&s->lock);
    return list;
}

static void rl_redis_set_state(struct rl_store_redis *s, enum rl_redis_state st)
{
    pthread_mutex_lock(&s->lock);
    atomic_store(&s->state, st);
    pthread_mutex_unlock(&s->lock);
}

/*-----------------------------------------------------------------------------
 * Connection handling
 *---------------------------------------------------------------------------*/

/* The connection is gone or never came: fail what waits for it, fail new
 * submissions fast until the next attempt (backoff 50 ms doubling to 1 s). */
static void rl_redis_down(struct rl_store_redis *s, const char *why)
{
    struct rl_job *queued;
    size_t n;

    if (!s->logged_down)
        rl_log_warn("redis: %s unavailable (%s); reconnecting", s->name,
                    why ? why : "connection lost");
    s->logged_down = true;
    pthread_mutex_lock(&s->lock);
    atomic_store(&s->state, RL_REDIS_DOWN);
    pthread_mutex_unlock(&s->lock);
    queued = rl_redis_take(s, 0, &n);
    rl_redis_finish_list(s, queued, RL_EUNAVAIL);
    s->reconnect_at = rl_mono_ms() + s->backoff;
    s->backoff = s->backoff * 2 < RL_REDIS_BACKOFF_MAX ? s->backoff * 2 : RL_REDIS_BACKOFF_MAX;
}

/* Close the connection from the loop (never from a hiredis callback). Its
 * pending replies come back NULL: their jobs get RL_EUNAVAIL. */
static void rl_redis_drop(struct rl_store_redis *s, const char *why)
{
    redisAsyncContext *ac = s->ac;

    s->ac = NULL; /* the disconnect callback ignores a context it no longer owns */
    s->drop = false;
    if (ac != NULL) redisAsyncFree(ac);
    rl_redis_down(s, why);
}

/* AUTH / SELECT replies: an error ends this connection attempt. */
static void rl_redis_on_hello(redisAsyncContext *ac, void *r, void *priv)
{
    struct rl_store_redis *s = priv;
    redisReply *reply = r;

    if (reply == NULL || ac != s->ac) return; /* the connection is going away: handled there */
    if (reply->type == REDIS_REPLY_ERROR) {
        rl_log_error("redis: AUTH/SELECT refused: %s", reply->str);
        s->drop = true;
    }
}

/* SCRIPT LOAD reply: keep the sha Redis computed; the first one makes the
 * connection READY, unless AUTH or SELECT was refused before it. */
static void rl_redis_on_script(redisAsyncContext *ac, void *r, void *priv)
{
    struct rl_store_redis *s = priv;
    redisReply *reply = r;

    if (reply == NULL || ac != s->ac) return;
    if (reply->type != REDIS_REPLY_STRING || reply->len != 40) {
        rl_log_error("redis: SCRIPT LOAD failed: %s",
                     reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        if (atomic_load(&s->state) != RL_REDIS_READY) s->drop = true;
        return;
    }
    memcpy(s->sha, reply->str, 40);
    s->sha[40] = '\0';
    /* after a refused AUTH the connection is the default user's: not ours */
    if (atomic_load(&s->state) != RL_REDIS_READY && !s->drop) {
        atomic_fetch_add(&s->base.epoch, 1); /* it may have restarted empty */
        rl_redis_set_state(s, RL_REDIS_READY);
        s->backoff = RL_REDIS_BACKOFF_MIN;
        s->logged_down = false;
        rl_log_info("redis: connected to %s", s->name);
    }
}

static int rl_redis_script_load(struct rl_store_redis *s)
{
    return redisAsyncCommand(s->ac, rl_redis_on_script, s, "SCRIPT LOAD %s", rl_redis_script);
}

/* TCP (or unix socket) connected: AUTH, SELECT, SCRIPT LOAD, pipelined. */
static void rl_redis_on_connect(const redisAsyncContext *cac, int status)
{
    struct rl_store_redis *s = cac->data;
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    int rc = REDIS_OK;

    if (ac != s->ac) return;
    if (status != REDIS_OK) {
        s->ac = NULL; /* hiredis frees it after this callback */
        rl_redis_down(s, ac->c.errstr);
        return;
    }
    if (s->password != NULL && s->user != NULL)
        rc = redisAsyncCommand(ac, rl_redis_on_hello, s, "AUTH %s %s", s->user, s->password);
    else if (s->password != NULL)
        rc = redisAsyncCommand(ac, rl_redis_on_hello, s, "AUTH %s", s->password);
    if (rc == REDIS_OK && s->db != 0)
        rc = redisAsyncCommand(ac, rl_redis_on_hello, s, "SELECT %d", s->db);
    if (rc == REDIS_OK) rc = rl_redis_script_load(s);
    if (rc != REDIS_OK) s->drop = true;
}

/* The connection ended (any cause, after its pending callbacks ran with NULL). */
static void rl_redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rl_store_redis *s = ac->data;

    (void)status;
    if (ac != s->ac) return; /* dropped by rl_redis_drop, which handles the rest */
    s->ac = NULL;
    rl_redis_down(s, ac->errstr != NULL ? ac->errstr : "connection closed");
}

/* Start a non-blocking connection attempt; it must reach READY (script
 * loaded) within RL_REDIS_CONNECT_MS. */
static void rl_redis_connect(struct rl_store_redis *s)
{
    redisAsyncContext *ac;

    s->drop = false;
    rl_redis_set_state(s, RL_REDIS_CONNECTING);
    ac = s->unix_path ? redisAsyncConnectUnix(s->unix_path) : redisAsyncConnect(s->host, s->port);
    if (ac == NULL || ac->err) {
        char why[128];

        snprintf(why, sizeof(why), "%s", ac ? ac->errstr : "out of memory");
        if (ac != NULL) redisAsyncFree(ac);
        rl_redis_down(s, why);
        return;
    }
    s->ac = ac;
    ac->data = s;
    rl_redis_ev_attach(s, ac);
    redisAsyncSetDisconnectCallback(ac, rl_redis_on_disconnect);
    redisAsyncSetConnectCallback(ac, rl_redis_on_connect); /* waits for writable */
    s->connect_deadline = rl_mono_ms() + RL_REDIS_CONNECT_MS;
}

/*-----------------------------------------------------------------------------
 * Batching and replies
 *---------------------------------------------------------------------------*/

static bool rl_redis_has_idem(const struct rl_job *j)
{
    return j->op == RL_OP_CHECK && j->idem_key != NULL && j->idem_ttl_ms > 0;
}

/* The argument vector of one EVALSHA/EVAL call; strings live in buf. */
struct rl_redis_argv {
    int argc;
    const char **argv;
    size_t *len;
    char *buf;
    size_t used, cap;
};

static void rl_redis_put(struct rl_redis_argv *v, int i, const char *str, size_t len)
{
    memcpy(v->buf + v->used, str, len);
    v->argv[i] = v->buf + v->used;
    v->len[i] = len;
    v->used += len;
}

static void rl_redis_putnum(struct rl_redis_argv *v, int i, long long x)
{
    char num[24];

    rl_redis_put(v, i, num, (size_t)snprintf(num, sizeof(num), "%lld", x));
}

/* Keys of one job from argv[*k] on, its arguments from argv[*a] on. */
static void rl_redis_put_job(struct rl_store_redis *s, struct rl_redis_argv *v,
                             const struct rl_job *j, int *k, int *a)
{
    char key[RL_REDIS_IDEM_MAX > RL_KEY_MAX ? RL_REDIS_IDEM_MAX : RL_KEY_MAX], fp[24];
    size_t len;

    rl_redis_putnum(v, (*a)++, j->op == RL_OP_CHECK ? 0 : j->op == RL_OP_PEEK ? 1 : 2);
    rl_redis_putnum(v, (*a)++, (long long)j->n);
    rl_redis_putnum(v, (*a)++, (long long)j->cost);
    rl_redis_putnum(v, (*a)++, rl_redis_has_idem(j));
    if (rl_redis_has_idem(j)) {
        rl_redis_put(v, (*a)++, fp,
                     (size_t)snprintf(fp, sizeof(fp), "%llu", (unsigned long long)j->fingerprint));
        rl_redis_putnum(v, (*a)++, (long long)j->idem_ttl_ms);
    }
    for (size_t i = 0; i < j->n; i++) {
        const struct rl_bucket_ref *ref = &j->refs[i];

        len = rl_policy_key(key, RL_KEY_MAX, s->base.prefix, ref);
        rl_redis_put(v, (*k)++, key, len);
        rl_redis_putnum(v, (*a)++, (long long)ref->lim.limit);
        rl_redis_putnum(v, (*a)++, (long long)ref->lim.burst);
        rl_redis_putnum(v, (*a)++, (long long)ref->lim.window_ms);
        rl_redis_putnum(v, (*a)++, ref->shadow);
    }
    if (rl_redis_has_idem(j)) {
        len = (size_t)snprintf(key, sizeof(key), "%sidem:%016llx:", s->base.prefix,
                               (unsigned long long)j->idem_scope);
        len += rl_escape_id(key + len, sizeof(key) - len, j->idem_key, j->idem_len);
        rl_redis_put(v, (*k)++, key, len);
    }
}

/* EVALSHA sha (or EVAL script when full) numkeys KEYS... ARGV... for the
 * batch's jobs (no NULL slot). RL_OK or RL_ENOMEM; rl_redis_argv_free after. */
static int rl_redis_build(struct rl_store_redis *s, const struct rl_redis_batch *b, bool full,
                          struct rl_redis_argv *v)
{
    size_t nkeys = 0, nargs = 1;
    int k, a;

    memset(v, 0, sizeof(*v));
    for (size_t i = 0; i < b->njobs; i++) {
        const struct rl_job *j = b->jobs[i];
        size_t idem = rl_redis_has_idem(j);

        nkeys += j->n + idem;
        nargs += 4 + 2 * idem + 4 * j->n;
        v->cap += j->n * RL_KEY_MAX + idem * RL_REDIS_IDEM_MAX;
    }
    v->cap += (nargs + 1) * 24;
    v->argc = (int)(3 + nkeys + nargs);
    v->argv = malloc((size_t)v->argc * sizeof(*v->argv));
    v->len = malloc((size_t)v->argc * sizeof(*v->len));
    v->buf = malloc(v->cap);
    if (v->argv == NULL || v->len == NULL || v->buf == NULL) return RL_ENOMEM;
    v->argv[0] = full ? "EVAL" : "EVALSHA";
    v->len[0] = strlen(v->argv[0]);
    v->argv[1] = full ? rl_redis_script : s->sha;
    v->len[1] = full ? sizeof(rl_redis_script) - 1 : strlen(s->sha);
    rl_redis_putnum(v, 2, (long long)nkeys);
    k = 3;
    a = (int)(3 + nkeys);
    rl_redis_putnum(v, a++, (long long)b->njobs);
    for (size_t i = 0; i < b->njobs; i++)
        rl_redis_put_job(s, v, b->jobs[i], &k, &a);
    return RL_OK;
}

static void rl_redis_argv_free(struct rl_redis_argv *v)
{
    free(v->argv);
    free(v->len);
    free(v->buf);
}

static void rl_redis_unlink(struct rl_store_redis *s, struct rl_redis_batch *b)
{
    if (b->prev != NULL)
        b->prev->next = b->next;
    else
        s->first = b->next;
    if (b->next != NULL)
        b->next->prev = b->prev;
    else
        s->last = b->prev;
    b->prev = b->next = NULL;
    s->inflight--;
}

/* Finish every job still in the batch with status, free the batch. */
static void rl_redis_batch_end(struct rl_store_redis *s, struct rl_redis_batch *b, int status)
{
    for (size_t i = 0; i < b->njobs; i++)
        if (b->jobs[i] != NULL) rl_redis_finish(s, b->jobs[i], status);
    free(b);
}

/* Copy the numbers of the script's reply into the batch's jobs (never keep
 * the reply). The layout is checked whole before any job is touched. */
static int rl_redis_parse(struct rl_redis_batch *b, const redisReply *r)
{
    size_t need = 1, at = 1;

    for (size_t i = 0; i < b->njobs; i++)
        need += 2 + 4 * b->nb[i];
    if (r->type != REDIS_REPLY_ARRAY || r->elements != need) return RL_EINTERNAL;
    for (size_t i = 0; i < need; i++)
        if (r->element[i]->type != REDIS_REPLY_INTEGER) return RL_EINTERNAL;
    for (size_t i = 0; i < b->njobs; at += 2 + 4 * b->nb[i], i++) {
        struct rl_decision *d;
        redisReply **e = r->element + at;

        if (b->jobs[i] == NULL) continue; /* answered at its deadline already */
        d = &b->jobs[i]->result;
        memset(d, 0, sizeof(*d));
        d->status = e[0]->integer == 2 ? RL_ECONFLICT : RL_OK;
        d->replayed = e[0]->integer == 1;
        d->allowed = e[1]->integer != 0;
        d->now_ms = r->element[0]->integer;
        d->n = b->nb[i];
        for (size_t k = 0; k < d->n; k++) {
            d->out[k].allowed = e[2 + 4 * k]->integer != 0;
            d->out[k].remaining = e[3 + 4 * k]->integer;
            d->out[k].reset_ms = e[4 + 4 * k]->integer;
            d->out[k].retry_ms = e[5 + 4 * k]->integer;
        }
    }
    return RL_OK;
}

/* Drop the NULL slots (jobs answered at their deadline) before a resend. */
static void rl_redis_compact(struct rl_redis_batch *b)
{
    size_t n = 0;

    for (size_t i = 0; i < b->njobs; i++) {
        if (b->jobs[i] == NULL) continue;
        b->jobs[n] = b->jobs[i];
        b->nb[n++] = b->nb[i];
    }
    b->njobs = n;
}

/* The reply of one EVALSHA/EVAL: NULL (connection gone) -> RL_EUNAVAIL;
 * NOSCRIPT (Redis restarted or SCRIPT FLUSH) -> the same batch once more
 * with EVAL, and SCRIPT LOAD again for the next ones; another error ->
 * RL_EINTERNAL; else each job's numbers, and done(). */
static void rl_redis_on_batch(redisAsyncContext *ac, void *r, void *priv)
{
    struct rl_redis_batch *b = priv;
    struct rl_store_redis *s = b->s;
    redisReply *reply = r;

    rl_redis_unlink(s, b);
    if (reply == NULL) {
        rl_redis_batch_end(s, b, RL_EUNAVAIL);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR && !b->retried && ac == s->ac &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        b->retried = true;
        rl_redis_compact(b);
        if (b->njobs == 0) {
            free(b);
            return;
        }
        rl_log_warn("redis: script not loaded (NOSCRIPT): resending with EVAL");
        atomic_fetch_add(&s->base.epoch, 1); /* flushed, or another server */
        rl_redis_script_load(s);
        if (rl_redis_send(s, b, true) != RL_OK) rl_redis_batch_end(s, b, RL_EUNAVAIL);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        rl_log_error("redis: script error: %s", reply->str);
        rl_redis_batch_end(s, b, RL_EINTERNAL);
        return;
    }
    if (rl_redis_parse(b, reply) != RL_OK) {
        rl_log_error("redis: unexpected reply to the script (type %d)", reply->type);
        rl_redis_batch_end(s, b, RL_EINTERNAL);
        return;
    }
    for (size_t i = 0; i < b->njobs; i++) {
        if (b->jobs[i] != NULL) {
            atomic_fetch_sub(&s->pending, 1);
            b->jobs[i]->done(b->jobs[i]);
        }
    }
    free(b);
}

/* Send the batch (pipelined behind the calls in flight) and list it. */
static int rl_redis_send(struct rl_store_redis *s, struct rl_redis_batch *b, bool full)
{
    struct rl_redis_argv v;
    int rc;

    if (rl_redis_build(s, b, full, &v) != RL_OK) {
        rl_redis_argv_free(&v);
        return RL_ENOMEM;
    }
    rc = redisAsyncCommandArgv(s->ac, rl_redis_on_batch, b, v.argc, v.argv, v.len);
    rl_redis_argv_free(&v);
    if (rc != REDIS_OK) return RL_EUNAVAIL;
    b->sent_ms = rl_mono_ms();
    b->prev = s->last;
    b->next = NULL;
    if (s->last != NULL)
        s->last->next = b;
    else
        s->first = b;
    s->last = b;
    s->inflight++;
    return RL_OK;
}

/* Send what waits, in batches, while fewer than RL_REDIS_INFLIGHT_MAX calls
 * are in flight: under load the queue grows meanwhile, so batches grow too. */
static void rl_redis_pump(struct rl_store_redis *s)
{
    while (s->ac != NULL && !s->drop && atomic_load(&s->state) == RL_REDIS_READY &&
           s->inflight < RL_REDIS_INFLIGHT_MAX) {
        struct rl_redis_batch *b = calloc(1, sizeof(*b));
        struct rl_job *list;
        size_t n;

        if (b == NULL) return; /* the jobs wait, at worst until their deadline */
        list = rl_redis_take(s, RL_REDIS_BATCH_MAX, &n);
        if (list == NULL) {
            free(b);
            return;
        }
        b->s = s;
        for (; list != NULL; list = list->next) {
            b->jobs[b->njobs] = list;
            b->nb[b->njobs++] = list->n;
        }
        if (rl_redis_send(s, b, false) != RL_OK) {
            rl_redis_batch_end(s, b, RL_EUNAVAIL);
            s->drop = true;
            return;
        }
    }
}

/*-----------------------------------------------------------------------------
 * The loop
 *---------------------------------------------------------------------------*/

/* ms until the next thing to do by time: a deadline, a stuck call, the end
 * of a connect attempt, a reconnect. -1: nothing. */
static int rl_redis_wait_ms(struct rl_store_redis *s)
{
    int64_t now = rl_mono_ms(), t = INT64_MAX;

    pthread_mutex_lock(&s->lock);
    if (s->head != NULL) t = s->head->deadline_ms;
    pthread_mutex_unlock(&s->lock);
    if (s->first != NULL && s->first->sent_ms + s->stuck_ms < t)
        t = s->first->sent_ms + s->stuck_ms;
    for (struct rl_redis_batch *b = s->first; b != NULL; b = b->next)
        for (size_t i = 0; i < b->njobs; i++)
            if (b->jobs[i] != NULL && b->jobs[i]->deadline_ms < t) t = b->jobs[i]->deadline_ms;
    if (s->ac != NULL && s->drop)
        t = now;
    else if (s->ac != NULL && atomic_load(&s->state) != RL_REDIS_READY && s->connect_deadline < t)
        t = s->connect_deadline;
    else if (s->ac == NULL && s->reconnect_at < t)
        t = s->reconnect_at;
    if (t == INT64_MAX) return -1;
    return t <= now ? 0 : t - now > INT_MAX ? INT_MAX : (int)(t - now);
}

/* Deadlines (queued and in flight), a stuck connection, a connect attempt
 * past its time, a requested drop, a due reconnect. */
static void rl_redis_tick(struct rl_store_redis *s)
{
    int64_t now = rl_mono_ms();

    rl_redis_finish_list(s, rl_redis_take_expired(s, now), RL_ETIMEDOUT);
    for (struct rl_redis_batch *b = s->first; b != NULL; b = b->next) {
        for (size_t i = 0; i < b->njobs; i++) {
            struct rl_job *j = b->jobs[i];

            if (j != NULL && j->deadline_ms <= now) {
                b->jobs[i] = NULL; /* the late reply skips it */
                rl_redis_finish(s, j, RL_ETIMEDOUT);
            }
        }
    }
    if (s->ac != NULL && s->first != NULL && now - s->first->sent_ms >= s->stuck_ms)
        rl_redis_drop(s, "no reply in time: connection stuck");
    else if (s->ac != NULL && atomic_load(&s->state) != RL_REDIS_READY &&
             now >= s->connect_deadline)
        rl_redis_drop(s, "connect timed out");
    else if (s->ac != NULL && s->drop)
        rl_redis_drop(s, "connection refused by the server");
    else if (s->ac == NULL && now >= s->reconnect_at)
        rl_redis_connect(s);
}

/* Stop: the connection's pending replies come back NULL (RL_EUNAVAIL), then
 * the queue gets RL_EUNAVAIL too. */
static void rl_redis_shutdown(struct rl_store_redis *s)
{
    redisAsyncContext *ac = s->ac;
    size_t n;

    s->ac = NULL;
    if (ac != NULL) redisAsyncFree(ac);
    while (s->first != NULL) { /* none left after redisAsyncFree; be sure */
        struct rl_redis_batch *b = s->first;

        rl_redis_unlink(s, b);
        rl_redis_batch_end(s, b, RL_EUNAVAIL);
    }
    rl_redis_set_state(s, RL_REDIS_DOWN);
    rl_redis_finish_list(s, rl_redis_take(s, 0, &n), RL_EUNAVAIL);
}

static void *rl_redis_loop(void *arg)
{
    struct rl_store_redis *s = arg;
    struct epoll_event evs[8];

    rl_redis_connect(s);
    while (!atomic_load(&s->stop)) {
        int n = epoll_wait(s->epfd, evs, 8, rl_redis_wait_ms(s));

        if (n < 0 && errno != EINTR) {
            rl_log_error("redis: epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++)
            rl_redis_ev_dispatch(s, &evs[i]);
        rl_redis_tick(s);
        rl_redis_pump(s);
    }
    rl_redis_shutdown(s);
    return NULL;
}

/*-----------------------------------------------------------------------------
 * Open, ready, close
 *---------------------------------------------------------------------------*/

static bool rl_redis_ready(struct rl_store *base)
{
    struct rl_store_redis *s = (struct rl_store_redis *)base;

    return atomic_load(&s->state) == RL_REDIS_READY;
}

static void rl_redis_free(struct rl_store_redis *s)
{
    if (s->epfd >= 0) close(s->epfd);
    if (s->evfd >= 0) close(s->evfd);
    pthread_mutex_destroy(&s->lock);
    free(s->unix_path);
    free(s->user);
    free(s->password);
    free(s);
}

/* The loop thread finishes every job (RL_EUNAVAIL) and ends; submissions
 * after this answer RL_EUNAVAIL at once (closing). Safe to call twice. */
static void rl_redis_stop(struct rl_store *base)
{
    struct rl_store_redis *s = (struct rl_store_redis *)base;
    bool join;

    pthread_mutex_lock(&s->lock);
    s->closing = true;
    join = !s->joined;
    s->joined = true;
    pthread_mutex_unlock(&s->lock);
    if (!join) return;
    atomic_store(&s->stop, true);
    rl_redis_wake(s);
    pthread_join(s->thread, NULL);
}

static void rl_redis_close(struct rl_store *base)
{
    if (base == NULL) return;
    rl_redis_stop(base);
    rl_redis_free((struct rl_store_redis *)base);
}

static char *rl_redis_strdup(const char *str, bool *failed)
{
    char *copy;

    if (str == NULL) return NULL;
    copy = strdup(str);
    if (copy == NULL) *failed = true;
    return copy;
}

/* The epoll set (the eventfd's data is 0) and the loop thread. */
static int rl_redis_start(struct rl_store_redis *s)
{
    struct epoll_event ev;

    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->epfd < 0 || s->evfd < 0) return RL_EINTERNAL;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.u64 = 0;
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->evfd, &ev) != 0) return RL_EINTERNAL;
    if (pthread_create(&s->thread, NULL, rl_redis_loop, s) != 0) return RL_EINTERNAL;
    return RL_OK;
}

/* Copy what the store needs from cfg (which a reload may free). */
static int rl_redis_copy_config(struct rl_store_redis *s, const struct rl_config *cfg)
{
    bool failed = false;

    snprintf(s->base.prefix, sizeof(s->base.prefix), "%s", cfg->redis_prefix);
    snprintf(s->host, sizeof(s->host), "%s", cfg->redis_host);
    s->port = cfg->redis_port;
    s->unix_path = rl_redis_strdup(cfg->redis_unix, &failed);
    s->user = rl_redis_strdup(cfg->redis_user, &failed);
    s->password = rl_redis_strdup(cfg->redis_password, &failed);
    s->db = cfg->redis_db;
    if (s->unix_path != NULL)
        snprintf(s->name, sizeof(s->name), "%s", s->unix_path);
    else
        snprintf(s->name, sizeof(s->name), "%s:%d", s->host, s->port);
    s->timeout_ms = cfg->redis_timeout_ms > 0 ? cfg->redis_timeout_ms : 1;
    s->stuck_ms = 20 * (int64_t)s->timeout_ms;
    if (s->stuck_ms < RL_REDIS_STUCK_MIN_MS) s->stuck_ms = RL_REDIS_STUCK_MIN_MS;
    return failed ? RL_ENOMEM : RL_OK;
}

struct rl_store *rl_store_redis_open(const struct rl_config *cfg, struct rl_error *err)
{
    struct rl_store_redis *s = calloc(1, sizeof(*s));

    if (s == NULL || pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        rl_error_set(err, RL_ENOMEM, 500, "redis", "out of memory");
        return NULL;
    }
    s->epfd = s->evfd = -1;
    s->base.ops = &rl_redis_ops;
    s->backoff = RL_REDIS_BACKOFF_MIN;
    atomic_init(&s->state, RL_REDIS_CONNECTING); /* the first decisions wait */
    atomic_init(&s->pending, 0);
    atomic_init(&s->stop, false);
    if (rl_redis_copy_config(s, cfg) != RL_OK) {
        rl_redis_free(s);
        rl_error_set(err, RL_ENOMEM, 500, "redis", "out of memory");
        return NULL;
    }
    if (rl_redis_start(s) != RL_OK) {
        rl_redis_free(s);
        rl_error_set(err, RL_EINTERNAL, 500, "redis",
                     "cannot start the Redis thread (epoll, eventfd or pthread_create failed)");
        return NULL;
    }
    return &s->base;
}
