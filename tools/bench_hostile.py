#!/usr/bin/env python3
"""Load client for tools/bench-hostile.sh: oversized bodies, valid-request
latency, and a paced flood of bad signatures. Talks to 127.0.0.1 only and
every mode is bounded in count and time."""

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import socket
import threading
import time

HOST = "127.0.0.1"


def percentile(sorted_values, fraction):
    if not sorted_values:
        return float("nan")
    index = max(0, min(len(sorted_values) - 1, int(round(fraction * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


def send_big_body(port, size, mode, result, index):
    """Sends one body of `size` bytes and records what the server did."""
    piece = b"p" * 65536
    started = time.monotonic()
    sent = 0
    status = None
    error = None
    sock = socket.create_connection((HOST, port), timeout=15)
    try:
        head = [
            "POST /hooks/appwrite HTTP/1.1",
            f"Host: {HOST}:{port}",
            "Content-Type: application/json",
            "X-Appwrite-Webhook-Events: users.bench.update",
            "X-Appwrite-Webhook-Signature: AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ]
        if mode == "chunked":
            head.append("Transfer-Encoding: chunked")
        else:
            head.append(f"Content-Length: {size}")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        deadline = started + 30
        while sent < size and time.monotonic() < deadline:
            if mode == "chunked":
                frame = b"%x\r\n" % len(piece) + piece + b"\r\n"
            else:
                frame = piece
            sock.sendall(frame)
            sent += len(piece)
    except OSError as exc:
        error = type(exc).__name__
    try:
        sock.settimeout(5)
        reply = sock.recv(4096)
        if reply.startswith(b"HTTP/1.1 "):
            status = int(reply.split()[1])
    except OSError as exc:
        error = error or type(exc).__name__
    finally:
        sock.close()
    result[index] = {
        "status": status,
        "sent_mib": round(sent / 1048576, 1),
        "seconds": round(time.monotonic() - started, 2),
        "error": error,
    }


def run_bodies(args):
    results = [None] * args.count
    threads = [
        threading.Thread(target=send_big_body, args=(args.port, args.size_mib * 1048576, args.mode, results, i))
        for i in range(args.count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    print(json.dumps({"mode": args.mode, "results": results}))


def sign(secret, url, body):
    digest = hmac.new(secret.encode(), url.encode() + body, hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def run_latency(args):
    secret = os.environ["BENCH_APPWRITE_SECRET"]
    url = f"http://{HOST}:{args.port}/hooks/appwrite"
    connection = http.client.HTTPConnection(HOST, args.port, timeout=10)
    latencies = []
    statuses = {}
    total = int(args.rate * args.duration)
    period = 1.0 / args.rate
    start = time.monotonic()
    for n in range(total):
        slot = start + n * period
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        # A user id that no rule matches: the event is committed as ignored.
        body = json.dumps({"$id": "bench", "n": n, "run": args.tag, "status": True}).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Appwrite-Webhook-Events": "users.bench.update.email,users.*.update.email",
            "X-Appwrite-Webhook-Signature": sign(secret, url, body),
        }
        sent = time.monotonic()
        connection.request("POST", "/hooks/appwrite", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        latencies.append((time.monotonic() - sent) * 1000)
        statuses[response.status] = statuses.get(response.status, 0) + 1
    latencies.sort()
    print(json.dumps({
        "requests": total,
        "statuses": statuses,
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p90_ms": round(percentile(latencies, 0.90), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(latencies[-1], 2),
    }))


def flood_worker(port, rate, duration, counts, lock):
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    body = b'{"$id":"bench","status":true}'
    headers = {
        "Content-Type": "application/json",
        "X-Appwrite-Webhook-Events": "users.bench.update.email",
        "X-Appwrite-Webhook-Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    }
    total = int(rate * duration)
    period = 1.0 / rate
    start = time.monotonic()
    local = {}
    for n in range(total):
        slot = start + n * period
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if time.monotonic() > start + duration + 5:
            break
        connection.request("POST", "/hooks/appwrite", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        local[response.status] = local.get(response.status, 0) + 1
    with lock:
        for status, count in local.items():
            counts[status] = counts.get(status, 0) + count


def run_flood(args):
    counts = {}
    lock = threading.Lock()
    per_connection = args.rate / args.connections
    started = time.monotonic()
    threads = [
        threading.Thread(target=flood_worker, args=(args.port, per_connection, args.duration, counts, lock))
        for _ in range(args.connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=args.duration + 30)
    elapsed = time.monotonic() - started
    sent = sum(counts.values())
    print(json.dumps({
        "target_rate": args.rate,
        "sent": sent,
        "seconds": round(elapsed, 1),
        "achieved_rate": round(sent / elapsed, 1),
        "statuses": counts,
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    commands = parser.add_subparsers(dest="command", required=True)

    bodies = commands.add_parser("bodies", help="send concurrent oversized bodies")
    bodies.add_argument("--count", type=int, default=10)
    bodies.add_argument("--size-mib", type=int, default=100)
    bodies.add_argument("--mode", choices=["chunked", "length"], default="chunked")

    latency = commands.add_parser("latency", help="valid signed requests at a fixed rate")
    latency.add_argument("--rate", type=float, default=20, help="requests per second")
    latency.add_argument("--duration", type=float, default=20, help="seconds")
    latency.add_argument("--tag", default="run", help="makes bodies unique per run")

    flood = commands.add_parser("flood", help="bad signatures at a fixed rate")
    flood.add_argument("--rate", type=float, default=400, help="requests per second")
    flood.add_argument("--duration", type=float, default=20, help="seconds")
    flood.add_argument("--connections", type=int, default=4)

    args = parser.parse_args()
    {"bodies": run_bodies, "latency": run_latency, "flood": run_flood}[args.command](args)


if __name__ == "__main__":
    main()
