/* policy.c -- which buckets a request touches, and their store keys.
 * Pure: no I/O, no allocation. Knows nothing of storage.
 * Invariant: rl_policy_key is injective in (prefix, policy, scope, id): the id
 * is escaped so that no byte of it can end the id early or open a hash tag. */
#include "policy.h"

#include <string.h>

static void rl_policy_ref(const struct rl_config *cfg, size_t i, const char *id, size_t id_len,
                          struct rl_bucket_ref *ref)
{
    const struct rl_policy *p = &cfg->policies[i];

    ref->policy = p;
    ref->policy_index = (int)i;
    ref->lim = *rl_policy_limit(p, id, id_len);
    ref->id = id;
    ref->id_len = id_len;
    ref->shadow = p->shadow;
}

/* The policy's match (if any) against the request's method and path. */
static bool rl_policy_fits(const struct rl_policy *p, const struct rl_request *r)
{
    if (p->match_method != NULL && strcmp(p->match_method, r->method) != 0) return false;
    if (p->match_prefix != NULL && strncmp(r->path, p->match_prefix, strlen(p->match_prefix)))
        return false;
    return true;
}

int rl_policy_match(const struct rl_config *cfg, const struct rl_request *r,
                    struct rl_bucket_ref *refs, size_t cap, size_t *n)
{
    size_t k = 0;

    for (size_t i = 0; i < cfg->npolicies && k < cap; i++) {
        const struct rl_policy *p = &cfg->policies[i];

        if (!r->has_id[p->scope] || !(r->policy_mask & (UINT32_C(1) << i)) || !rl_policy_fits(p, r))
            continue;
        rl_policy_ref(cfg, i, r->id[p->scope], r->id_len[p->scope], &refs[k++]);
    }
    *n = k;
    return RL_OK;
}

int rl_policy_for_id(const struct rl_config *cfg, enum rl_scope scope, const char *id,
                     size_t id_len, struct rl_bucket_ref *refs, size_t cap, size_t *n)
{
    size_t k = 0;

    for (size_t i = 0; i < cfg->npolicies && k < cap; i++)
        if (cfg->policies[i].scope == scope) rl_policy_ref(cfg, i, id, id_len, &refs[k++]);
    *n = k;
    return RL_OK;
}

size_t rl_escape_id(char *buf, size_t cap, const char *id, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t w = 0;

    if (cap == 0) return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '~' || c == '-';

        if (w + (keep ? 1 : 3) >= cap) break; /* cap too small: cut at a whole byte's escape */
        if (keep) {
            buf[w++] = (char)c;
        } else {
            buf[w++] = '%';
            buf[w++] = hex[c >> 4];
            buf[w++] = hex[c & 15];
        }
    }
    buf[w] = '\0';
    return w;
}

size_t rl_policy_key(char *buf, size_t cap, const char *prefix, const struct rl_bucket_ref *ref)
{
    size_t plen = strlen(prefix), nlen = strlen(ref->policy->name);
    const char *scope = rl_scope_name(ref->policy->scope);
    size_t slen = strlen(scope), w = 0;

    if (cap < plen + nlen + slen + 3) return 0;
    memcpy(buf + w, prefix, plen);
    w += plen;
    memcpy(buf + w, ref->policy->name, nlen);
    w += nlen;
    buf[w++] = ':';
    memcpy(buf + w, scope, slen);
    w += slen;
    buf[w++] = ':';
    buf[w] = '\0';
    return w + rl_escape_id(buf + w, cap - w, ref->id, ref->id_len);
}
