// Node `ws` server peer for the lua-ws interop tests.
//   node spec/peers/node_server.js --port P [--cert F --key F] [--mode M] [--code C --reason R]
// Every connection gets a mode: the request path if it names one (/echo,
// /fragment, /ping, /close?code=C&reason=R), else --mode (default echo).
//   echo      echo every message with its type (text/binary)
//   fragment  send a fragmented text (a multi-byte char split across frames)
//             and a fragmented binary message, then echo
//   ping      ping with "ping-from-node"; on the pong, report it as a JSON
//             line and send the text "pong:<payload>", then echo
//   close     close at once with the given code and reason
// Every close is reported as a JSON line on stdout:
//   {"event":"close","mode":...,"code":N,"reason":"..."}
'use strict';
const path = require('path');
const fs = require('fs');
const http = require('http');
const https = require('https');
const { WebSocketServer } = require(path.join(__dirname, '../interop/node_modules/ws'));

const args = { port: 0, mode: 'echo', code: 1000, reason: '' };
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
}

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

// The fragmented messages the "fragment" mode sends (the test knows them too).
const FRAG_TEXT = [Buffer.from('héllo '), Buffer.from([0xe2]), Buffer.from([0x82, 0xac]), Buffer.from(' wörld 😀')];
const FRAG_BIN = [0, 1, 2].map((k) => {
  const b = Buffer.alloc(70000);
  for (let i = 0; i < b.length; i++) b[i] = (i * 7 + k) & 0xff;
  return b;
});

const server = args.cert
  ? https.createServer({ cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) })
  : http.createServer();
const wss = new WebSocketServer({ server, maxPayload: 64 * 1024 * 1024 });

wss.on('connection', (ws, req) => {
  const url = new URL(req.url, 'http://x');
  const name = url.pathname.replace(/^\//, '');
  const mode = ['echo', 'fragment', 'ping', 'close'].includes(name) ? name : args.mode;
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('close', (code, reason) => emit({ event: 'close', mode, code, reason: reason.toString() }));
  ws.on('error', (err) => emit({ event: 'error', mode, error: String(err && err.message) }));
  if (mode === 'fragment') {
    FRAG_TEXT.forEach((b, i) => ws.send(b, { binary: false, fin: i === FRAG_TEXT.length - 1 }));
    FRAG_BIN.forEach((b, i) => ws.send(b, { binary: true, fin: i === FRAG_BIN.length - 1 }));
  } else if (mode === 'ping') {
    ws.on('pong', (data) => {
      emit({ event: 'pong', data: data.toString() });
      ws.send('pong:' + data.toString());
    });
    ws.ping('ping-from-node');
  } else if (mode === 'close') {
    const code = Number(url.searchParams.get('code') || args.code);
    const reason = url.searchParams.get('reason') || args.reason;
    ws.close(code, reason);
  }
});

server.listen(Number(args.port), '127.0.0.1', () => emit({ event: 'listening', port: server.address().port }));
process.on('SIGTERM', () => process.exit(0));
