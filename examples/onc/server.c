/*
 * The two procedures of calc.x. Linked with rpcgen's server stub: either
 * calc_svc.c with its generated main() (inetd `wait` style: the listener on
 * fd 0), or calc_svc_m.c (the dispatch alone) with conn_main.c (one process
 * per connection, the connection on fd 0).
 */
#include <stdio.h>
#include <string.h>

#include "calc.h"

int *add_1_svc(intpair *argp, struct svc_req *rqstp)
{
	static int result;

	(void)rqstp;
	result = argp->a + argp->b;
	return &result;
}

char **echo_1_svc(char **argp, struct svc_req *rqstp)
{
	static char buffer[1024];
	static char *result = buffer;

	(void)rqstp;
	snprintf(buffer, sizeof buffer, "%s", *argp);
	return &result;
}
