/* decide.c -- placeholder, being written. */
