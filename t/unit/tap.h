/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The few lines of TAP that the unit tests under t/unit print.
 */

#ifndef _WSP_TAP_H_INCLUDED_
#define _WSP_TAP_H_INCLUDED_


#include <stdio.h>


static int  tests, failed;


static void
ok(int cond, const char *name)
{
    tests++;

    if (!cond) {
        failed++;
    }

    printf("%sok %d - %s\n", cond ? "" : "not ", tests, name);
}


/* the plan, after the tests; the exit status says whether all passed */

static int
done_testing(void)
{
    printf("1..%d\n", tests);

    return failed ? 1 : 0;
}


#endif /* _WSP_TAP_H_INCLUDED_ */
