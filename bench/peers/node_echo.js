// Node ws echo server on /ws:  node node_echo.js PORT [deflate | tls CERT KEY]
// deflate: permessage-deflate on with ws's defaults (zlib level default, 1 KiB threshold)
// tls: wss:// through Node's https server
// ws comes from spec/interop (pinned 8.23.0); bufferutil from bench/node_modules
// (run.sh sets NODE_PATH so ws's own require('bufferutil') finds it).
'use strict';
const path = require('path');
const { WebSocketServer } = require(path.join(__dirname, '../../spec/interop/node_modules/ws'));

let native = false;
try { require.resolve('bufferutil'); native = true; } catch (e) { /* JS fallback in ws */ }

const port = Number(process.argv[2] || 8080);
const tls = process.argv[3] === 'tls';
const fs = require('fs');
const server = tls ? require('https').createServer({
  cert: fs.readFileSync(process.argv[4]), key: fs.readFileSync(process.argv[5]),
}) : null;
const wss = new WebSocketServer({
  ...(tls ? { server } : { host: '127.0.0.1', port }), path: '/ws',
  maxPayload: 16 * 1024 * 1024,
  perMessageDeflate: process.argv[3] === 'deflate',
});
wss.on('connection', (sock) => {
  sock.on('message', (data, isBinary) => sock.send(data, { binary: isBinary }));
  sock.on('error', () => {});
});
const up = () => console.error(`node ws echo on ${port} (bufferutil: ${native}, ${process.argv[3] || 'plain'})`);
if (tls) server.listen(port, '127.0.0.1', up); else wss.on('listening', up);
