/* A worker's FastCGI transport: it accepts connections from the web server
 * itself, keeps them open between requests when the web server asks
 * (FCGI_KEEP_CONN: nginx's upstream keepalive), and serves whichever of
 * them has a request next. Answers go out framed in one write.
 *
 * Requests are received without waiting: the records of every held
 * connection are read as they arrive, from the worker's poll loop, and a
 * request is served only once it is whole (BEGIN_REQUEST, PARAMS, STDIN
 * to its empty record). A client that trickles its body holds no worker;
 * one whose request is not whole within [http] request_timeout gets a 408
 * and its connection is closed. At most max_body + 1 body bytes are kept
 * (the rest of a larger body is dropped as it comes: 413).
 *
 * A kept connection is only ever closed by the web server. A worker that
 * stops (reload, max_requests, shutdown) or that is about to wait on
 * PostgreSQL passes its idle connections to the pool's other workers over
 * the pool's hand-off channel (SCM_RIGHTS), so no request is ever sent to a
 * connection that is being closed, and none waits behind a slow one. */
#ifndef BLOQR_FCGI_H
#define BLOQR_FCGI_H

#include "buf.h"
#include "worker.h"

/* Connections one worker holds at most (kept ones included). */
#define FCGI_MAX_CONNS 256

/* Serve FastCGI requests on listen_fd until a stop signal (SIGTERM,
 * SIGINT, SIGQUIT) or [pool] max_requests; a request in flight is always
 * finished first, and so is one half received (for up to 8 s). handoff is the pool's channel (receive end, send end),
 * or NULL when the process is alone (spawned mode): its kept connections
 * are then closed when it stops. Returns 0 on a requested stop, -1 on an
 * error. */
int fcgi_run(struct app *app, int listen_fd, const int handoff[2]);

/* Make the hand-off channel: a pair of connected SOCK_SEQPACKET sockets,
 * sv[0] to receive, sv[1] to send; both inherited by every worker. */
int fcgi_handoff_channel(int sv[2]);

/* FastCGI's name-value pairs (lengths of 1 or 4 bytes) appended to out as
 * "name\0value\0"…; -1 when malformed (a NUL in a name or value
 * included) or out of memory. */
int fcgi_params_decode(const char *data, size_t len, struct buf *out);

#endif
