#!/usr/bin/env perl
# The tap across two workers: t/e2e/taps.py runs its own nginx with a
# master process (Test::Nginx runs without one).
use strict;
use warnings;

if (system('/usr/bin/python3 -c "import websockets" 2>/dev/null') != 0) {
    print "1..0 # SKIP python3-websockets missing (make deps)\n";
    exit 0;
}

exec '/usr/bin/python3', 't/e2e/taps.py'
    or die "cannot run python3: $!";
