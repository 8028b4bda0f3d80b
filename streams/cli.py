"""The ``phaseflow`` command line: the argument parser of every command and the dispatch to
the module that does the work (each command's work lives in its own module, imported lazily so
``phaseflow --help`` loads neither Faust nor BigQuery).

Longer than ~400 lines on purpose: one parser definition per command keeps the whole CLI
surface readable in one place; splitting it would scatter the options away from the dispatch
that reads them."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from phaseflow.streams.cli_errors import (
    EXIT_BAD_INPUT,
    BadInputError,
    check_settings_environment,
    load_settings,
    run_command,
)
from phaseflow.streams.core.log_repeats import collapse_repeats_on_root
from phaseflow.streams.core.settings import Settings


def _date_text(text: str) -> str:
    """An argument that must be a YYYY-MM-DD date, passed on as text."""
    try:
        date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date written YYYY-MM-DD") from None
    return text


def _positive_int(text: str) -> int:
    """A count that must be at least 1 (``--players``, ``--limit``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def _positive_seconds(text: str) -> float:
    """A duration in seconds that must be more than 0 (``--interval``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not more than 0 seconds")
    return value


def _http_url(text: str) -> str:
    """A URL the CLI can ask: ``http(s)://host[:port]``."""
    url = urlsplit(text)
    if url.scheme not in {"http", "https"} or not url.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL like http://127.0.0.1:6066")
    return text


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
    publish.add_argument("--date", required=True, type=_date_text, help="game_date, YYYY-MM-DD")
    publish.add_argument("--phase", required=True, help="1-6 or e.g. phase_3_analytics")
    publish.add_argument(
        "--status", default="success", choices=["success", "partial", "failed", "skipped"]
    )
    publish.add_argument("--records", type=int, default=0, help="record_count")
    publish.add_argument("--execution-id", default=None, help="dedup id; generated if absent")
    publish.add_argument(
        "--no-check",
        action="store_true",
        help="skip checking processor and phase against the registry",
    )
    seed = commands.add_parser(
        "seed", help="synthetic source data for a date into BigQuery: players, prop lines, history"
    )
    seed.add_argument("--date", required=True, type=_date_text, help="game_date, YYYY-MM-DD")
    seed.add_argument("--players", type=_positive_int, default=450, help="players on the slate")
    predict = commands.add_parser("predict", help="start a prediction batch (phase 5) for a date")
    predict.add_argument("--date", required=True, type=_date_text, help="game_date, YYYY-MM-DD")
    predict.add_argument("--batch-id", default=None, help="default: {date}-r{n}")
    predict.add_argument(
        "--wait", type=float, default=0.0, help="seconds to wait for the phase-5 completion"
    )
    for command in (seed, predict):
        _add_actor(command)
    lag = commands.add_parser("lag", help="consumer lag per group/topic/partition, with status")
    lag.add_argument(
        "--group",
        action="append",
        default=[],
        help="consumer group (repeatable; default: own and discovered groups)",
    )
    lag.add_argument("--watch", action="store_true", help="sample repeatedly until Ctrl-C")
    lag.add_argument(
        "--interval", type=_positive_seconds, default=None, help="seconds between samples"
    )
    status = commands.add_parser(
        "status", help="phases of a date, lag, dead letters and alerts, from a running worker"
    )
    status.add_argument("--date", required=True, type=date.fromisoformat, help="YYYY-MM-DD")
    status.add_argument(
        "--url",
        default=None,
        type=_http_url,
        help="worker URL (default: PHASEFLOW_WEB_HOST:PHASEFLOW_WEB_PORT)",
    )
    _add_operations_commands(commands)
    registry = commands.add_parser("registry", help="check a pipeline registry file")
    registry_commands = registry.add_subparsers(dest="registry_command", required=True)
    check = registry_commands.add_parser(
        "check", help="load FILE as the worker would; print every problem (exit 2) or a summary"
    )
    check.add_argument("file", type=Path, help="registry TOML, e.g. streams/pipeline.toml")
    for command in (lag, status, check):
        _add_json(command)
    _add_tail_command(commands)
    _add_replay_command(commands)
    return parser


def _add_replay_command(commands: Any) -> None:
    replay = commands.add_parser(
        "replay",
        help="replay past dates from the log under another registry, offline (produces nothing)",
    )
    replay.add_argument("--date", required=True, type=date.fromisoformat, help="YYYY-MM-DD")
    replay.add_argument("--to", type=date.fromisoformat, help="last date (inclusive), YYYY-MM-DD")
    replay.add_argument(
        "--registry", required=True, type=Path, help="the registry TOML to replay under"
    )
    _add_json(replay)


def _add_tail_command(commands: Any) -> None:
    from phaseflow.streams.tail import TOPICS, parse_topics

    def topics(text: str) -> tuple[str, ...]:
        try:
            return parse_topics(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    tail = commands.add_parser(
        "tail", help="print triggers, alerts, reruns and dead letters as they happen"
    )
    tail.add_argument("--date", type=date.fromisoformat, help="only this game date, YYYY-MM-DD")
    tail.add_argument(
        "--topics",
        type=topics,
        default=tuple(TOPICS),
        help=f"comma-separated, from {','.join(TOPICS)} (default: all)",
    )


def _add_actor(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--actor", default=None, help="who acts, for the audit trail (default: the OS user)"
    )


def _add_json(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--json", action="store_true", help="print one JSON document (errors stay on stderr)"
    )


def _add_operations_commands(commands: Any) -> None:
    """``rerun`` and ``dlq list|replay`` (docs/operations.md)."""
    from phaseflow.streams.dlq_letters import parse_age

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
    _add_json(rerun)
    _add_actor(rerun)
    rerun.add_argument(
        "--phase-timeout",
        type=float,
        default=60.0,
        metavar="MINUTES",
        help="every gated phase: how long to wait for each later phase to start (default 60)",
    )
    rerun.add_argument(
        "--no-follow",
        action="store_true",
        help="every gated phase: send the first phase's reruns and return, without following",
    )
    dlq = commands.add_parser("dlq", help="list or replay dead letters")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    for name, text in (("list", "show dead letters"), ("replay", "send them back, once")):
        sub = dlq_commands.add_parser(name, help=text)
        sub.add_argument("--topic", help="source topic (full name or e.g. phase-completions)")
        sub.add_argument("--reason", help="error_type, e.g. not_json")
        sub.add_argument("--older-than", type=age, help="failed at least this long ago")
        sub.add_argument("--limit", type=_positive_int, help="at most this many (oldest first)")
        if name == "replay":
            sub.add_argument("--dry-run", action="store_true", help="show what would be sent")
            sub.add_argument(
                "--force",
                action="store_true",
                help="also send letters already replayed and replays that failed again "
                "(one per lineage)",
            )
            _add_actor(sub)
        else:
            sub.add_argument(
                "--full", action="store_true", help="whole error text and each letter's lineage"
            )
            _add_json(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``phaseflow`` console script.

    Bad arguments exit 2 (argparse); every known failure while running a command is one line on
    stderr with exit 2 (bad input) or 1 (a service unreachable), see streams/cli_errors.py.
    """
    args = _parser().parse_args(argv)
    loaded: list[Settings] = []
    return run_command(lambda: _run(args, loaded), settings=lambda: loaded[0] if loaded else None)


def _check_json(args: argparse.Namespace) -> None:
    """``--json`` is one document: not a stream of samples, not a sending command's progress."""
    if not getattr(args, "json", False):
        return
    if args.command == "lag" and args.watch:
        raise BadInputError("lag --json prints one sample; drop --watch")
    if args.command == "rerun" and not args.dry_run:
        raise BadInputError("rerun --json needs --dry-run (it prints the plan)")


def _broker_needed(args: argparse.Namespace) -> bool:
    """Commands that talk to Kafka at once; ``publish`` checks its input first itself. ``seed``
    writes to BigQuery only, but its audit record goes to Kafka: better not to start seeding
    when the record cannot be written (streams/cli_audit.py)."""
    if args.command == "rerun":
        return not args.dry_run
    return args.command in {"topics", "predict", "lag", "dlq", "tail", "seed", "replay"}


def _require_services(args: argparse.Namespace, settings: Settings) -> None:
    """Fail in seconds, naming the address, when a service the command needs is not there (or,
    for ``demo``, naming the install command when the packages of the local services are not)."""
    from phaseflow.streams.reachability import require_bigquery, require_broker

    if args.command == "demo":
        _require_local_extra()
    if args.command == "replay":  # a bad registry is the user's to fix, broker up or not
        from phaseflow.streams.core.registry import load_registry

        load_registry(args.registry)
    if _broker_needed(args):
        require_broker(settings)
    if args.command == "seed":
        require_bigquery(settings)


def _require_local_extra() -> None:
    # Before the demo module is imported: its launchers import these packages.
    from phaseflow.streams.local.extra import INSTALL_LOCAL_EXTRA, missing_local_packages

    missing = missing_local_packages()
    if missing:
        raise BadInputError(
            f"phaseflow demo needs {', '.join(missing)} (the 'local' extra): {INSTALL_LOCAL_EXTRA}"
        )


def _run(args: argparse.Namespace, loaded: list[Settings]) -> int:
    """Check the environment and arguments, load the settings, run the command (audited when it
    is an operator action, see streams/cli_audit.py)."""
    check_settings_environment()  # the registry check too: a stray variable is a typo anyway
    _check_json(args)
    if args.command == "registry":
        from phaseflow.streams.registry_check import check_registry_file

        return check_registry_file(args.file, as_json=args.json)
    settings = load_settings()
    loaded.append(settings)
    _require_services(args, settings)
    logging.basicConfig(
        # The demo and replay print a report; library chatter would bury it.
        level="WARNING" if args.command in {"demo", "replay"} else settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    collapse_repeats_on_root(settings.log_repeat_window_seconds)
    arguments = _audited_arguments(args)
    if arguments is None:
        return _dispatch(args, settings)
    from phaseflow.streams.cli_audit import operator_actor, run_audited, side_producer_writer

    command = " ".join(part for part in (args.command, getattr(args, "dlq_command", None)) if part)
    return run_audited(
        lambda: _dispatch(args, settings),
        command=command,
        arguments=arguments,
        actor=operator_actor(args.actor),
        writer=side_producer_writer(settings),
    )


def _audited_arguments(args: argparse.Namespace) -> dict[str, str] | None:
    """The key arguments of an operator action for its audit record, or None when the command
    changes nothing (reads, dry runs) and is not audited. Only options named here are recorded:
    nothing from the environment, so no secret can reach the trail."""
    if getattr(args, "dry_run", False):
        return None
    if args.command == "seed":
        return {"game_date": args.date, "players": str(args.players)}
    if args.command == "predict":
        return {"game_date": args.date, "batch_id": args.batch_id or "", "wait": str(args.wait)}
    if args.command == "rerun":
        return _present(
            game_date=args.date,
            to=args.to,
            phase=args.phase,
            processor=args.processor,
            attempt=args.attempt,
            # Following later phases is what a rerun of every gated phase does, and only that.
            follow=None if args.phase is not None or args.processor else _follow(args),
        )
    if args.command == "dlq" and args.dlq_command == "replay":
        return _present(
            topic=args.topic,
            reason=args.reason,
            older_than=args.older_than,
            limit=args.limit,
            force=args.force,
        )
    return None


def _follow(args: argparse.Namespace) -> str:
    return "no" if args.no_follow else f"{args.phase_timeout:g} min per phase"


def _present(**values: object) -> dict[str, str]:
    return {name: str(value) for name, value in values.items() if value is not None}


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:  # noqa: PLR0911
    """Run the parsed command (one return per command)."""
    if args.command == "worker":
        from phaseflow.streams.worker import run_worker

        run_worker(settings)
        return 0
    if args.command == "topics":
        from phaseflow.streams.core.topics import ensure_topics

        created = asyncio.run(ensure_topics(settings))
        print("created:", ", ".join(created) if created else "nothing (all exist)")  # noqa: T201
        return 0
    if args.command == "demo":
        from phaseflow.streams.demo import run_demo

        return run_demo(timeout=args.timeout)
    if args.command == "publish":
        from phaseflow.streams.publish import publish_from_cli

        return asyncio.run(
            publish_from_cli(
                settings,
                processor=args.processor,
                game_date=args.date,
                phase=args.phase,
                status=args.status,
                record_count=args.records,
                execution_id=args.execution_id,
                check=not args.no_check,
            )
        )
    if args.command == "seed":
        from phaseflow.streams.seed import seed_from_cli

        return seed_from_cli(settings, game_date=args.date, players=args.players)
    if args.command == "predict":
        from phaseflow.agents.predictions.commands import predict_from_cli

        return asyncio.run(
            predict_from_cli(
                settings, game_date=args.date, batch_id=args.batch_id, wait_seconds=args.wait
            )
        )
    if args.command == "lag":
        from phaseflow.streams.monitoring.lag_cli import run_lag

        return run_lag(
            settings,
            groups=args.group,
            watch=args.watch,
            interval=args.interval,
            as_json=args.json,
        )
    if args.command == "status":
        from phaseflow.streams.status import run_status

        return run_status(settings, game_date=args.date, url=args.url, as_json=args.json)
    if args.command == "rerun":
        from phaseflow.streams.rerun import run_rerun

        return run_rerun(
            settings,
            start=args.date,
            end=args.to,
            phase=args.phase,
            processor=args.processor,
            attempt=args.attempt,
            dry_run=args.dry_run,
            phase_timeout=None if args.no_follow else timedelta(minutes=args.phase_timeout),
            as_json=args.json,
        )
    if args.command == "tail":
        from phaseflow.streams.tail import run_tail

        return run_tail(settings, topics=args.topics, game_date=args.date)
    if args.command == "replay":
        from phaseflow.streams.replay import run_replay

        return run_replay(
            settings,
            start=args.date,
            end=args.to,
            registry_path=args.registry,
            as_json=args.json,
        )
    if args.command == "dlq":
        from phaseflow.streams.dlq import run_dlq
        from phaseflow.streams.dlq_letters import LetterFilter

        selection = LetterFilter(args.topic, args.reason, args.older_than, args.limit)
        return run_dlq(
            settings,
            action=args.dlq_command,
            selection=selection,
            dry_run=getattr(args, "dry_run", False),
            force=getattr(args, "force", False),
            full=getattr(args, "full", False),
            as_json=getattr(args, "json", False),
        )
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
