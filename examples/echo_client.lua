-- Echo client: send each message, print each echo, close with 1000.
--   lua5.4 examples/echo_client.lua [--cafile FILE] [--insecure] URL [message...]
-- With no messages, sends each line read from stdin. --cafile trusts the CA
-- in FILE for wss://; --insecure skips the certificate check.
local ws = require "ws"

local function die(fmt, ...)
  io.stderr:write("echo_client: ", string.format(fmt, ...), "\n")
  os.exit(1)
end

local tls, first = nil, 1
while arg[first] == "--cafile" or arg[first] == "--insecure" do
  tls = tls or { verify = true }
  if arg[first] == "--insecure" then tls.verify = false; first = first + 1
  else tls.cafile = arg[first + 1]; first = first + 2 end
end
local url = arg[first]
if not url or url:sub(1, 1) == "-" then
  io.stderr:write("usage: lua5.4 examples/echo_client.lua [--cafile FILE] [--insecure] URL [message...]\n")
  os.exit(2)
end

local conn, err = ws.connect(url, { timeout = 10, tls = tls })
if not conn then die("%s", err) end

local function echo(message)
  local ok, serr = conn:send(message)
  if not ok then die("send: %s", serr) end
  local data, rerr, code, reason = conn:receive(10)
  if not data then
    die("receive: %s%s", rerr, code and string.format(" (%d %s)", code, reason or "") or "")
  end
  io.stdout:write(data, "\n")
  io.stdout:flush()
end

if #arg > first then
  for i = first + 1, #arg do echo(arg[i]) end
else
  for line in io.stdin:lines() do echo(line) end
end

local ok, cerr = conn:close(1000)
if not ok then die("close: %s", cerr) end
