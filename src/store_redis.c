/* store_redis.c -- placeholder, being written. */
