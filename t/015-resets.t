#!/usr/bin/env perl
# Peers that reset their connection (TCP RST) between frames and in the
# middle of one, on either side: t/e2e/resets.py (python sockets can send a
# real RST, cosockets cannot).
use strict;
use warnings;

exec '/usr/bin/python3', 't/e2e/resets.py' or die "cannot run python3: $!";
