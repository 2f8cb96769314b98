/*
 * calc_client NAME A B [VARIABLE]: calls ADD(A, B) and ECHO(NAME) on the
 * calc server at the address ipc-run hands over in the port variable
 * (IPC_PORT_CALC unless named: `address=HOST:PORT` over TCP, or a socket
 * path over Unix), prints both answers and exits.
 * It connects directly: no rpcbind is asked for the port.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "calc.h"

/* The value of `key=` in an IPC_PORT_* description (space-separated). */
static int field(const char *description, const char *key, char *out, size_t size)
{
	size_t len = strlen(key);
	const char *p = description;

	while (p && *p) {
		if (strncmp(p, key, len) == 0 && p[len] == '=') {
			size_t n = strcspn(p + len + 1, " ");

			if (n >= size)
				return -1;
			memcpy(out, p + len + 1, n);
			out[n] = '\0';
			return 0;
		}
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	return -1;
}

static CLIENT *connect_to(const char *port)
{
	char transport[16], address[256];
	int sock = RPC_ANYSOCK;

	if (field(port, "transport", transport, sizeof transport) < 0 ||
	    field(port, "address", address, sizeof address) < 0) {
		fprintf(stderr, "calc_client: no transport/address in \"%s\"\n", port);
		return NULL;
	}
	if (strcmp(transport, "tcp") == 0) {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		char *colon = strrchr(address, ':');

		if (!colon)
			return NULL;
		*colon = '\0';
		sin.sin_port = htons((unsigned short)atoi(colon + 1));
		if (inet_pton(AF_INET, address, &sin.sin_addr) != 1)
			return NULL;
		return clnttcp_create(&sin, CALC_PROG, CALC_VERS, &sock, 0, 0);
	}
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	if (strlen(address) >= sizeof sun.sun_path)
		return NULL;
	memcpy(sun.sun_path, address, strlen(address) + 1);
	return clntunix_create(&sun, CALC_PROG, CALC_VERS, &sock, 0, 0);
}

int main(int argc, char **argv)
{
	const char *variable = argc > 4 ? argv[4] : "IPC_PORT_CALC";
	const char *port = getenv(variable);
	intpair pair;
	CLIENT *clnt;
	int *sum;
	char **echoed;

	if (argc < 4 || argc > 5 || !port) {
		fprintf(stderr, "usage: calc_client NAME A B [VARIABLE], with %s set\n", variable);
		return 2;
	}
	clnt = connect_to(port);
	if (!clnt) {
		clnt_pcreateerror("calc_client");
		return 1;
	}
	pair.a = atoi(argv[2]);
	pair.b = atoi(argv[3]);
	sum = add_1(&pair, clnt);
	if (!sum) {
		clnt_perror(clnt, "calc_client: ADD");
		return 1;
	}
	echoed = echo_1(&argv[1], clnt);
	if (!echoed) {
		clnt_perror(clnt, "calc_client: ECHO");
		return 1;
	}
	printf("%s: %d + %d = %d\n", *echoed, pair.a, pair.b, *sum);
	clnt_destroy(clnt);
	return 0;
}
