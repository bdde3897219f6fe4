"""What the Python clients of the client matrix share: the command line, the pause in the middle
of producing (the test moves partition leaders then), and counting messages exactly once."""
import argparse
import sys


def args(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["metadata", "produce", "consume", "share"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", default="matrix")
    ap.add_argument("--group", default="matrix-group")
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--pause-at", type=int, default=-1)
    ap.add_argument("--timeout", type=int, default=60)
    return ap.parse_args(argv)


def pause(at):
    """Says where it stopped and waits until the test has moved the leaders."""
    print(f"paused at {at}", flush=True)
    if not sys.stdin.readline():
        sys.exit("stdin closed while paused")


class counted:
    """Messages `message-I` seen, by I."""

    def __init__(self):
        self.seen = {}
        self.total = 0

    def add(self, value):
        self.total += 1
        self.seen[value] = self.seen.get(value, 0) + 1

    def duplicates(self):
        return sum(n - 1 for n in self.seen.values())


def report_produced(ok, errors):
    print(f"produced {ok} errors {errors}", flush=True)


def report_consumed(seen):
    print(f"consumed {seen.total} distinct {len(seen.seen)} duplicates {seen.duplicates()}", flush=True)
