// Node `ws` peer for the subprotocol tests (spec/subprotocol_spec.lua).
//   node spec/peers/subprotocols.js client URL OFFERS_JSON
//     For each offer (a list of subprotocols), connects offering it, sends
//     "which", and prints {"offer":[...],"chosen":<ws.protocol>,"server_says":<reply>}
//     or {"offer":[...],"error":"..."} when the handshake fails.
//   node spec/peers/subprotocols.js server PORT SUPPORTED_JSON
//     A server whose handleProtocols picks the first offered one it supports;
//     every message is answered with the chosen one ("none" if none).
'use strict';
const path = require('path');
const WebSocket = require(path.join(__dirname, '../interop/node_modules/ws'));
const { emit } = require('./peer_util');

const [mode, where, json] = process.argv.slice(2);
const lists = JSON.parse(json);

function once(offer) {
  return new Promise((resolve) => {
    const ws = new WebSocket(where, offer, { handshakeTimeout: 10000 });
    ws.on('open', () => ws.send('which'));
    ws.on('message', (data) => {
      emit({ offer, chosen: ws.protocol, server_says: data.toString() });
      ws.close(1000);
    });
    ws.on('error', (err) => emit({ offer, error: String(err.message) }));
    ws.on('close', resolve);
  });
}

if (mode === 'client') {
  (async () => { for (const offer of lists) await once(offer); })();
} else {
  const wss = new WebSocket.Server({
    host: '127.0.0.1',
    port: Number(where),
    handleProtocols: (offered) => [...offered].find((p) => lists.includes(p)) || false,
  });
  wss.on('connection', (ws) => ws.on('message', () => ws.send(ws.protocol || 'none')));
  wss.on('listening', () => emit({ event: 'listening', port: Number(where) }));
}
