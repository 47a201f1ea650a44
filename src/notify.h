/* The sd_notify protocol of systemd (Type=notify), without libsystemd:
 * one datagram of "KEY=VALUE\n" lines to the unix socket named by
 * $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace). */
#ifndef BLOQR_NOTIFY_H
#define BLOQR_NOTIFY_H

/* Send state ("READY=1", "RELOADING=1", "STOPPING=1", "STATUS=..."; lines
 * separated by \n). 0 when sent or when there is no $NOTIFY_SOCKET (not
 * run by systemd); -1 with errno when it could not be sent. Safe to call
 * from the pool's master only: systemd listens to the main process. */
int notify_send(const char *state);

#endif
