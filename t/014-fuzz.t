#!/usr/bin/env perl
# A short libFuzzer run of every harness in fuzz/ (util/fuzz 5): make fuzz
# runs them for a minute.  Skipped when clang's fuzzer runtime is missing.
use strict;
use warnings;

if (system('command -v clang >/dev/null 2>&1') != 0
    || !glob('/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a'))
{
    print "1..0 # SKIP clang / libclang-rt-14-dev missing (make deps)\n";
    exit 0;
}

# the harnesses test the standalone sources, not the nginx under test: they
# run where the distribution's nginx is tested (Debian 12's, Debian 13's in
# its root), each in its own work folder, not once per target of the matrix
if (defined $ENV{TEST_NGINX_DEB_TARGET} && $ENV{TEST_NGINX_DEB_TARGET} ne '1') {
    print "1..0 # SKIP the fuzzers do not depend on the nginx under test:"
        . " run on the distribution's targets\n";
    exit 0;
}
$ENV{FUZZ_OUT} = ($ENV{TEST_NGINX_WORKDIR} || 'build') . '/fuzz';

my @harnesses = map { m{fuzz/(fuzz_\w+)\.c$} ? $1 : () } glob('fuzz/fuzz_*.c');

print "1..1\n";
my $out = `util/fuzz 5 2>&1`;
my @done = $out =~ /Done (\d+) runs/g;
my $ok = $? == 0 && @harnesses && @done == @harnesses;
print $ok ? "ok 1 - @harnesses: no crash, no disagreement "
            . "in 5 s each (@done runs)\n"
          : "not ok 1 - a fuzz harness failed (" . scalar(@done) . " of "
            . scalar(@harnesses) . " finished)\n";
print map { "# $_\n" } grep { /Done|crash|ERROR/ } split /\n/, $out;
exit($ok ? 0 : 1);
