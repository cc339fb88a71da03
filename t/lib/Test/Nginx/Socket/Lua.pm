package Test::Nginx::Socket::Lua;

# The project's stand-in for OpenResty's Test::Nginx::Socket::Lua: the
# runner of Test::Nginx::Socket (see there and docs/testing.md), plus the
# real one's TEST_NGINX_INIT_BY_LUA: Lua code run first in init_by_lua
# (prepended to the block's init_by_lua_block, or added as one).

use Test::Nginx::Socket -Base;

my $init = $ENV{TEST_NGINX_INIT_BY_LUA};

if (defined $init && length $init) {
    Test::Nginx::Socket::set_http_config_filter(sub {
        my $http = shift;
        return $http if $http =~ /\binit_by_lua_file\b/;
        return $http if $http =~ s/^([^#\n]*?\binit_by_lua_block\s*\{)/$1 $init\n/m;
        (my $quoted = $init) =~ s/([\\'])/\\$1/g;
        return $http if $http =~ s/^([^#\n]*?\binit_by_lua\s+(['"]))/$1$quoted /m;
        return "$http\n    init_by_lua_block { $init }\n";
    });
}

1;
