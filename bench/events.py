"""Call events: the targets of issue 11, measured. It prints figures and PASS/FAIL; the exit status is 0
whatever the figures, nonzero only when something breaks.

--streams: 1,000 concurrent WatchCallEvents streams on one server process under 300 MB RSS
(bench/streams.py).

    .venv/bin/python bench/events.py --streams [--watchers 1000] [--channels 10] [--watch-calls 20]
        [--database-url postgresql://...] [--keep]

--deliveries: webhook deliveries (bench/deliveries.py): a backlog of 100,000 stored events drains at
1,000 deliveries/s or more to one local receiver; with 200 events/s produced, p99 from the stored
change to its delivery under 500 ms; a receiver down for a while, then back, gets every event, each
acknowledged once.

    .venv/bin/python bench/events.py --deliveries [--backlog 100000] [--calls 2000] [--rate 200]
        [--duration 10] [--outage 5] [--database-url postgresql://...] [--keep]

Without either, both run, one after the other.
"""

from __future__ import annotations

import argparse
import sys

import deliveries as webhook_deliveries  # bench/deliveries.py
import streams as event_streams  # bench/streams.py
from ingress import BenchError  # bench/ingress.py


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", action="store_true", help="many WatchCallEvents streams, and the server's RSS")
    parser.add_argument("--deliveries", action="store_true", help="webhook deliveries: drain, latency, outage")
    parser.add_argument("--database-url", help="an empty database to migrate and use (default: a SQLite file)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (server log, database)")
    event_streams.add_arguments(parser)
    webhook_deliveries.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.watchers < 1 or args.channels < 1 or args.watch_calls < 1:
        parser.error("--watchers, --channels and --watch-calls must be positive")
    both = not (args.streams or args.deliveries)
    try:
        if args.streams or both:
            event_streams.streams(args)
        if args.deliveries or both:
            webhook_deliveries.deliveries(args)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
