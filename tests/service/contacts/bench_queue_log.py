"""Throughput of the queue_log parser on a synthetic 1 M-line log (not a test: prints numbers).

    .venv/bin/python -m tests.service.contacts.bench_queue_log [lines] [rounds]

The log is written to a temporary file in time order, as Asterisk writes it:
calls arrive every 0-3 s into two queues served by 60 agents; each call
rings 0-2 members without answer, then is answered (88 %), abandoned (10 %)
or times out (2 %); agents pause now and then. Printed beside the parser's
rate: a bare `split('|')` + `int()` loop over the same file and the cost of
building `ContactRecord`s alone, measured in the same run, so the ratios
hold on any machine.
"""

from __future__ import annotations

import heapq
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from service.contacts.parsers.queue_log import QueueLogParser
from service.contacts.records import ContactRecord

T0 = 1_700_000_000


def generate(path: Path, lines: int, seed: int = 7) -> int:
    rnd = random.Random(seed)
    agents = [f"PJSIP/{100 + i}" for i in range(60)]
    pending: list[tuple[int, int, str]] = []  # (time, order, line) still to be written
    order = 0
    written = 0
    t = T0
    with path.open("w", encoding="utf-8") as out:

        def push(at: int, line: str) -> None:
            nonlocal order
            order += 1
            heapq.heappush(pending, (at, order, f"{at}|{line}\n"))

        for agent in agents:
            push(t, f"NONE|support|{agent}|ADDMEMBER|")
            push(t, f"NONE|sales|{agent}|ADDMEMBER|")
        call = 0
        while written < lines:
            call += 1
            t += rnd.randint(0, 3)
            while pending and pending[0][0] <= t and written < lines:
                out.write(heapq.heappop(pending)[2])
                written += 1
            callid = f"{t - rnd.randint(5, 60)}.{call}"
            queue = "support" if call % 3 else "sales"
            push(t, f"{callid}|{queue}|NONE|ENTERQUEUE||555{call:07d}|1")
            wait = rnd.randint(0, 90)
            for ring in range(rnd.randint(0, 2)):
                push(
                    t + min(wait, 15 * (ring + 1)),
                    f"{callid}|{queue}|{rnd.choice(agents)}|RINGNOANSWER|15000",
                )
            roll = rnd.random()
            if roll < 0.10:
                push(t + wait, f"{callid}|{queue}|NONE|ABANDON|1|1|{wait}")
            elif roll < 0.12:
                push(t + 300, f"{callid}|{queue}|NONE|EXITWITHTIMEOUT|1|1|300")
            else:
                agent = rnd.choice(agents)
                talk = rnd.randint(20, 600)
                push(t + wait, f"{callid}|{queue}|{agent}|CONNECT|{wait}|{callid}1|3")
                end = "COMPLETECALLER" if rnd.random() < 0.6 else "COMPLETEAGENT"
                push(t + wait + talk, f"{callid}|{queue}|{agent}|{end}|{wait}|{talk}|1")
            if rnd.random() < 0.02:
                agent = rnd.choice(agents)
                push(t, f"NONE|NONE|{agent}|PAUSEALL|break")
                push(t + 300, f"NONE|NONE|{agent}|UNPAUSEALL|")
        while pending and written < lines:
            out.write(heapq.heappop(pending)[2])
            written += 1
    return written


def build(n: int, moment: datetime) -> None:
    for i in range(n):
        ContactRecord(
            source="asterisk",
            queue_key="support",
            external_id=f"{i}",
            channel="voice",
            queued_at=moment,
            outcome="answered",
            raw_ref="queue_log:1,2,3",
            answered_at=moment,
            ended_at=moment,
            agent_key="PJSIP/100",
            wait_s=10.0,
            talk_s=100.0,
            source_version=i,
        )


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "queue_log"
        generate(path, lines)
        size = path.stat().st_size

        # Best of a few alternating rounds: a shared machine's load hits both alike.
        bare = elapsed = float("inf")
        parser = QueueLogParser()
        for _ in range(rounds):
            start = time.perf_counter()
            with path.open(encoding="utf-8", newline="") as fp:
                for line in fp:
                    int(line.rstrip("\r\n").split("|")[0])
            bare = min(bare, time.perf_counter() - start)
            parser = QueueLogParser()
            start = time.perf_counter()
            with path.open(encoding="utf-8", newline="") as fp:
                for _item in parser.parse(fp, "queue_log"):
                    pass
            elapsed = min(elapsed, time.perf_counter() - start)
        s = parser.stats
        assert s.balanced(), s

    moment = datetime.fromtimestamp(T0, UTC)
    n = 300_000
    construct = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        build(n, moment)
        construct = min(construct, time.perf_counter() - start)

    print(f"log: {s.items:,} lines, {size / 1e6:.0f} MB")
    print(f"parse: {elapsed:.2f} s = {s.items / elapsed:,.0f} lines/s")
    print(f"  {s.records:,} contact records = {s.records / elapsed:,.0f} records/s")
    print(f"  {s.agent_events:,} agent-state events, {s.calls_open:,} calls open at the end")
    print(
        f"bare split+int loop: {s.items / bare:,.0f} lines/s (parser at {bare / elapsed:.0%} of it)"
    )
    print(f"ContactRecord construction alone: {n / construct:,.0f} records/s")


if __name__ == "__main__":
    main()
