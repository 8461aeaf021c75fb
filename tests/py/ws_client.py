"""A WebSocket client of the gateway's /v1/ws written with the Python `websockets` library (an
implementation independent of the Rust one the gateway serves with), answering the
pre-shared-key challenge from its specification:

    python3 ws_client.py ws://127.0.0.1:PORT/v1/ws PSK

Prints one JSON object per line: what happened, for the Rust test to check.
"""

import hashlib
import json
import os
import sys

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


def answer(nonce_hex: str, psk: str) -> str:
    return hashlib.sha256((nonce_hex + psk).encode()).hexdigest()


def say(**fields):
    print(json.dumps(fields), flush=True)


def main():
    url, psk = sys.argv[1], sys.argv[2]
    with connect(url, open_timeout=10, close_timeout=5) as ws:
        challenge = json.loads(ws.recv(timeout=10))
        assert challenge["op"] == "challenge", challenge
        ours = os.urandom(32).hex()
        ws.send(json.dumps({"op": "answer", "answer": answer(challenge["nonce"], psk), "nonce": ours}))
        try:
            ready = json.loads(ws.recv(timeout=10))
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            say(event="closed", code=code, reason=closed.rcvd.reason if closed.rcvd else None)
            return
        say(event="ready", server_proved=ready.get("answer") == answer(ours, psk))
        ws.send(json.dumps({"op": "request", "id": "py-1", "service": "echo",
                            "frames": ["from python", {"base64": "/wA="}]}))
        say(event="answer", message=json.loads(ws.recv(timeout=10)))


if __name__ == "__main__":
    main()
