/*
 * main() of the per-connection server (inetd `nowait`, systemd
 * `Accept=yes`, ipc-run's `endpoint = "per-connection"`): the accepted
 * connection is on fd 0. rpcgen's own main() cannot serve it: it hands fd 0
 * to svctcp_create(), which calls listen() on it, and a connected socket
 * cannot listen. svc_fd_create() wraps a connected socket instead (TCP or
 * Unix). The process serves calls until the client hangs up, then exits.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/select.h>

#include "calc.h"

void calc_prog_1(struct svc_req *rqstp, SVCXPRT *transp);

int main(void)
{
	SVCXPRT *transp = svc_fd_create(0, 0, 0);

	if (transp == NULL) {
		fprintf(stderr, "calc: fd 0 is not a connected socket\n");
		return 1;
	}
	/* Protocol 0: nothing is registered with rpcbind. */
	if (!svc_register(transp, CALC_PROG, CALC_VERS, calc_prog_1, 0)) {
		fprintf(stderr, "calc: cannot register the dispatch\n");
		return 1;
	}
	for (;;) {
		struct pollfd pfd = { .fd = 0, .events = POLLIN };
		fd_set set;

		if (poll(&pfd, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("calc: poll");
			return 1;
		}
		/* The library closes fd 0 once the client has hung up. */
		if (pfd.revents & POLLNVAL)
			return 0;
		FD_ZERO(&set);
		FD_SET(0, &set);
		svc_getreqset(&set);
	}
}
