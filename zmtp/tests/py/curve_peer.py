"""A libzmq CURVE peer (pyzmq's bundled libzmq) for domo-zmtp's interop tests.

Usage:
  curve_peer.py client ENDPOINT SERVER_PUB CLIENT_PUB CLIENT_SEC IDLE_SECONDS
      A DEALER with ZMTP heartbeats (1 s interval, 3 s timeout) that sends the test
      messages, prints each reply as hex, idles IDLE_SECONDS, sends once more, and prints
      the socket events it saw.
  curve_peer.py server SERVER_PUB SERVER_SEC ALLOWED_DIR
      A ROUTER with heartbeats that only admits the client keys found in ALLOWED_DIR
      (*.key certificates, through pyzmq's ZAP authenticator). Prints its endpoint, then
      echoes every message until killed.
Lines on stdout are JSON.
"""
import json
import sys
import time

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

MESSAGES = [
    [b"hello"],
    [b"", b"MDPC01", b"echo", b"x" * 300],
    [bytes(range(256)) * 4096, b"tail"],
    [b""],
]


def say(**kv):
    print(json.dumps(kv), flush=True)


def events(mon):
    seen = []
    while mon.poll(0):
        ev = recv_monitor_message(mon)
        seen.append((ev["event"], ev["value"]))
    return seen


def name(event):
    for k in dir(zmq):
        if k.startswith("EVENT_") and getattr(zmq, k) == event and k != "EVENT_ALL":
            return k[6:]
    return str(event)


def heartbeats(s):
    s.setsockopt(zmq.HEARTBEAT_IVL, 1000)
    s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)
    s.setsockopt(zmq.HEARTBEAT_TTL, 6000)


def client(endpoint, server_pub, client_pub, client_sec, idle):
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.curve_serverkey = server_pub.encode()
    s.curve_publickey = client_pub.encode()
    s.curve_secretkey = client_sec.encode()
    s.linger = 0
    s.rcvtimeo = 10000
    heartbeats(s)
    mon = s.get_monitor_socket()
    s.connect(endpoint)
    for msg in MESSAGES:
        s.send_multipart(msg)
        try:
            reply = s.recv_multipart()
        except zmq.Again:
            say(error="no reply", events=[(name(e), v) for e, v in events(mon)])
            return
        say(reply=[f.hex() for f in reply], same=(reply == msg))
    time.sleep(idle)
    s.send_multipart([b"after idle"])
    try:
        say(after_idle=[f.hex() for f in s.recv_multipart()])
    except zmq.Again:
        say(error="no reply after idle")
    say(events=[(name(e), v) for e, v in events(mon)])


def server(server_pub, server_sec, allowed_dir):
    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=allowed_dir)
    s = ctx.socket(zmq.ROUTER)
    s.curve_server = True
    s.curve_publickey = server_pub.encode()
    s.curve_secretkey = server_sec.encode()
    s.linger = 0
    heartbeats(s)
    port = s.bind_to_random_port("tcp://127.0.0.1")
    say(endpoint=f"tcp://127.0.0.1:{port}")
    while True:
        msg = s.recv_multipart()
        s.send_multipart(msg)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "client":
        client(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6]))
    elif mode == "server":
        server(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(f"unknown mode {mode}")
