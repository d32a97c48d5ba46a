/* policy.h -- which buckets a request touches: matching a request against the
 * loaded policies (scope id present, method and path prefix, policy= filter),
 * the override lookup, and the store key of each bucket with its id escaped.
 * Pure: no I/O, no allocation. Knows nothing of storage. */
#ifndef RL_POLICY_H
#define RL_POLICY_H

#include "request.h"

/* One bucket a decision reads or charges. Points into the config and the
 * request, which both outlive the decision. */
struct rl_bucket_ref {
    const struct rl_policy *policy;
    int policy_index;    /* into cfg->policies */
    struct rl_limit lim; /* the policy's, or the id's override */
    const char *id;      /* raw id, not escaped */
    size_t id_len;
    bool shadow; /* policy->shadow */
};

/* Fill refs[0..*n) with the buckets that apply to `r`, in config order.
 * A policy applies when the request has an id for its scope, its match (if
 * any) fits r->method / r->path, and r->policy_mask has its bit.
 * `cap` must be >= RL_MAX_POLICIES. Always RL_OK (0 matches is fine). */
int rl_policy_match(const struct rl_config *cfg, const struct rl_request *r,
                    struct rl_bucket_ref *refs, size_t cap, size_t *n);

/* The same for reads and resets of one (scope, id): every policy of that
 * scope, no match or filter applied. */
int rl_policy_for_id(const struct rl_config *cfg, enum rl_scope scope, const char *id,
                     size_t id_len, struct rl_bucket_ref *refs, size_t cap, size_t *n);

/* Longest possible key: prefix + name + ":" + scope + ":" + 3 * RL_ID_MAX. */
#define RL_KEY_MAX (64 + RL_NAME_MAX + 8 + 3 * RL_ID_MAX + 8)

/* Write the store key "<prefix><policy>:<scope>:<escaped id>" to buf (NUL
 * terminated; cap >= RL_KEY_MAX) and return its length. The id is escaped
 * byte by byte: [A-Za-z0-9_.~-] stay, every other byte (':' '{' '}' '*' '%',
 * controls, non-ASCII) becomes %XX. So the mapping is injective and no id can
 * reach another policy's or scope's key, nor form a Redis Cluster hash tag. */
size_t rl_policy_key(char *buf, size_t cap, const char *prefix, const struct rl_bucket_ref *ref);

/* Escape bytes as above into buf (cap >= 3 * len + 1). Returns the length. */
size_t rl_escape_id(char *buf, size_t cap, const char *id, size_t len);

#endif
