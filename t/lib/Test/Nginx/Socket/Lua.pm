package Test::Nginx::Socket::Lua;

# Stand-in for OpenResty's Test::Nginx::Socket::Lua: the same runner as our
# Test::Nginx::Socket (see there).

use strict;
use warnings;

use Test::Nginx::Socket -Base;

1;
