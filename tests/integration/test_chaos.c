/* test_chaos.c -- being written (issue 6). */
#include <criterion/criterion.h>
