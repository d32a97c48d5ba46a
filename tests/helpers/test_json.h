/* test_json.h -- small json-c lookups for test assertions: a dotted path
 * ("error.details.retry_after_secs", "violated-policies.0") into a parsed body. */
#ifndef RL_TEST_JSON_H
#define RL_TEST_JSON_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The object at a dotted path (array indexes as numbers), or NULL. Borrowed. */
static inline struct json_object *rl_tj_get(struct json_object *root, const char *path)
{
    char buf[256], *save = NULL, *part;
    struct json_object *cur = root;

    snprintf(buf, sizeof(buf), "%s", path);
    for (part = strtok_r(buf, ".", &save); part && cur; part = strtok_r(NULL, ".", &save)) {
        struct json_object *next = NULL;
        if (json_object_is_type(cur, json_type_array)) {
            size_t i = (size_t)strtoul(part, NULL, 10);
            next = i < json_object_array_length(cur) ? json_object_array_get_idx(cur, i) : NULL;
        } else if (!json_object_object_get_ex(cur, part, &next)) {
            next = NULL;
        }
        cur = next;
    }
    return cur;
}

static inline bool rl_tj_has(struct json_object *root, const char *path)
{
    return rl_tj_get(root, path) != NULL;
}

static inline int64_t rl_tj_int(struct json_object *root, const char *path)
{
    struct json_object *o = rl_tj_get(root, path);
    return o && json_object_is_type(o, json_type_int) ? json_object_get_int64(o) : INT64_MIN;
}

static inline const char *rl_tj_str(struct json_object *root, const char *path)
{
    struct json_object *o = rl_tj_get(root, path);
    return o && json_object_is_type(o, json_type_string) ? json_object_get_string(o) : NULL;
}

static inline int rl_tj_bool(struct json_object *root, const char *path)
{
    struct json_object *o = rl_tj_get(root, path);
    return o && json_object_is_type(o, json_type_boolean) ? json_object_get_boolean(o) : -1;
}

#endif
