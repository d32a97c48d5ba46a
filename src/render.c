/* render.c -- placeholder, being written. */
