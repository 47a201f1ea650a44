#!/usr/bin/env perl
# Architecture rules that a reading of the source can prove:
#  - only the cache module (src/cache*.c/h) opens or queries SQLite;
#  - no handler builds SQL or talks to libpq directly;
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

my (@sqlite, @handler_pq, @exits);
for my $f (sort @files) {
	my $text = slurp($f);
	(my $rel = $f) =~ s{^\Q$src\E/}{};
	my $is_cache = $rel =~ m{^src/cache[^/]*\.[ch]$};
	push @sqlite, $rel if !$is_cache && $text =~ /sqlite3\.h|\bsqlite3_\w+\s*\(/;
	push @handler_pq, $rel if $rel =~ m{^src/handlers/} && $text =~ /\bPQ(exec|prepare|sendQuery)\w*\s*\(/;
	# exit() is for main() alone; _exit/atexit are other names.
	push @exits, $rel if $rel !~ m{(^cgi-bin/bloqr\.c|^src/admin/main\.c)$} && $text =~ /(?<![_\w])exit\s*\(/;
}
is_deeply(\@sqlite, [], 'only src/cache*.c touches SQLite') or diag "SQLite used in: @sqlite";
is_deeply(\@handler_pq, [], 'handlers run SQL only through the store modules')
    or diag "libpq calls in: @handler_pq";
is_deeply(\@exits, [], 'no exit() below main') or diag "exit() in: @exits";
done_testing();
