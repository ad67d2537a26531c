#!/bin/sh
# The LUA that scripts/test-lua.sh gives the busted specs (spec/helpers.lua
# starts every Lua subprocess with it): runs the script under the Lua being
# tested, $COMPAT_LUA. Test peers that are not the subject and need Lua 5.3+
# (they use spec/helpers.lua's raw codec: 5.3 operators, string.pack) run
# under the driver's Lua instead (hostile_spec already starts good_client.lua
# with lua5.4; raw_server.lua serves client_spec).
case "$1" in
  */spec/servers/good_client.lua|*/spec/servers/raw_server.lua)
    exec "${COMPAT_DRIVER:-lua5.4}" "$@" ;;
esac
exec ${COMPAT_LUA:?COMPAT_LUA is not set} "$@"
