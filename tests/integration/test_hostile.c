/* test_hostile.c -- being written (issue 6). */
#include <criterion/criterion.h>
