"""The ``phaseflow`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from streams.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phaseflow",
        description="Keeps a six-phase daily data pipeline moving, correct and observable.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("worker", help="run the service (Faust worker)")
    commands.add_parser("topics", help="create missing catalog topics and exit")
    demo = commands.add_parser(
        "demo", help="embedded broker + BigQuery emulator, a simulated game day, a summary"
    )
    demo.add_argument("--timeout", type=float, default=180.0, help="give up after this long")
    publish = commands.add_parser("publish", help="publish one PhaseCompletion")
    publish.add_argument("--processor", required=True, help="processor_name")
    publish.add_argument("--date", required=True, help="game_date, YYYY-MM-DD")
    publish.add_argument("--phase", required=True, help="1-6 or e.g. phase_3_analytics")
    publish.add_argument(
        "--status", default="success", choices=["success", "partial", "failed", "skipped"]
    )
    publish.add_argument("--records", type=int, default=0, help="record_count")
    publish.add_argument("--execution-id", default=None, help="dedup id; generated if absent")
    seed = commands.add_parser(
        "seed", help="synthetic source data for a date into BigQuery: players, prop lines, history"
    )
    seed.add_argument("--date", required=True, help="game_date, YYYY-MM-DD")
    seed.add_argument("--players", type=int, default=450, help="players on the slate")
    predict = commands.add_parser("predict", help="start a prediction batch (phase 5) for a date")
    predict.add_argument("--date", required=True, help="game_date, YYYY-MM-DD")
    predict.add_argument("--batch-id", default=None, help="default: {date}-r{n}")
    predict.add_argument(
        "--wait", type=float, default=0.0, help="seconds to wait for the phase-5 completion"
    )
    lag = commands.add_parser("lag", help="consumer lag per group/topic/partition, with status")
    lag.add_argument(
        "--group", action="append", default=[], help="consumer group (repeatable; default: app id)"
    )
    lag.add_argument("--watch", action="store_true", help="sample repeatedly until Ctrl-C")
    lag.add_argument("--interval", type=float, default=None, help="seconds between samples")
    status = commands.add_parser(
        "status", help="phases of a date, lag, dead letters and alerts, from a running worker"
    )
    status.add_argument("--date", required=True, type=date.fromisoformat, help="YYYY-MM-DD")
    status.add_argument(
        "--url", default=None, help="worker URL (default: PHASEFLOW_WEB_HOST:PHASEFLOW_WEB_PORT)"
    )
    _add_operations_commands(commands)
    return parser


def _add_operations_commands(commands: Any) -> None:
    """``rerun`` and ``dlq list|replay`` (docs/operations.md)."""
    from streams.dlq import parse_age

    def age(text: str) -> timedelta:
        try:
            return parse_age(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    rerun = commands.add_parser(
        "rerun", help="rerun requests: one processor, a phase, or every gated phase (backfill)"
    )
    rerun.add_argument("--date", required=True, type=date.fromisoformat, help="YYYY-MM-DD")
    rerun.add_argument("--to", type=date.fromisoformat, help="last date of a backfill range")
    rerun.add_argument("--phase", type=int, help="only this phase (its expected processors)")
    rerun.add_argument("--processor", help="only this processor")
    rerun.add_argument("--attempt", type=int, default=1, help="ask again on purpose: 2, 3, ...")
    rerun.add_argument("--dry-run", action="store_true", help="show the requests, send none")
    dlq = commands.add_parser("dlq", help="list or replay dead letters")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    for name, text in (("list", "show dead letters"), ("replay", "send them back, once")):
        sub = dlq_commands.add_parser(name, help=text)
        sub.add_argument("--topic", help="source topic (full name or e.g. phase-completions)")
        sub.add_argument("--reason", help="error_type, e.g. not_json")
        sub.add_argument("--older-than", type=age, help="failed at least this long ago")
        sub.add_argument("--limit", type=int, help="at most this many (oldest first)")
        if name == "replay":
            sub.add_argument("--dry-run", action="store_true", help="show what would be sent")
            sub.add_argument(
                "--force",
                action="store_true",
                help="also send letters already replayed and replays that failed again "
                "(one per lineage)",
            )
        else:
            sub.add_argument(
                "--full", action="store_true", help="whole error text and each letter's lineage"
            )


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 -- one return per command
    """Entry point of the ``phaseflow`` console script."""
    args = _parser().parse_args(argv)
    settings = Settings()
    logging.basicConfig(
        # The demo prints a summary; library chatter would bury it.
        level="WARNING" if args.command == "demo" else settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "worker":
        from streams.worker import run_worker

        run_worker(settings)
        return 0
    if args.command == "topics":
        from streams.topics import ensure_topics

        created = asyncio.run(ensure_topics(settings))
        print("created:", ", ".join(created) if created else "nothing (all exist)")  # noqa: T201
        return 0
    if args.command == "demo":
        from streams.demo import run_demo

        return run_demo(timeout=args.timeout)
    if args.command == "publish":
        from streams.publish import publish_from_cli

        return asyncio.run(
            publish_from_cli(
                settings,
                processor=args.processor,
                game_date=args.date,
                phase=args.phase,
                status=args.status,
                record_count=args.records,
                execution_id=args.execution_id,
            )
        )
    if args.command == "seed":
        from streams.seed import seed_from_cli

        return seed_from_cli(settings, game_date=args.date, players=args.players)
    if args.command == "predict":
        from agents.predictions.commands import predict_from_cli

        return asyncio.run(
            predict_from_cli(
                settings, game_date=args.date, batch_id=args.batch_id, wait_seconds=args.wait
            )
        )
    if args.command == "lag":
        from streams.monitoring.lag import run_lag

        return run_lag(settings, groups=args.group, watch=args.watch, interval=args.interval)
    if args.command == "status":
        from streams.status import run_status

        return run_status(settings, game_date=args.date, url=args.url)
    if args.command == "rerun":
        from streams.rerun import run_rerun

        return run_rerun(
            settings,
            start=args.date,
            end=args.to,
            phase=args.phase,
            processor=args.processor,
            attempt=args.attempt,
            dry_run=args.dry_run,
        )
    if args.command == "dlq":
        from streams.dlq import LetterFilter, run_dlq

        selection = LetterFilter(args.topic, args.reason, args.older_than, args.limit)
        return run_dlq(
            settings,
            action=args.dlq_command,
            selection=selection,
            dry_run=getattr(args, "dry_run", False),
            force=getattr(args, "force", False),
            full=getattr(args, "full", False),
        )
    return 2


if __name__ == "__main__":
    sys.exit(main())
