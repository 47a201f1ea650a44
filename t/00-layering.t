#!/usr/bin/env perl
# Architecture rules that a reading of the source can prove:
#  - only the cache module (src/cache*.c/h) opens or queries SQLite;
#  - no handler talks to libpq: no PQ* name, no <libpq-fe.h>, no SQL
#    transaction of its own (pg_begin/commit/rollback/query);
#  - the write protocol of the cache (generation guard, write-through,
#    deletes, credential fills) is run by the stores, never by a handler;
#  - nothing below main() calls exit().
use strict;
use warnings;
use Test::More;
use File::Find;

my $src = $ENV{BLOQR_SRCDIR} || '.';
my @files;
find(sub { push @files, $File::Find::name if /\.[ch]$/ }, "$src/src", "$src/cgi-bin");
ok(@files > 10, 'found the sources') or BAIL_OUT("no sources under $src/src");

sub slurp { open my $fh, '<', $_[0] or die "$_[0]: $!"; local $/; <$fh> }

my (@sqlite, @handler_pq, @handler_tx, @handler_cache, @exits);

for my $f (sort @files) {
	my $text = slurp($f);
	(my $rel = $f) =~ s{^\Q$src\E/}{};
	my $is_cache = $rel =~ m{^src/cache[^/]*\.[ch]$};
	push @sqlite, $rel if !$is_cache && $text =~ /sqlite3\.h|\bsqlite3_\w+\s*\(/;
	if ($rel =~ m{^src/handlers/}) {
		push @handler_pq, $rel if $text =~ /\bPQ[a-z]\w*\s*\(|\bPGresult\b|<libpq-fe\.h>/;
		push @handler_tx, $rel if $text =~ /\bpg_(begin|commit|rollback|query|exec|page|each)\s*\(/;
	}
	# The write protocol of the cache belongs to the stores (and the cache).
	push @handler_cache, $rel
	    if $rel !~ m{^src/(cache[^/]*|deployments|storage|storage_admin|users|auth)\.[ch]$}
	    && $text =~ /\bcache_(gen|written|deleted|cred_put)\s*\(/;
	# exit() is for main() alone; _exit/atexit are other names.
	push @exits, $rel if $rel !~ m{(^cgi-bin/bloqr\.c|^src/admin/main\.c)$} && $text =~ /(?<![_\w])exit\s*\(/;
}
is_deeply(\@sqlite, [], 'only src/cache*.c touches SQLite') or diag "SQLite used in: @sqlite";
is_deeply(\@handler_pq, [], 'handlers never see libpq (PQ*, PGresult, <libpq-fe.h>)')
    or diag "libpq in: @handler_pq";
is_deeply(\@handler_tx, [], 'handlers run no SQL or transaction of their own: the stores do')
    or diag "pg_begin/commit/query in: @handler_tx";
is_deeply(\@handler_cache, [], "the cache's write protocol is run by the stores alone")
    or diag "cache_gen/written/deleted in: @handler_cache";
is_deeply(\@exits, [], 'no exit() below main') or diag "exit() in: @exits";
done_testing();
