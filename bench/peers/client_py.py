"""Client throughput: python-websockets' client echoing through a server,
DEPTH messages in flight on one connection; every echo checked. Also
the client's own CPU (user + system) per message over the timed window.
  /usr/bin/python3 client_py.py URL SIZE DEPTH SECS"""
import asyncio
import sys
import time

import websockets


async def main(url, size, depth, secs):
    msgs = [chr(64 + i) * size for i in range(1, 17)]
    async with websockets.connect(url, compression=None, max_size=16 << 20) as sock:
        sent = got = errors = 0
        for _ in range(depth):
            sent += 1
            await sock.send(msgs[sent % 16])
        t0, c0 = time.monotonic(), time.process_time()
        while True:
            data = await sock.recv()
            got += 1
            if data != msgs[got % 16]:
                errors += 1
            if time.monotonic() - t0 >= secs:
                break
            sent += 1
            await sock.send(msgs[sent % 16])
        elapsed, cpu = time.monotonic() - t0, time.process_time() - c0
        print(f"RESULT mode=client size={size} depth={depth} secs={elapsed:.2f} msgs={got} "
              f"msgs_per_s={got / elapsed:.0f} cpu_us_per_msg={cpu * 1e6 / got:.1f} errors={errors}")
        for _ in range(sent - got):
            await sock.recv()


asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
