#!/usr/bin/env python3
"""Drive a wasm86 QMP endpoint with the real qemu.qmp client (unmodified).

Usage: qmp_client.py SOCKET_PATH
Prints one line per check; exits non-zero on the first failure.
"""
import asyncio
import sys

from qemu.qmp import QMPClient


async def main(path):
    qmp = QMPClient("wasm86-test")
    events = []
    await qmp.connect(path)
    greeting = qmp.greeting
    ver = greeting.QMP.version["qemu"]
    assert (ver["major"], ver["minor"], ver["micro"]) == (1, 1, 0), greeting
    print("greeting ok", greeting.QMP.version["package"])

    status = await qmp.execute("query-status")
    print("query-status", status)
    version = await qmp.execute("query-version")
    assert version["qemu"]["major"] == 1, version
    print("query-version ok")

    async def collect():
        async for event in qmp.events:
            events.append(event["event"])
            if event["event"] == "RESUME":
                return

    listener = asyncio.create_task(collect())
    await qmp.execute("stop")
    await qmp.execute("cont")
    await asyncio.wait_for(listener, 10)
    assert events[-1] == "RESUME", events
    print("events", events)

    try:
        await qmp.execute("no-such-command")
        raise AssertionError("no error for an unknown command")
    except Exception as e:  # ExecuteError
        assert "CommandNotFound" in repr(e) or "has not been found" in str(e), repr(e)
        print("unknown command refused")

    hmp = await qmp.execute("human-monitor-command", {"command-line": "info status"})
    assert hmp.startswith("VM status: running"), hmp
    print("hmp ok")
    await qmp.execute("quit")
    try:
        await qmp.disconnect()
    except EOFError:
        pass
    print("quit ok")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
