// Node ws fan-out server on /ws: every message goes to all the other clients
// (a loop over wss.clients, as ws's README broadcasts).  node node_fanout.js PORT
'use strict';
const path = require('path');
const { WebSocketServer, WebSocket } = require(path.join(__dirname, '../../spec/interop/node_modules/ws'));

const port = Number(process.argv[2] || 8080);
const wss = new WebSocketServer({ host: '127.0.0.1', port, path: '/ws', perMessageDeflate: false });
wss.on('connection', (sock) => {
  sock.on('message', (data, isBinary) => {
    for (const c of wss.clients) {
      if (c !== sock && c.readyState === WebSocket.OPEN) c.send(data, { binary: isBinary });
    }
  });
  sock.on('error', () => {});
});
wss.on('listening', () => console.error(`node ws fan-out on ${port}`));
