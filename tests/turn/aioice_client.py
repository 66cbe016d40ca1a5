#!/usr/bin/env python3
"""An independent TURN client for tests/turn.rs: aioice's TURN client
(UDP) allocates at the server, sends datagrams through the relay to a
UDP echo peer started here, and checks every echo came back through the
relay (the peer saw the relayed address as their source).

Prints one JSON object; exits 0 when everything was echoed (or, with
--expect-error CODE, when the allocation failed with that code).
"""
import argparse
import asyncio
import json
import sys

from aioice import stun, turn

TIMEOUT = 5.0


class Echo(asyncio.DatagramProtocol):
    """The peer: echoes every datagram, remembering whom it heard."""

    def __init__(self):
        self.sources = set()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.sources.add(addr)
        self.transport.sendto(data, addr)


class Receiver(asyncio.DatagramProtocol):
    """The client's side of the relay: collects what comes back."""

    def __init__(self):
        self.received = []
        self.event = asyncio.Event()

    def connection_made(self, transport):
        pass

    def datagram_received(self, data, addr):
        self.received.append((data, addr))
        self.event.set()


async def main(args):
    host, port = args.server.rsplit(":", 1)
    server = (host, int(port))
    loop = asyncio.get_running_loop()
    peer_transport, echo = await loop.create_datagram_endpoint(
        Echo, local_addr=("127.0.0.1", 0)
    )
    peer = peer_transport.get_extra_info("sockname")
    result = {"peer": f"{peer[0]}:{peer[1]}"}
    try:
        transport, receiver = await asyncio.wait_for(
            turn.create_turn_endpoint(
                Receiver, server_addr=server, username=args.username, password=args.password
            ),
            TIMEOUT,
        )
    except stun.TransactionFailed as e:
        code = e.response.attributes.get("ERROR-CODE", (None, ""))
        result.update({"error_code": code[0], "reason": code[1]})
        print(json.dumps(result))
        return 0 if args.expect_error == code[0] else 1
    except Exception as e:  # timeouts and the like
        result.update({"error": repr(e)})
        print(json.dumps(result))
        return 1
    if args.expect_error is not None:
        result.update({"error": "allocated, but an error was expected"})
        print(json.dumps(result))
        return 1
    relayed = transport.get_extra_info("sockname")
    result["relayed"] = f"{relayed[0]}:{relayed[1]}"
    payloads = [f"p2psip turn test {i}".encode() for i in range(args.count)]
    for p in payloads:
        transport.sendto(p, peer)
        await asyncio.sleep(0.01)
    deadline = loop.time() + TIMEOUT
    while len(receiver.received) < len(payloads) and loop.time() < deadline:
        receiver.event.clear()
        try:
            await asyncio.wait_for(receiver.event.wait(), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            break
    echoed = [d for d, a in receiver.received if a == peer]
    result.update(
        {
            "sent": len(payloads),
            "echoed": len(echoed),
            "all_match": sorted(echoed) == sorted(payloads),
            "peer_saw": sorted(f"{a[0]}:{a[1]}" for a in echo.sources),
        }
    )
    transport.close()
    await asyncio.sleep(0.2)
    peer_transport.close()
    print(json.dumps(result))
    ok = result["all_match"] and result["peer_saw"] == [result["relayed"]]
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", required=True, help="TURN server HOST:PORT")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--expect-error", type=int, default=None)
    sys.exit(asyncio.run(main(parser.parse_args())))
