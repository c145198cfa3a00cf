"""Prints the Markdown tables of BENCHMARKS.md from the JSON files that
tools/bench.sh writes (one per run) into the directory given as argument."""

import json
import sys
from pathlib import Path


def load(directory, label):
    path = Path(directory) / f"{label}.json"
    return json.loads(path.read_text()) if path.exists() else None


def mib(kib):
    return f"{kib / 1024:.1f}" if kib is not None else "-"


def main(directory):
    print("| body | connections | baseline 2xx/s | standard-webhooks 2xx/s | ratio | p50 / p99 ms | peak RSS MiB | appwrite 2xx/s | ratio | peak RSS MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for size, connections in [(1024, 1), (1024, 16), (1024, 64), (1024, 256), (16384, 64)]:
        base = load(directory, f"baseline-{size}-{connections}")
        sw = load(directory, f"sw-{size}-{connections}")
        aw = load(directory, f"aw-{size}-{connections}")
        if not (base and sw and aw):
            continue
        base_rate = base["ok_per_s"]
        sw_load, aw_load = sw["load"], aw["load"]
        print(
            f"| {size // 1024} KiB | {connections} | {base_rate:,.0f} "
            f"| {sw_load['ok_per_s']:,.0f} | {sw_load['ok_per_s'] / base_rate:.1%} "
            f"| {sw_load['latency_ms']['p50']:.2f} / {sw_load['latency_ms']['p99']:.2f} "
            f"| {mib(sw['peak_rss_kib'])} "
            f"| {aw_load['ok_per_s']:,.0f} | {aw_load['ok_per_s'] / base_rate:.1%} "
            f"| {mib(aw['peak_rss_kib'])} |"
        )
    print()

    print("| run | load | 2xx/s | ack p50 / p99 / max ms | calls/s | backlog at end of load | 2xx→call p50 / p99 ms | peak RSS MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = [
        ("sw-1024-64", "synchronous = full (default), closed loop"),
        ("sw-1024-64-normal", "synchronous = normal (less durable), closed loop"),
        ("sw-1024-64-ignored", "no rule matches: ingest without delivery, closed loop"),
        ("open-half-rate", "open loop at half the closed-loop rate"),
        ("delivery-5000", "open loop at 5,000 events/s"),
        ("delivery-drain", "10,000 events, then drain"),
        ("e2e-1000", "open loop at 1,000 events/s"),
    ]
    for label, description in rows:
        run = load(directory, label)
        if not run:
            continue
        lo, de = run["load"], run["delivery"]
        rate = f"{lo['target_rate']:,.0f}/s, " if lo["target_rate"] else ""
        calls = f"{de['calls_per_s']:,.0f}"
        if de["drain_calls_per_s"]:
            calls += f" (drain {de['drain_calls_per_s']:,.0f})"
        print(
            f"| {label} | {rate}{description}, {lo['connections']} conn. | {lo['ok_per_s']:,.0f} "
            f"| {lo['latency_ms']['p50']:.2f} / {lo['latency_ms']['p99']:.2f} / {lo['latency_ms']['max']:.2f} "
            f"| {calls} | {de['backlog_at_load_end']:,} of {de['acked']:,} "
            f"| {de['ack_to_call_ms_p50']:.1f} / {de['ack_to_call_ms_p99']:.1f} "
            f"| {mib(run['peak_rss_kib'])} |"
        )
    simulator = load(directory, "simulator-alone")
    if simulator:
        print()
        print(
            f"Appwrite simulator alone (`DELETE /v1/users/{{id}}/sessions`, "
            f"{simulator['connections']} connections, users not found): "
            f"{simulator['requests_per_s']:,.0f} responses/s, statuses {simulator['statuses']}, "
            f"p99 {simulator['latency_ms']['p99']:.2f} ms."
        )


if __name__ == "__main__":
    main(sys.argv[1])
