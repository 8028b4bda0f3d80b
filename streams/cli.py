"""The ``phaseflow`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 -- one return per command
    """Entry point of the ``phaseflow`` console script."""
    args = _parser().parse_args(argv)
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
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
    return 2


if __name__ == "__main__":
    sys.exit(main())
