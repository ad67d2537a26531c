-- One rule for the header values of every head lua-ws writes (the client's
-- request, the server's responses, the 101 built in C): RFC 9110 section 5.5
-- field-value. ws.http and core.build_response give the same verdict.
local core = require "ws.core"
local http = require "ws.http"

local VALUES = {   -- value, allowed
  { "", true }, { "chat", true }, { "a b", true },
  { "a\tb", true }, { "a \t b", true },          -- HTAB and SP inside
  { "\128\255 caf\195\169", true },              -- obs-text
  { " a", false }, { "a ", false }, { "\ta", false }, { "a\t", false }, { " ", false }, { "\t", false },
  { "a\r\nX-Evil: 1", false }, { "a\nb", false }, { "a\rb", false }, { "a\0b", false },
  { "a\1b", false }, { "a\31b", false }, { "a\127", false },
}

-- (control bytes shown as \N: test names stay on one line)
local function show(s)
  return '"' .. s:gsub("[%c\128-\255]", function(c) return "\\" .. c:byte() end) .. '"'
end

describe("header field values (ws.http and the 101 builder)", function()
  local accept = core.accept_key(core.new_key())
  for _, case in ipairs(VALUES) do
    local value, allowed = case[1], case[2]
    it(show(value) .. (allowed and " is allowed" or " is refused"), function()
      assert.equal(allowed, core.field_value_valid(value))
      assert.equal(allowed, http.valid("X-Test", value))
      assert.equal(allowed and "X-Test: " .. value .. "\r\n" or nil, (http.header_lines { ["X-Test"] = value }))
      local head = http.head("GET / HTTP/1.1", { "Host", "h", "X-Test", value })
      assert.equal(allowed and "GET / HTTP/1.1\r\nHost: h\r\nX-Test: " .. value .. "\r\n\r\n" or nil, head)
      assert.equal(allowed, (pcall(core.build_response, accept, value)))
      assert.equal(allowed, (pcall(core.build_response, accept, nil, value)))
    end)
  end

  it("a field name must be a token", function()
    assert.is_true(http.valid("X-Ok_1", "v"))
    for _, name in ipairs { "", "Bad Name", "X:Y", "X\tY", "X\r\n" } do
      assert.is_false(http.valid(name, "v"), show(name))
    end
    assert.is_false(http.valid(1, "v"))
    assert.is_false(http.valid("X", 1))
  end)

  it("writes a whole number as digits on every Lua (120.0 is 120, 2^53 no e+15)", function()
    assert.equal("Retry-After: 120\r\n", http.header_lines { ["Retry-After"] = 120.0 })
    assert.equal("X-Big: 9007199254740992\r\n", http.header_lines { ["X-Big"] = 2 ^ 53 })
    assert.equal("X-Half: 0.5\r\n", http.header_lines { ["X-Half"] = 0.5 })
  end)
end)
