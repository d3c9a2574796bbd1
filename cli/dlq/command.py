"""The command line of `python -m cli.dlq`: options, the queues it reads, the table or JSON it
prints."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable


from agent.payloads import PayloadStore
from cli import aws
from cli.table import aligned, cut

from .letters import (REASON_CHARS, DeadLetter, DlqError, inspect, list_dead_letters,
                      resolve_queue_urls)
from .redrive import RedriveReport, redrive


# -- output --------------------------------------------------------------------------------------

def render_list(letters: list[DeadLetter]) -> str:
    if not letters:
        return "the dead-letter queue is empty"
    headers = ["MESSAGE ID", "REQUEST", "TENANT", "DEAD-LETTERED AT", "DEFERRALS", "REASON"]
    rows = []
    for letter in letters:
        s = letter.summary()
        rows.append([s["message_id"], s["request_id"] or ("(malformed)" if s["malformed"]
                                                          else "-"),
                     s["tenant"] or "-", s["dead_lettered_at"] or "-",
                     "-" if s["deferrals"] is None else str(s["deferrals"]),
                     cut(s["reason"], REASON_CHARS)])
    lines = aligned([headers, *rows])
    malformed = sum(s.malformed for s in letters)
    lines.append(f"{len(letters)} dead-lettered message{'s' if len(letters) != 1 else ''}"
                 + (f", {malformed} malformed (not redrivable)" if malformed else ""))
    return "\n".join(lines)


def render_redrive(report: RedriveReport) -> str:
    lines = []
    for m in report.moved:
        lines.append(f"moved      {m['message_id']}  request {m['request_id']} "
                     f"({m['tenant'] or '-'}) -> work queue as {m['work_queue_message_id']}")
    for k in report.kept:
        lines.append(f"kept       {k['message_id']}  {k['why']}")
    for f in report.failed:
        lines.append(f"FAILED     {f['message_id']}  {f['why']}")
    for i in report.not_found:
        lines.append(f"not found  {i}")
    lines.append(f"{len(report.moved)} moved, {len(report.kept)} kept (malformed), "
                 f"{len(report.failed)} failed, {len(report.not_found)} not found")
    return "\n".join(lines)


class _RecordedQueue:
    """The SQS calls list/inspect make, answered from a demo's dead_letters.json (the messages
    as the demo's final scan received them)."""

    def __init__(self, path: str) -> None:
        with open(path, encoding="utf-8") as handle:
            self.saved = json.load(handle)
        self.served = False

    def receive_message(self, **_):
        if self.served:
            return {"Messages": []}
        self.served = True
        return {"Messages": [{
            "MessageId": item["summary"]["message_id"], "ReceiptHandle": str(n),
            "Body": item.get("text", json.dumps(item.get("body"))),
            "Attributes": item.get("attributes") or {},
            "MessageAttributes": item.get("message_attributes") or {}}
            for n, item in enumerate(self.saved)]}

    def change_message_visibility_batch(self, **_):
        return {"Failed": []}


# -- command line --------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cli.dlq",
                                description="List, inspect and redrive dead-lettered agent "
                                            "requests.")
    p.add_argument("--queue-url", help="the dead-letter queue's URL")
    p.add_argument("--work-queue-url", help="the work queue's URL (redrive)")
    p.add_argument("--stack", metavar="STACK_NAME",
                   help="a deployed Bulwark stack (finds both queues)")
    p.add_argument("--local", metavar="DEAD_LETTERS_JSON",
                   help="a demo run's out/demo/dead_letters.json (list and inspect only)")
    aws.add_location_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    json_too = argparse.ArgumentParser(add_help=False)
    json_too.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                          help="print JSON")
    commands = p.add_subparsers(dest="command", required=True)
    commands.add_parser("list", parents=[json_too],
                        help="every dead-lettered message, without deleting any")
    inspect_ = commands.add_parser("inspect", parents=[json_too], help="one message in full")
    inspect_.add_argument("message_id", metavar="MESSAGE_ID")
    inspect_.add_argument("--full", action="store_true",
                          help="do not shorten the prompt, transcript or raw body")
    redrive_ = commands.add_parser("redrive", parents=[json_too],
                                   help="send requests back to the work queue")
    which = redrive_.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", dest="ids", metavar="MESSAGE_ID", nargs="+", action="extend",
                       help="the messages to redrive")
    which.add_argument("--all", action="store_true", help="every message")
    return p


def main(argv: list[str] | None = None, *, sqs: Any = None, cloudformation: Any = None,
         s3: Any = None, now: Callable[[], float] = time.time, out=None, err=None) -> int:
    """Run the command; returns the exit status. `sqs` / `cloudformation` / `s3` (claim
    checks) replace the boto3 clients main() would build."""
    out, err = out or sys.stdout, err or sys.stderr
    args = parser().parse_args(argv)
    try:
        if sum(map(bool, (args.stack, args.queue_url, args.local))) > 1 or (
                args.work_queue_url and not args.queue_url):
            raise DlqError("give one of --stack, --queue-url (with --work-queue-url) or --local")
        if not args.stack and not args.queue_url and not args.local:
            raise DlqError("give --stack STACK_NAME, --queue-url URL or --local FILE")
        if args.local:
            if args.command == "redrive":
                raise DlqError("--local is a record of a finished run: redrive needs the "
                               "queues (--stack or --queue-url against a running AWS)")
            sqs, dlq_url = _RecordedQueue(args.local), "recorded"
        if args.command == "redrive" and not args.stack and not args.work_queue_url:
            raise DlqError("redrive needs --work-queue-url URL (or --stack)")
        if sqs is None or (args.stack and cloudformation is None):
            made = aws.clients(("sqs", "cloudformation", "s3"), region=args.region,
                               endpoint_url=args.endpoint_url)
            sqs = sqs or made["sqs"]
            cloudformation = cloudformation or made["cloudformation"]
            s3 = s3 or made["s3"]
        if args.stack:
            dlq_url, work_url = resolve_queue_urls(cloudformation, args.stack)
        elif not args.local:
            dlq_url, work_url = args.queue_url, args.work_queue_url
        # a claim check names its bucket: the store only needs the client
        payloads = PayloadStore(s3, None, now) if s3 is not None else None

        if args.command == "list":
            letters = list_dead_letters(sqs, dlq_url, payloads=payloads)
            print(json.dumps([s.summary() for s in letters], indent=2) if args.json
                  else render_list(letters), file=out)
            return 0
        if args.command == "inspect":
            found = inspect(sqs, dlq_url, args.message_id, full=args.full,
                            payloads=payloads)
            if found is None:
                print(f"message {args.message_id} is not in the dead-letter queue (or another "
                      "consumer holds it right now)", file=err)
                return 1
            if args.json:
                print(json.dumps(found, indent=2, default=str), file=out)
            else:
                for key in ("message_id", "request_id", "tenant", "reason", "dead_lettered_at",
                            "deferrals", "sent_at"):
                    print(f"{key + ':':18}{'-' if found[key] is None else found[key]}", file=out)
                print("body:", file=out)
                print(json.dumps(found["body"], indent=2, default=str)
                      if not isinstance(found["body"], str) else found["body"], file=out)
            return 0
        report = redrive(sqs, dlq_url, work_url, ids=args.ids, every=args.all, now=now,
                         payloads=payloads)
        print(json.dumps(report.to_json(), indent=2, default=str) if args.json
              else render_redrive(report), file=out)
        return 0 if report.ok else 1
    except (DlqError, *aws.ERRORS, OSError) as problem:  # credentials, missing
        return aws.failed("error", problem, err)

