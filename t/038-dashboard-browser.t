#!/usr/bin/env perl
# The dashboard in a real browser (t/e2e/dashboard.mjs): Debian's Chromium
# driven by playwright-core lists sessions, filters, closes one with a code
# and a reason, reads the charts and the breakdown.  make test installs
# both (make e2e-deps).
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

exec 'node', 't/e2e/dashboard.mjs' or die "cannot run node: $!";
