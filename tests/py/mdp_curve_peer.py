"""libzmq MDP/0.1 peers over CURVE (pyzmq's bundled libzmq), for the broker interop test.

  mdp_curve_peer.py worker ENDPOINT SERVER_PUB PUB SEC SERVICE
      An MDP worker on a DEALER: READY, MDP heartbeats every second, echoes every request's
      body frames. ZMTP heartbeats on (1 s). Prints {"ready": true}, then runs until killed.
  mdp_curve_peer.py client ENDPOINT SERVER_PUB PUB SEC SERVICE IDLE
      An MDP client on a REQ socket: sends the test requests, prints each reply, idles IDLE
      seconds, sends one more, prints the socket events seen.
Lines on stdout are JSON.
"""
import json
import sys
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

BODIES = [
    [b"hello"],
    [b"two", b"frames"],
    [b"", b"\x00\xff binary \x00"],
    [bytes(range(256)) * 1024],
]


def say(**kv):
    print(json.dumps(kv), flush=True)


def curve(s, server_pub, pub, sec):
    s.curve_serverkey = server_pub.encode()
    s.curve_publickey = pub.encode()
    s.curve_secretkey = sec.encode()
    s.linger = 0
    s.setsockopt(zmq.HEARTBEAT_IVL, 1000)
    s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)


def worker(endpoint, server_pub, pub, sec, service):
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    curve(s, server_pub, pub, sec)
    s.connect(endpoint)
    s.send_multipart([b"", b"MDPW01", b"\x01", service.encode()])
    say(ready=True)
    next_hb = time.monotonic() + 1.0
    while True:
        if s.poll(100):
            msg = s.recv_multipart()
            if msg[2] == b"\x02":
                client = msg[3]
                body = msg[5:]
                s.send_multipart([b"", b"MDPW01", b"\x03", client, b""] + body)
            elif msg[2] == b"\x05":
                say(disconnect=True)
                return
        if time.monotonic() >= next_hb:
            s.send_multipart([b"", b"MDPW01", b"\x04"])
            next_hb += 1.0


def name(event):
    for k in dir(zmq):
        if k.startswith("EVENT_") and getattr(zmq, k) == event and k != "EVENT_ALL":
            return k[6:]
    return str(event)


def client(endpoint, server_pub, pub, sec, service, idle):
    ctx = zmq.Context()
    s = ctx.socket(zmq.REQ)
    curve(s, server_pub, pub, sec)
    s.rcvtimeo = 10000
    mon = s.get_monitor_socket()
    s.connect(endpoint)

    def call(body):
        s.send_multipart([b"MDPC01", service.encode()] + body)
        try:
            reply = s.recv_multipart()
        except zmq.Again:
            return None
        return reply

    for body in BODIES:
        reply = call(body)
        expected = [b"MDPC01", service.encode()] + body
        say(same=(reply == expected), got=None if reply is None else [f[:40].hex() for f in reply])
    time.sleep(idle)
    reply = call([b"after idle"])
    say(after_idle=(reply == [b"MDPC01", service.encode(), b"after idle"]))
    seen = []
    while mon.poll(0):
        ev = recv_monitor_message(mon)
        seen.append(name(ev["event"]))
    say(events=seen)


if __name__ == "__main__":
    a = sys.argv
    if a[1] == "worker":
        worker(a[2], a[3], a[4], a[5], a[6])
    elif a[1] == "client":
        client(a[2], a[3], a[4], a[5], a[6], float(a[7]))
    else:
        sys.exit("unknown mode")
