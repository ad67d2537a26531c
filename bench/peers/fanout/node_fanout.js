// The Node setup bench/fanout_redis.sh compares with: ws + the redis npm
// client, rooms across processes as examples/chat.lua does them (one Redis
// channel per room, node id to skip our own echo, local delivery at once).
//   node bench/peers/fanout/node_fanout.js PORT REDIS_PORT
const { WebSocketServer } = require("ws");
const { createClient } = require("redis");
const crypto = require("crypto");

const port = Number(process.argv[2]);
const redisPort = Number(process.argv[3]);
const node = crypto.randomBytes(8).toString("hex");
const rooms = new Map();   // room -> Set of sockets

async function main() {
  const pub = createClient({ url: `redis://127.0.0.1:${redisPort}` });
  const sub = pub.duplicate();
  await pub.connect();
  await sub.connect();
  const subscribed = new Set();
  const onMessage = (message, channel) => {
    const room = channel.slice(3);
    const sep = message.indexOf("\n");
    if (message.slice(0, sep) === node) return;   // our own echo
    const data = message.slice(sep + 1);
    for (const s of rooms.get(room) || []) s.send(data);
  };
  const wss = new WebSocketServer({ port, host: "127.0.0.1", path: "/ws", perMessageDeflate: false });
  wss.on("connection", (sock, req) => {
    const room = (new URL(req.url, "http://x").searchParams.get("room")) || "lobby";
    let set = rooms.get(room);
    if (!set) { set = new Set(); rooms.set(room, set); }
    set.add(sock);
    if (!subscribed.has(room)) { subscribed.add(room); sub.subscribe("ws:" + room, onMessage); }
    sock.on("message", (data, isBinary) => {
      const text = isBinary ? data : data.toString();
      for (const s of set) if (s !== sock) s.send(text);
      pub.publish("ws:" + room, node + "\n" + text);
    });
    sock.on("close", () => set.delete(sock));
  });
  wss.on("listening", () => console.log("listening on " + port));
}
main();
