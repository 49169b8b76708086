"""The command line: parse arguments, call the library, print, return an exit code.

Exit codes (documented in the README):
    0  every verdict PASS (WARN and SKIP allowed); `verify`: the signature holds
    1  a threshold FAILed; `verify`: the report or its signature was changed
    2  a check could not measure (ERROR), a required check did not run, or the
       run was interrupted (the partial report is written)
    3  usage error (unknown command, check, suite or file)
    4  configuration error (invalid suite or profile, bad unit)
    5  the report could not be read or written

Only the standard library is imported at start: `bench-agent --help` must be fast
on a node without a GPU. Each command imports what it needs.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench_agent.fleet import FleetData
    from bench_agent.model import Report

from bench_agent.cli_parser import (
    EXIT_CONFIG,
    EXIT_ERROR,
    EXIT_FAIL,
    EXIT_OK,
    EXIT_REPORT,
    EXIT_USAGE,
    build_parser,
)


def _cmd_inventory(args: argparse.Namespace) -> int:
    from bench_agent.display import print_inventory
    from bench_agent.inventory import collect_inventory

    inventory = collect_inventory(args.sysroot)
    if args.json:
        print(json.dumps(inventory, indent=2))
    else:
        print_inventory(inventory)
    return EXIT_OK


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _cmd_run(args: argparse.Namespace) -> int:
    from bench_agent.config import (
        DEFAULT_PROFILE,
        load_profile_named,
        load_suite,
        resolve_targets,
    )
    from bench_agent.display import make_progress, print_table
    from bench_agent.runner import Runner, exit_code, report_path

    if args.suite_file is not None:
        if args.targets:
            raise _usage("give either targets or --suite-file, not both")
        suite = load_suite(args.suite_file)
    else:
        suite = resolve_targets(args.targets)
    profile = load_profile_named(args.profile or suite.profile or DEFAULT_PROFILE)
    options = {
        "target": str(args.target) if args.target else None,
        "devices": list(args.device),
        "all_nvme": args.all_nvme,
        "destructive": args.destructive,
        "peer": args.peer,
        "nnodes": args.nnodes,
        "rdzv_endpoint": args.rdzv_endpoint,
        "rdzv_id": args.rdzv_id,
    }
    runner = Runner(suite, profile, output_dir=args.output, root=args.sysroot,
                    progress=make_progress(), options=options)
    # SIGTERM (systemd, Ansible's timeout) is handled like Ctrl-C: stop the
    # children, keep what was measured, write the partial report.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        report = runner.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    # The table first: whatever happens to the file (full disk, unreadable key),
    # the operator has seen the verdicts.
    if args.json:
        sys.stdout.write(report.to_json())
    else:
        print_table(report)
    saved = _save_report(args, report, report_path(args.output, report))
    code = exit_code(report) if saved else EXIT_REPORT
    if args.upload:
        uploaded = _upload(args.output, args.upload, args.key)
        code = max(code, EXIT_ERROR if uploaded != EXIT_OK else EXIT_OK)
    return code


def _upload(spool: Path, url: str, key_path: Path | None = None) -> int:
    from bench_agent.attest import default_key_path, load_key
    from bench_agent.errors import ConfigError
    from bench_agent.upload import upload_spool

    public_key = None
    path = key_path or default_key_path()
    if path.exists():
        try:
            public_key = load_key(path).public.raw
        except ConfigError as exc:
            print(f"upload: not offering a public key: {exc}", file=sys.stderr)
    result = upload_spool(spool, url, log=lambda m: print(f"upload: {m}", file=sys.stderr),
                          public_key=public_key)
    for path, why in result.skipped:
        print(f"upload: skipped {path}: {why}", file=sys.stderr)
    print(f"upload: {len(result.delivered)} delivered, {len(result.rejected)} rejected, "
          f"{len(result.pending)} waiting" + (f" ({result.stopped_because})"
                                              if result.stopped_because else ""),
          file=sys.stderr)
    return result.exit_code


def _cmd_burnin(args: argparse.Namespace) -> int:
    from bench_agent.burnin import Burnin, default_burnin_path, draw_plots, load_burnin_config
    from bench_agent.burnin_health import gpu_sampler_from_nvml
    from bench_agent.config import data_dir
    from bench_agent.display import print_table
    from bench_agent.runner import exit_code, host_identity, report_path
    from bench_agent.units import UnitError, parse_duration

    try:
        duration = parse_duration(args.duration)
    except UnitError as exc:
        raise _usage(f"--duration: {exc}") from exc
    path = args.suite_file or (default_burnin_path() if args.suite == "burnin"
                               else data_dir() / f"{args.suite}.yaml")
    config = load_burnin_config(path)
    if duration < 2 * config.interval:
        # A load reports once per interval: a shorter run cannot see any throughput.
        raise _usage(f"--duration {args.duration} is shorter than two sampling intervals "
                     f"({2 * config.interval:g} s, suite {config.name})")
    if args.target is not None and not args.target.is_dir():
        raise _usage(f"--target {args.target} is not a directory")
    burnin = Burnin(config, duration, args.output, host_identity(),
                    target=str(args.target) if args.target else None,
                    peer=args.peer,
                    gpu_sampler=gpu_sampler_from_nvml())
    previous = {sig: signal.signal(sig, burnin.request_stop)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"burn-in {config.name} for {args.duration}: loads {', '.join(config.loads) or 'none'}"
          f", sampling every {config.interval:g} s", file=sys.stderr)
    try:
        report, series = burnin.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"series: {series}", file=sys.stderr)
    if args.json:
        sys.stdout.write(report.to_json())
    else:
        print_table(report)
    target = report_path(args.output, report)
    saved = _save_report(args, report, target)
    if not args.no_plots:
        try:
            plots = draw_plots(report, target.parent, target.name.removesuffix(".json"))
            print(f"plots: {len(plots)} PNG file(s) beside the report", file=sys.stderr)
        except Exception as exc:  # matplotlib missing or a full disk: the report stands
            print(f"bench-agent: no plots: {type(exc).__name__}: {exc}", file=sys.stderr)
    code = exit_code(report) if saved else EXIT_REPORT
    if args.upload:
        code = max(code, EXIT_ERROR if _upload(args.output, args.upload, args.key) else EXIT_OK)
    return code


def _fleet_data(folder: Path | None, collector: str | None) -> FleetData:
    from bench_agent import fleet

    if (folder is None) == (collector is None):
        raise _usage("give a report folder or --collector URL (one of them)")
    if folder is not None:
        if not folder.is_dir():
            raise _usage(f"{folder} is not a folder")
        return fleet.load_dir(folder)
    assert collector is not None
    return fleet.load_collector(collector)


def _cmd_fleet(args: argparse.Namespace) -> int:
    from bench_agent import fleet
    from bench_agent.model import write_atomic

    data = _fleet_data(args.folder, args.collector)
    for problem in data.unreadable:
        print(f"bench-agent: skipped {problem}", file=sys.stderr)
    table = fleet.node_metric_table(data)
    if table.empty:
        print("bench-agent: no measurements found", file=sys.stderr)
        return EXIT_ERROR
    result = fleet.compare(table, args.z)
    render = {"table": fleet.render_text, "csv": fleet.render_csv, "html": fleet.render_html}
    text = render[args.format](result)
    if args.out:
        write_atomic(args.out, text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_FAIL if result.outliers else EXIT_OK


def _cmd_baseline(args: argparse.Namespace) -> int:
    from bench_agent import fleet
    from bench_agent.model import write_atomic

    data = _fleet_data(args.folder, None)
    table = fleet.node_metric_table(data)
    if table.empty:
        print("bench-agent: no measurements found", file=sys.stderr)
        return EXIT_ERROR
    result = fleet.compare(table, args.z)
    name = args.name or args.out.stem
    write_atomic(args.out, fleet.generate_baseline(
        result, name, f"{data.reports} reports of {len(table)} nodes in {args.folder}"))
    print(f"wrote {args.out}: {len(result.stats)} metrics from {len(table)} nodes",
          file=sys.stderr)
    return EXIT_OK


def _cmd_upload(args: argparse.Namespace) -> int:
    import os

    url = args.collector or os.environ.get("BENCH_AGENT_COLLECTOR")
    if not url:
        raise _usage("no collector: give --collector URL or set BENCH_AGENT_COLLECTOR")
    return _upload(args.output, url, args.key)


def _save_report(args: argparse.Namespace, report: Report, path: Path) -> bool:
    """Write the report (signed unless --no-sign) and the exports; False on failure.

    A key that cannot be read or created does not lose the run: the report is
    written unsigned beside where it belonged, and the exit code says so.
    """
    from bench_agent.errors import ConfigError, ReportError
    from bench_agent.model import write_atomic

    ok = True
    try:
        if args.no_sign:
            write_atomic(path, report.to_json())
            note = "unsigned"
        else:
            try:
                text = _signed_text(args, report)
                note = "signed"
            except ConfigError as exc:
                print(f"bench-agent: cannot sign the report: {exc}", file=sys.stderr)
                path = path.with_name(path.name.replace(".json", ".unsigned.json"))
                text, note, ok = report.to_json(), "UNSIGNED: signing failed", False
            write_atomic(path, text)
        if not args.json:
            print(f"report: {path} ({note})")
        if args.junit:
            from bench_agent.exports import to_junit

            write_atomic(args.junit, to_junit(report))
        if args.prom:
            from bench_agent.exports import write_prometheus

            write_prometheus(report, args.prom)
    except ReportError as exc:
        print(f"bench-agent: {exc}", file=sys.stderr)
        return False
    return ok


def _signed_text(args: argparse.Namespace, report: Report) -> str:
    from bench_agent.attest import default_key_path, load_or_create_key, sign_report

    key_path = args.key or default_key_path()
    try:
        key, created = load_or_create_key(key_path)
    except OSError as exc:
        from bench_agent.errors import ConfigError

        raise ConfigError(f"cannot create the node key {key_path}: {exc.strerror}") from exc
    if created:
        print(f"bench-agent: created the node key {key_path} (keyid "
              f"{key.public.keyid[:16]}); enroll its public key: bench-agent keys show",
              file=sys.stderr)
    return json.dumps(sign_report(report.to_dict(), key), indent=2) + "\n"


def _cmd_list(args: argparse.Namespace) -> int:
    from bench_agent.checks import check_names, get_check
    from bench_agent.config import load_profile_named, profile_names, suite_names

    print("checks:")
    for name in check_names():
        check = get_check(name)
        print(f"  {name:<22} [{check.domain}] {check.description}")
    print("suites:")
    for name in suite_names():
        print(f"  {name}")
    print("profiles:")
    for name in profile_names():
        profile = load_profile_named(name)
        print(f"  {name:<30} {profile.description}")
    return EXIT_OK


def _cmd_report_show(args: argparse.Namespace) -> int:
    from bench_agent.display import print_table
    from bench_agent.model import load_report
    from bench_agent.runner import exit_code

    if args.file.suffix == ".jsonl":
        from bench_agent.burnin import report_from_series

        report = report_from_series(args.file)
    else:
        report = load_report(args.file)
    if args.format == "json":
        sys.stdout.write(report.to_json())
    elif args.format == "csv":
        from bench_agent.exports import to_csv

        sys.stdout.write(to_csv(report))
    else:
        print_table(report)
    return exit_code(report)


def _cmd_keys(args: argparse.Namespace) -> int:
    from bench_agent.attest import default_key_path, init_key, load_key

    path = args.key or default_key_path()
    if args.keys_command == "init":
        try:
            key = init_key(path, force=args.force)
        except OSError as exc:
            from bench_agent.errors import ConfigError

            raise ConfigError(f"cannot create the node key {path}: {exc}") from exc
        print(f"created {path} (mode 0600)")
    else:
        key = load_key(path)
    print(key.public.pem(), end="")
    print(f"keyid: {key.public.keyid}")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from bench_agent.attest import PublicKey, loads_strict, verify_envelope
    from bench_agent.errors import SignatureError, StrictJSONError

    try:
        pubkey = PublicKey.from_pem(args.pubkey.read_bytes(), str(args.pubkey))
    except OSError as exc:
        print(f"bench-agent: cannot read {args.pubkey}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    try:
        # As strict as the collector: what verifies here is what it accepts.
        envelope = loads_strict(args.file.read_bytes())
    except (OSError, StrictJSONError) as exc:
        print(f"bench-agent: {args.file}: not a signed report: {exc}", file=sys.stderr)
        return EXIT_FAIL
    try:
        statement = verify_envelope(envelope, pubkey)
    except SignatureError as exc:
        print(f"bench-agent: {args.file}: NOT VERIFIED: {exc}", file=sys.stderr)
        return EXIT_FAIL
    for subject in statement["subject"]:
        print(f"verified: subject {subject['name']} sha256:{subject['digest']['sha256']} "
              f"signed by keyid {pubkey.keyid}")
    return EXIT_OK


def _cmd_peer(args: argparse.Namespace) -> int:
    from bench_agent.peer import PeerConfig, parse_ports, run_peer

    try:
        ports = parse_ports(args.ports)
    except ValueError as exc:
        raise _usage(str(exc)) from exc
    if not 1 <= args.iperf3_servers <= 64:
        raise _usage("--iperf3-servers must be between 1 and 64")
    return run_peer(PeerConfig(bind=args.bind, ports=ports, iperf3_servers=args.iperf3_servers))


def _cmd_parse(args: argparse.Namespace) -> int:
    from bench_agent.tools import parse_tool_output

    measurements = parse_tool_output(args.tool, args.file)
    print(json.dumps([m.to_dict() for m in measurements], indent=2))
    return EXIT_OK


def _cmd_collector(args: argparse.Namespace) -> int:
    try:
        from bench_agent.collector import cli as collector
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise _usage(f"the collector needs its extra: pip install 'bench-agent[collector]' "
                     f"({exc})") from exc
    if args.collector_command == "serve":
        return collector.serve(db_url=args.db, host=args.host, port=args.port,
                               auto_enroll=args.auto_enroll,
                               admin_token_file=args.admin_token_file,
                               max_body_bytes=args.max_body_bytes, access_log=args.access_log)
    if args.collector_command == "enroll":
        return collector.enroll(db_url=args.db, node=args.node, pubkey=args.pubkey)
    return collector.revoke(db_url=args.db, keyid=args.keyid)


def _usage(message: str) -> Exception:
    from bench_agent.errors import UsageError

    return UsageError(message)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from bench_agent.errors import (
        CheckError,
        ConfigError,
        ReportError,
        SignatureError,
        UsageError,
    )

    handlers = {
        "inventory": _cmd_inventory,
        "run": _cmd_run,
        "list": _cmd_list,
        "report": _cmd_report_show,
        "parse": _cmd_parse,
        "keys": _cmd_keys,
        "verify": _cmd_verify,
        "peer": _cmd_peer,
        "collector": _cmd_collector,
        "upload": _cmd_upload,
        "burnin": _cmd_burnin,
        "fleet": _cmd_fleet,
        "baseline": _cmd_baseline,
    }
    try:
        return handlers[args.command](args)
    except UsageError as exc:
        print(f"bench-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"bench-agent: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (ReportError, SignatureError) as exc:
        print(f"bench-agent: {exc}", file=sys.stderr)
        return EXIT_REPORT
    except CheckError as exc:
        # `parse`: the tool's output reports a failure, or cannot be read.
        print(f"bench-agent: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
