#!/usr/bin/env perl
# permessage-deflate against peers this project did not write: Python
# websockets as the client and the upstream, every parameter RFC 7692
# allows, fragments, hooks, ws_proxy_pass, the variables and stats()
# (t/e2e/deflate.py: its own nginx, TAP).
use strict;
use warnings;

if (system('/usr/bin/python3 -c "import websockets" 2>/dev/null') != 0) {
    print "1..0 # SKIP python3-websockets missing (make deps)\n";
    exit 0;
}

exec '/usr/bin/python3', 't/e2e/deflate.py' or die "cannot run python3: $!";
