/* The one clock, as redis's monotonic.c: monotonic time for deadlines,
 * intervals and latencies, never moved by a change of the wall clock.
 * Timestamps that are shown or stored use the wall clock (text_now_ms). */
#ifndef BLOQR_CLOCK_H
#define BLOQR_CLOCK_H

long long clock_mono_us(void);
long long clock_mono_ms(void);
/* Milliseconds with their fraction, for latencies. */
double clock_mono_ms_f(void);

#endif
