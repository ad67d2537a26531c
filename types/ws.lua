---@meta
--- LuaLS (lua-language-server) type definitions for the objects lua-ws hands
-- out: connections, the loop, requests and responses. Add this folder to
-- `workspace.library` for completion and type checks. The option tables
-- (ws.ListenOptions, ...) are in types/options.lua, generated from ws.options.
-- @module ws.types

---@alias ws.Kind "text"|"binary"

-- Error tokens returned after nil:
---@alias ws.Error
---| "closed"          # the connection is closed (receive adds code, reason)
---| "timeout"         # the wait ran out; the connection stays open
---| "protocol error"  # the peer broke RFC 6455 (closed with 1002)
---| "invalid utf-8"   # a text message was not UTF-8 (closed with 1007)
---| "message too big" # past max_message (closed with 1009)

--- An HTTP request (the upgrade or a page's).
---@class ws.Request
---@field method string "GET", ...
---@field path string the target's path, still percent-encoded
---@field query string? the raw query string, without "?"
---@field headers table<string, string> lower-case names
---@field params table<string, string> the decoded query, with the route's captures over it
local Request = {}

--- The answer to a refused handshake (the third result of ws.connect).
---@class ws.Response
---@field status integer
---@field reason string
---@field headers table<string, string> lower-case names
---@field body string the body, at most max_header bytes
local Response = {}

--- One WebSocket connection, server or client side.
---@class ws.Conn
---@field role "server"|"client"
---@field state "open"|"closing"|"closed"
---@field peer string "ip:port" of the peer ("[ip]:port" for IPv6)
---@field protocol string? the subprotocol agreed on
---@field request ws.Request? (server side) the upgrade request
---@field response table? (client side) the 101 response
---@field params table<string, string>? (server side) request.params
---@field close_code integer? the close code, once closed
---@field close_reason string? the close reason, once closed
---@field on_pong fun(conn: ws.Conn, data: string)? called for every pong
local Conn = {}

--- Receive one message: data, kind; or nil, "timeout" (still open); or
-- nil, "closed" (or a protocol error token), code, reason once closed.
---@param timeout? number seconds (default: wait, up to idle_timeout)
---@return string|nil data
---@return ws.Kind|ws.Error kind_or_err
---@return integer? code
---@return string? reason
function Conn:receive(timeout) end

--- Iterator: for data, kind in conn:messages() do ... end (not inside a ws.loop task on PUC Lua 5.1).
---@param timeout? number seconds per message
---@return fun(): string?, ws.Kind?
function Conn:messages(timeout) end

--- Send a message; waits (in a task: yields) until written or send_timeout.
---@param data string
---@param kind? ws.Kind default "text" (must be UTF-8)
---@return true|nil ok
---@return ws.Error? err
function Conn:send(data, kind) end

--- Queue a frame encoded once (ws.core.frame) without waiting: for fan-out.
---@param bytes string
---@return true|nil ok
---@return ws.Error? err
function Conn:send_encoded(bytes) end

--- Write what is queued without waiting (the rest by a task; past max_queue
--- the connection is dropped with 1008): for code that queues frames itself (ws.fanout).
---@return true|nil ok
---@return ws.Error? err
function Conn:write_queued() end

--- Send a ping (at most 125 bytes); the pong goes to on_pong.
---@param data? string
---@return true|nil ok
---@return ws.Error? err
function Conn:ping(data) end

--- Send an unsolicited pong (at most 125 bytes).
---@param data? string
---@return true|nil ok
---@return ws.Error? err
function Conn:pong(data) end

--- Close: send code and reason, wait up to timeout for the peer's close.
---@param code? integer default 1000
---@param reason? string
---@param timeout? number default close_timeout
---@return true|nil ok
---@return integer|ws.Error code_or_err the peer's code
---@return string? reason the peer's reason
function Conn:close(code, reason, timeout) end

--- Call fn(conn, code, reason) once when the connection is torn down, whoever closed it.
---@param fn fun(conn: ws.Conn, code: integer, reason: string)
---@return ws.Conn
function Conn:on_close(fn) end

--- Drop the connection at once, without a close handshake.
---@param code? integer recorded as close_code (default 1006)
---@param reason? string
function Conn:abort(code, reason) end

--- The coroutine scheduler (ws.loop): every handler is one of its tasks.
---@class ws.Loop
---@field stopped boolean
local Loop = {}

--- Run fn(...) as a new task.
---@param fn function
---@param ... any
function Loop:spawn(fn, ...) end

--- Sleep inside a task.
---@param secs number
function Loop:sleep(secs) end

--- Wait inside a task until a non-blocking socket is ready.
---@param sock table a LuaSocket socket (anything with getfd)
---@param mode "r"|"w"
---@param deadline? number absolute time (socket.gettime())
---@return true|nil ok
---@return "timeout"|"closed"|boolean|nil err_or_clean after ok: true when an epoll edge without hang-up woke a read wait
function Loop:wait(sock, mode, deadline) end

--- Let the other ready tasks run first.
function Loop:yield() end

--- Suspend the current task until wake(co, a, b) or the deadline (then nil, "timeout").
---@param deadline? number
---@return any a
---@return any b
function Loop:suspend(deadline) end

--- Wake a task suspended by suspend().
---@param co thread
---@param a any
---@param b any
---@return boolean woken
function Loop:wake(co, a, b) end

--- Wake every task waiting on sock with nil, "closed" (call before closing it).
---@param sock table
function Loop:forget(sock) end

--- One round: run ready tasks, wait at most timeout seconds.
---@param timeout? number
function Loop:step(timeout) end

--- Run until stop() or no task is left.
function Loop:run() end

--- Make run() return.
function Loop:stop() end
