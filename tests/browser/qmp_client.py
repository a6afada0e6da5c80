"""A standard QMP client (qemu.qmp) driving the VM in a browser tab through wasm86-bridge.

Usage: python3 qmp_client.py SOCKET_PATH

Connects to the bridge's unix socket, negotiates, runs query-status and query-version, prints
one JSON line {"ready": true, ...}, then waits (30 s at most) for a STOP event caused by
another door and prints {"event": "STOP", ...}. Any failure prints {"error": "..."} and exits 1.
"""

import asyncio
import json
import sys

from qemu.qmp import EventListener, QMPClient


def say(obj):
    print(json.dumps(obj), flush=True)


async def main(path):
    qmp = QMPClient("wasm86-browser-test")
    await asyncio.wait_for(qmp.connect(path), 30)
    listener = EventListener(("STOP",))
    qmp.register_listener(listener)
    status = await asyncio.wait_for(qmp.execute("query-status"), 30)
    version = await asyncio.wait_for(qmp.execute("query-version"), 30)
    say({"ready": True, "status": status, "version": version, "greeting": qmp.greeting._asdict() if qmp.greeting else None})
    event = await asyncio.wait_for(listener.get(), 30)
    say({"event": event["event"], "timestamp": event["timestamp"]})
    qmp.remove_listener(listener)
    await qmp.disconnect()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1]))
    except Exception as e:  # report every failure as one line for the test runner
        say({"error": f"{type(e).__name__}: {e}"})
        sys.exit(1)
