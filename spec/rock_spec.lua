-- The rock as a newcomer gets it: from a fresh clone of the committed tree,
-- `luarocks make` (offline, with Debian's lua-socket) and `luarocks test`
-- pass, and the installed `ws` command runs. Lua 5.4 only (#slow: a clone,
-- a C build and the fast specs once more).
local H = require "spec.helpers"

describe("luarocks make and luarocks test from a fresh clone #slow", function()
  it("builds, installs bin/ws, and passes the fast specs, offline", function()
    local dir = H.tmpdir()
    finally(function() H.sh("rm -rf " .. H.shell_quote(dir)) end)
    local script = table.concat({
      "set -e",
      "git clone -q " .. H.shell_quote(H.ROOT) .. " " .. dir .. "/clone",
      "cd " .. dir .. "/clone",
      "git checkout -q " .. H.run("git -C " .. H.shell_quote(H.ROOT) .. " rev-parse HEAD"):gsub("%s+$", ""),
      "env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 luarocks --lua-version=5.4 --tree=" .. dir ..
        "/tree make --deps-mode=none >" .. dir .. "/make.log 2>&1 || { cat " .. dir .. "/make.log; exit 1; }",
      "env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 timeout 120 luarocks --lua-version=5.4 test",
      "eval $(luarocks --lua-version=5.4 --tree=" .. dir .. "/tree path)",
      dir .. "/tree/bin/ws --version",
    }, "\n")
    local out, code = H.run("sh -c " .. H.shell_quote(script) .. " 2>&1")
    assert.equal(0, code, out)
    assert.matches("%d+ successes / 0 failures / 0 errors", out)
    assert.matches("lua%-ws 0%.1%.0\n$", out)
  end)
end)
