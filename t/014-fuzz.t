#!/usr/bin/env perl
# A short libFuzzer run of the codec harnesses (util/fuzz 5): make fuzz runs it
# for a minute.  Skipped when clang's fuzzer runtime is missing.
use strict;
use warnings;

if (system('command -v clang >/dev/null 2>&1') != 0
    || !glob('/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a'))
{
    print "1..0 # SKIP clang / libclang-rt-14-dev missing (make deps)\n";
    exit 0;
}

print "1..1\n";
my $out = `util/fuzz 5 2>&1`;
my @done = $out =~ /Done (\d+) runs/g;
my $ok = $? == 0 && @done == 2;
print $ok ? "ok 1 - fuzz_frame and fuzz_utf8: no crash, no disagreement "
            . "in 5 s each (@done runs)\n"
          : "not ok 1 - a fuzz harness failed\n";
print map { "# $_\n" } grep { /Done|crash|ERROR/ } split /\n/, $out;
exit($ok ? 0 : 1);
