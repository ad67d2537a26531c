---@meta
--- LuaLS (lua-language-server) type definitions for the objects lua-ws hands
-- out: the module itself (require "ws", ws.Module), servers, connections,
-- the loop, the hub, requests and responses. Add this folder to
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
---@field peer string "ip:port" of the peer ("[ip]:port" for IPv6); behind trusted proxies, the client they name
---@field proxy_peer string? (server side) the TCP peer, when trusted proxies named another client as peer
---@field scheme string? (server side) "http" or "https": the TLS of the connection, or what a trusted proxy says
---@field sched table? the scheduler it waits through (a ws.Loop, ws.cqueues.sched, ws.copas.sched), nil: it blocks
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

--- Call fn(conn, data, kind) for every message until the connection closes;
-- returns what receive() returns then. On a ws.loop the loop calls fn itself
-- as each message comes (no task switch); fn must not wait, and its sends
-- never wait there (queued; past max_queue the peer is dropped with 1008).
---@param fn fun(conn: ws.Conn, data: string, kind: ws.Kind)
---@return nil
---@return ws.Error err
---@return integer? code
---@return string? reason
function Conn:serve(fn) end

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

--- The peer's TLS certificate (lua-ws's own TLS only), or nil (plain, none sent, or closed).
---@class ws.PeerCertificate
---@field subject string RFC 2253, e.g. "CN=alice,O=Example"
---@field issuer string RFC 2253
---@field names string[] subjectAltName DNS names and IP addresses: "DNS:example.com", "IP:127.0.0.1"
---@field not_before integer Unix seconds
---@field not_after integer Unix seconds
---@field sha256 string SHA-256 of the DER certificate, lower-case hex
---@field verified boolean it chained to cafile/capath (and, on a client, matched the host)
---@return ws.PeerCertificate|nil cert
---@return string? err
function Conn:peer_certificate() end

--- The coroutine scheduler (ws.loop): every handler is one of its tasks.
---@class ws.Loop
---@field stopped boolean
local Loop = {}

--- Run fn(...) as a new task.
---@param fn function
---@param ... any
function Loop:spawn(fn, ...) end

--- Run fn(arg) as a new task at time due (socket.gettime() seconds) unless
-- cancel(timer) comes first; no coroutine exists until it fires.
---@param due number
---@param fn function
---@param arg? any
---@return table timer
function Loop:at(due, fn, arg) end

--- Cancel a timer of at() (no effect once it fired or was cancelled).
---@param timer table
function Loop:cancel(timer) end

--- Whether the running coroutine is one of this loop's tasks.
---@return boolean
function Loop:in_task() end

--- Sleep inside a task.
---@param secs number
function Loop:sleep(secs) end

--- Have the loop itself call obj:readable(clean), in no task, on every read
-- edge of sock until unwatch(sock, obj), or obj:forgotten() when the socket
-- is forgotten (about to close) first. Returns true when an edge came before.
---@param sock table
---@param obj table with readable(obj, clean) and forgotten(obj)
---@return boolean
function Loop:watch(sock, obj) end

--- End a watch of sock by obj (no effect without one).
---@param sock table
---@param obj table
function Loop:unwatch(sock, obj) end

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

--- The descriptor another loop watches for readability (epoll only), or nil.
---@return integer|nil
function Loop:pollfd() end

--- The events to watch pollfd() for: always "r".
---@return string
function Loop:events() end

--- Seconds until the next deadline (0: tasks are ready), or nil when nothing is due.
---@return number|nil
function Loop:timeout() end

--- A listening server (ws.listen).
---@class ws.Server
---@field loop ws.Loop the scheduler its handlers run on
---@field host string where it listens
---@field port integer where it listens (the one picked for port = 0)
---@field address string host:port as in a URL ("[::1]:8080" for IPv6)
---@field conns table<ws.Conn, true> the open connections
---@field open boolean false once closed
---@field opts table the checked options, defaults included
---@field hub ws.Hub? the hub attached (ws.listen{ hub = })
local Server = {}

--- Serve WebSocket connections on path (exact "/ws", pattern "/rooms/:name" or prefix "/api/*").
---@param path string
---@param handler fun(conn: ws.Conn)
---@return ws.Server
function Server:route(path, handler) end

--- Answer plain GET and HEAD on path with HTML, or fn(request) -> status, body (a string or an open file), headers.
---@param path string
---@param page string|fun(request: ws.Request): integer, string|file*, table<string, string>?
---@return ws.Server
function Server:page(path, page) end

--- Serve the files under folder at prefix (server:static("/static/", "public/")).
---@param prefix string
---@param folder string
---@return ws.Server
function Server:static(prefix, folder) end

--- Encode once and queue to every open connection but except, without waiting.
---@param data string
---@param kind? ws.Kind default "text"
---@param except? ws.Conn
---@return integer|nil count
---@return string? err "invalid utf-8"
function Server:broadcast(data, kind, except) end

--- Serve until close(), or until a drain that a signal started is done.
function Server:run() end

--- One round of the loop, waiting at most timeout seconds (default 0).
---@param timeout? number
---@return boolean
function Server:step(timeout) end

--- The descriptor a host loop watches for readability (cqueues.poll(server) works).
---@return integer|nil
function Server:pollfd() end

--- The events to watch pollfd for: "r".
---@return string
function Server:events() end

--- Seconds until the loop has work due (0: now), or nil: wait on pollfd only.
---@return number|nil
function Server:timeout() end

--- Graceful stop: health paths 503, stop accepting (after linger), close 1001 spread over grace;
-- returns how many connections it closed.
---@param opts? { grace?: number, linger?: number }
---@return integer
function Server:drain(opts) end

--- What "TERM", "INT" or "HUP" does while run() runs: fn(server, name) in a loop task.
---@param name "TERM"|"INT"|"HUP"
---@param fn fun(server: ws.Server, name: string)
---@return ws.Server
function Server:on_signal(name, fn) end

--- Stop accepting, close every connection (1001 by default), then stop the loop.
---@param code? integer
---@param reason? string
function Server:close(code, reason) end

--- Rooms (topics) and pub/sub, in one process or across processes over Redis (ws.hub).
---@class ws.Hub
---@field state "local"|"down"|"up"
local Hub = {}

--- Tie the hub to a server: its loop runs the Redis tasks, hub:broadcast reaches its connections.
---@param server ws.Server
---@return ws.Hub
function Hub:attach(server) end

--- Start the Redis tasks on loop l (done by attach or the loop option).
---@param l ws.Loop
function Hub:start(l) end

--- Subscribe conn to topic (idempotent; left on close).
---@param conn ws.Conn
---@param topic string
---@return true|nil ok
---@return string? err "closed"
function Hub:subscribe(conn, topic) end

--- Unsubscribe conn from topic, or from every topic if topic is nil.
---@param conn ws.Conn
---@param topic? string
function Hub:unsubscribe(conn, topic) end

--- Call fn(data, kind, info) for every message on topic, from any process; returns fn.
---@param topic string
---@param fn fun(data: string, kind: ws.Kind, info: table)
---@return function
function Hub:on(topic, fn) end

--- Remove a listener added by on().
---@param topic string
---@param fn function
function Hub:off(topic, fn) end

--- Local connections subscribed to topic (this process).
---@param topic string
---@return integer
function Hub:count(topic) end

--- State and counters: state, node, topics, published, received, delivered, dropped, ...
---@return table
function Hub:status() end

--- Publish to topic's subscribers on every process (opts.except: a local connection left out); never waits.
-- Returns the local count, then true when handed to Redis, or nil, "redis down" / "redis busy" / "invalid utf-8".
---@param topic string
---@param data string
---@param kind? ws.Kind
---@param opts? { except?: ws.Conn }
---@return integer|nil count
---@return true|string|nil sent_or_err
function Hub:publish(topic, data, kind, opts) end

--- Send to every connection of the attached server, on every process (returns as publish).
---@param data string
---@param kind? ws.Kind
---@param opts? { except?: ws.Conn }
---@return integer|nil count
---@return true|string|nil sent_or_err
function Hub:broadcast(data, kind, opts) end

--- Ordered mode, inside a task: the topic's messages after offset opts.since, as
-- { offset, data, kind } (at most opts.limit, default 10,000), the epoch, and
-- true when more may follow (ask again with since = the last offset); or nil,
-- err ("gap" with the epoch).
---@param topic string
---@param opts? { since?: integer, epoch?: string, limit?: integer }
---@return table[]|nil messages
---@return string? epoch_or_err
---@return boolean|string|nil more_or_epoch
function Hub:history(topic, opts) end

--- Stop the Redis connections (local delivery keeps working).
function Hub:close() end

--- What require "ws.loop" returns (ws.loop).
---@class ws.LoopModule
local loop = {}

--- A new loop: opts.poller "epoll" (default) or "select", opts.logger, opts.spin.
---@param opts? { poller?: string|table, logger?: function|false, spin?: number|false }
---@return ws.Loop
function loop.new(opts) end

--- The loop running the current coroutine as one of its tasks, or nil.
---@return ws.Loop|nil
function loop.current() end

--- pcall(f, ...) through which f may wait (yield), on Lua 5.1 too.
---@param f function
---@param ... any
---@return boolean ok
---@return any ...
function loop.pcall(f, ...) end

--- xpcall(f, msgh, ...) through which f may wait (yield), on Lua 5.1 too.
---@param f function
---@param msgh function
---@param ... any
---@return boolean ok
---@return any ...
function loop.xpcall(f, msgh, ...) end

--- What require "ws" returns (lua/ws/init.lua).
---@class ws.Module
---@field _VERSION string "MAJOR.MINOR.PATCH"
---@field _VERSION_NUM integer MAJOR * 10000 + MINOR * 100 + PATCH
---@field core table the C core (ws.core)
---@field loop ws.LoopModule the coroutine scheduler
---@field options table the option schemas (ws.options)
local ws = {}

--- Listen on host:port and serve WebSocket routes and pages.
---@param options? ws.ListenOptions
---@return ws.Server|nil server
---@return string? err
function ws.listen(options) end

--- The server side of the handshake on a socket accepted elsewhere.
---@param sock table
---@param options? ws.AcceptOptions
---@return ws.Conn|nil conn
---@return string? err
function ws.accept(sock, options) end

--- Open a ws:// or wss:// connection.
---@param url string
---@param options? ws.ConnectOptions
---@return ws.Conn|nil conn
---@return string? err
---@return ws.Response? response on a refused handshake
function ws.connect(url, options) end

--- The default origin check: no Origin, or its host equal to Host.
---@param origin string?
---@param request ws.Request
---@return boolean
function ws.same_origin(origin, request) end

--- An "info" line on stderr with a time stamp: ws.log("listening on %s", address).
---@param fmt string
---@param ... any
function ws.log(fmt, ...) end

--- Rooms and pub/sub, in this process or across processes over Redis.
---@param options? ws.HubOptions
---@return ws.Hub
function ws.hub(options) end

return ws
