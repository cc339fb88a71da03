#!/usr/bin/env perl
# The demo in a real browser (t/e2e/demo.mjs): Debian's Chromium driven by
# playwright-core.  make test installs both (make e2e-deps).
use strict;
use warnings;

my $chromium = $ENV{CHROMIUM} || '/usr/bin/chromium';

if (!-x $chromium || !-d 't/e2e/node_modules/playwright-core'
    || system('node --version >/dev/null 2>&1') != 0)
{
    print "1..0 # SKIP chromium, node or playwright-core missing "
          . "(make e2e-deps)\n";
    exit 0;
}

exec 'node', 't/e2e/demo.mjs' or die "cannot run node: $!";
