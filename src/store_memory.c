/* store_memory.c -- placeholder, being written. */
