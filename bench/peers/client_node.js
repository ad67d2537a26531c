// Client throughput: Node ws's client echoing through a server, DEPTH
// messages in flight on one connection; every echo checked. Also the
// client's own CPU (user + system) per message over the timed window.
//   node client_node.js URL SIZE DEPTH SECS
'use strict';
const path = require('path');
const WebSocket = require(path.join(__dirname, '../../spec/interop/node_modules/ws'));

const [url, size, depth, secs] = [process.argv[2], +process.argv[3], +process.argv[4], +process.argv[5]];
const msgs = [];
for (let i = 1; i <= 16; i++) msgs.push(String.fromCharCode(64 + i).repeat(size));
const sock = new WebSocket(url, { perMessageDeflate: false, maxPayload: 16 << 20 });
let sent = 0, got = 0, errors = 0, t0, c0, tEnd, done = false;
const send = () => { sent++; sock.send(msgs[sent % 16]); };
sock.on('open', () => {
  t0 = process.hrtime.bigint();
  c0 = process.cpuUsage();
  tEnd = t0 + BigInt(Math.round(secs * 1e9));
  for (let i = 0; i < depth; i++) send();
});
sock.on('message', (data) => {
  got++;
  if (done) { if (got === sent) sock.close(); return; }
  if (data.toString() !== msgs[got % 16]) errors++;
  const now = process.hrtime.bigint();
  if (now >= tEnd) {
    done = true;
    const elapsed = Number(now - t0) / 1e9;
    const cpu = process.cpuUsage(c0);   // µs
    console.log(`RESULT mode=client size=${size} depth=${depth} secs=${elapsed.toFixed(2)} msgs=${got} ` +
      `msgs_per_s=${(got / elapsed).toFixed(0)} cpu_us_per_msg=${((cpu.user + cpu.system) / got).toFixed(1)} ` +
      `errors=${errors}`);
    if (got === sent) sock.close();
    return;
  }
  send();
});
sock.on('error', (e) => { console.error(e.message); process.exit(1); });
