"""The command line: parse arguments, call the library, print, return an exit code.

Exit codes (documented in the README):
    0  every verdict PASS (WARN and SKIP allowed); `verify`: the signature holds
    1  a threshold FAILed; `verify`: the report or its signature was changed
    2  a check could not measure (ERROR), a required check did not run, or the
       run was interrupted (the partial report is written)
    3  usage error: unknown command, domain, suite, check, profile name or file,
       an option naming what does not exist (`--target /nonexistent`)
    4  configuration error: a suite or profile that exists but is invalid
    5  a report could not be read, or not written where it belonged (it is then
       kept elsewhere, and stderr says where: see _save_report)

One scheme: what the command line names and cannot be found is 3, whatever kind
of thing it is; what is found and cannot be used is 4 (a suite or profile) or 5
(a report).

Only the standard library is imported at start: `bench-agent --help` must be fast
on a node without a GPU. Each command imports what it needs.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench_agent.config.plans import Profile
    from bench_agent.core.model import Report
    from bench_agent.fleet.analysis import FleetData

from bench_agent.cli.parser import (
    EXIT_ERROR,
    EXIT_FAIL,
    EXIT_OK,
    EXIT_REPORT,
    build_parser,
)


def _cmd_inventory(args: argparse.Namespace) -> int:
    from bench_agent.inventory.collect import collect_inventory
    from bench_agent.report.display import print_inventory

    inventory = collect_inventory(args.sysroot)
    if args.json:
        print(json.dumps(inventory.to_dict(), indent=2))
    else:
        print_inventory(inventory)
    return EXIT_OK


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _cmd_run(args: argparse.Namespace) -> int:
    from bench_agent.checks.base import RunOptions
    from bench_agent.config.loader import (
        DEFAULT_PROFILE,
        load_profile_named,
        load_suite,
        resolve_targets,
    )
    from bench_agent.report.progress import make_progress
    from bench_agent.report.upload import check_collector_url
    from bench_agent.run.runner import Runner

    if args.upload:
        check_collector_url(args.upload)  # before the run, not after an hour of it
    if args.suite_file is not None:
        if args.targets:
            raise _usage("give either targets or --suite-file, not both")
        suite = load_suite(_existing_file(args.suite_file, "--suite-file"))
    else:
        suite = resolve_targets(args.targets)
    from bench_agent.checks import is_check
    from bench_agent.cli.overrides import apply_overrides, requested

    suite = apply_overrides(suite, requested(args.runtime, args.size, args.repetitions),
                            {t for t in args.targets if is_check(t)})
    # A profile named on the command line that does not exist is a usage error
    # (3); one named inside the suite file is that file's configuration error (4).
    profile = (_profile_from_command_line(args.profile) if args.profile
               else load_profile_named(suite.profile or DEFAULT_PROFILE))
    if args.target is not None and not args.target.is_dir():
        # Refused before anything runs: the storage checks would each write an ERROR.
        raise _usage(f"--target {args.target}: "
                     + ("not a directory" if args.target.exists() else "no such directory"))
    if args.nnodes < 1:
        raise _usage(f"--nnodes {args.nnodes}: needs at least one node")
    options = RunOptions(
        target=args.target,
        devices=tuple(args.device),
        all_nvme=args.all_nvme,
        destructive=args.destructive,
        peer=args.peer,
        nnodes=args.nnodes,
        rdzv_endpoint=args.rdzv_endpoint,
        rdzv_id=args.rdzv_id,
        **_expected_topology_options(args.expect, profile.topology),
    )
    runner = Runner(suite, profile, output_dir=args.output, root=args.sysroot,
                    progress=make_progress(suite.checks), options=options)
    # SIGTERM (systemd, Ansible's timeout) is handled like Ctrl-C: stop the
    # children, keep what was measured, write the partial report.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        report = runner.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    code = _keep_and_show(args, report, _rerun_command(args)).exit_code
    if args.upload:
        uploaded = _upload(args.output, args.upload, args.key)
        code = max(code, EXIT_ERROR if uploaded != EXIT_OK else EXIT_OK)
    return code


def _expected_topology_options(expect: Path | None, from_profile: str | None
                               ) -> dict[str, Any]:
    """--expect FILE, else the profile's topology key: read before anything runs."""
    from bench_agent.cli.topology import expected_topology

    path = expect if expect is not None else Path(from_profile) if from_profile else None
    if path is None:
        return {}
    if expect is not None:
        _existing_file(expect, "--expect")
    return {"expected_topology": expected_topology(path), "expected_topology_file": str(path)}


def _cmd_topology(args: argparse.Namespace) -> int:
    from bench_agent.cli.topology import cmd_topology

    return cmd_topology(args)


def _upload(spool: Path, url: str, key_path: Path | None = None, as_json: bool = False
            ) -> int:
    from bench_agent.core.errors import ConfigError
    from bench_agent.report.attest import default_key_path, load_key
    from bench_agent.report.upload import upload_spool

    public_key = None
    path = key_path or default_key_path()
    if path.exists():
        try:
            public_key = load_key(path).public.raw
        except ConfigError as exc:
            _err(f"upload: not offering a public key: {exc}")
    try:
        result = upload_spool(spool, url, log=lambda m: _err(f"upload: {m}"),
                              public_key=public_key)
    except OSError as exc:  # the spool's own files (lock, sent/, rejected/) cannot be used
        # Nothing left the spool that was not acknowledged: what is there waits.
        _err(f"upload: the spool {spool} cannot be used: {exc.strerror or exc}; "
             "its reports stay waiting")
        return EXIT_ERROR
    for path, why in result.skipped:
        _err(f"upload: skipped {path}: {why}")
    _err(f"upload: {result.summary()}")
    if as_json:
        from bench_agent.cli.json_out import emit, upload_document

        emit(upload_document(result, result.exit_code))
    return result.exit_code


def _cmd_burnin(args: argparse.Namespace) -> int:
    from bench_agent.burnin.engine import (
        Burnin,
        default_burnin_path,
        draw_plots,
        load_burnin_config,
    )
    from bench_agent.burnin.health import gpu_sampler_from_nvml
    from bench_agent.config.loader import data_dir
    from bench_agent.core.errors import UnitError
    from bench_agent.core.units import parse_duration
    from bench_agent.report.upload import check_collector_url
    from bench_agent.run.runner import host_identity

    if args.upload:
        check_collector_url(args.upload)  # before the run, not after it
    try:
        duration = parse_duration(args.duration)
    except UnitError as exc:
        raise _usage(f"--duration: {exc}") from exc
    if args.suite_file is not None:
        path = _existing_file(args.suite_file, "--suite-file")
    else:
        path = (default_burnin_path() if args.suite == "burnin"
                else data_dir() / f"{args.suite}.yaml")
        if not path.is_file():
            raise _usage(f"--suite {args.suite}: no such burn-in suite ({path})")
    config = load_burnin_config(path)
    if duration < 2 * config.interval:
        # A load reports once per interval: a shorter run cannot see any throughput.
        raise _usage(f"--duration {args.duration} is shorter than two sampling intervals "
                     f"({2 * config.interval:g} s, suite {config.name})")
    if args.target is not None and not args.target.is_dir():
        raise _usage(f"--target {args.target}: "
                     + ("not a directory" if args.target.exists() else "no such directory"))
    from bench_agent.cli.burnin_view import make_burnin_view

    burnin = Burnin(config, duration, args.output, host_identity(),
                    target=str(args.target) if args.target else None,
                    peer=args.peer,
                    gpu_sampler=gpu_sampler_from_nvml())
    previous = {sig: signal.signal(sig, burnin.request_stop)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    _err(f"burn-in {config.name} for {args.duration}: loads {', '.join(config.loads) or 'none'}"
         f", sampling every {config.interval:g} s")
    view = make_burnin_view(duration, config.name)
    burnin.on_record = view
    try:
        report, series = burnin.run()
    finally:
        view.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _err(f"series: {series}")
    kept = _keep_and_show(args, report)
    if not args.no_plots and kept.report is not None:
        target = kept.report
        try:
            plots = draw_plots(report, target.parent,
                               target.name.removesuffix(".json").removesuffix(".unsigned"))
            _err(f"plots: {len(plots)} SVG file(s) beside the report")
        # A full disk or a read-only folder, a series point that is no number: the
        # report stands, kept already.
        except (OSError, ValueError, TypeError) as exc:
            _err(f"bench-agent: no plots: {type(exc).__name__}: {exc}")
    code = kept.exit_code
    if args.upload:
        code = max(code, EXIT_ERROR if _upload(args.output, args.upload, args.key) else EXIT_OK)
    return code


def _fleet_data(folder: Path | None, collector: str | None) -> FleetData:
    from bench_agent.fleet import analysis as fleet

    if (folder is None) == (collector is None):
        raise _usage("give a report folder or --collector URL (one of them)")
    if folder is not None:
        if not folder.is_dir():
            raise _usage(f"{folder} is not a folder")
        return fleet.load_dir(folder)
    assert collector is not None
    return fleet.load_collector(collector)


def _cmd_fleet(args: argparse.Namespace) -> int:
    from bench_agent.core.model import write_atomic
    from bench_agent.fleet import analysis as fleet
    from bench_agent.fleet.drift import find_drift

    data = _fleet_data(args.folder, args.collector)
    for problem in data.unreadable:
        _err(f"bench-agent: skipped {problem}")
    table = fleet.node_metric_table(data)
    if table.empty:
        _err("bench-agent: no measurements found")
        return EXIT_ERROR
    result = fleet.compare(table, args.z)
    result.drift = find_drift(data.facts_by_node())
    if args.format == "json":
        from bench_agent.cli.json_out import fleet_document
        from bench_agent.core.model import dumps_finite

        text = dumps_finite(fleet_document(result), indent=2) + "\n"
    else:
        render = {"table": fleet.render_text, "csv": fleet.render_csv,
                  "html": fleet.render_html}
        text = render[args.format](result)
    if args.format == "csv" and result.drift:
        # The CSV keeps its metric rows; drift, which sets the exit code too, is said here.
        from bench_agent.fleet.drift import render_drift_text

        for line in render_drift_text(result.drift, len(result.table)):
            _err(line)
    if args.out:
        write_atomic(args.out, text)
        _err(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return EXIT_FAIL if result.outliers or result.drift else EXIT_OK


def _cmd_baseline(args: argparse.Namespace) -> int:
    from bench_agent.core.model import write_atomic
    from bench_agent.fleet import analysis as fleet
    from bench_agent.fleet.drift import expected_configuration

    data = _fleet_data(args.folder, None)
    table = fleet.node_metric_table(data)
    if table.empty:
        _err("bench-agent: no measurements found")
        return EXIT_ERROR
    result = fleet.compare(table, args.z)
    name = args.name or args.out.stem
    source = f"{data.reports} reports of {len(table)} nodes in {args.folder}"
    configuration = expected_configuration(data.facts_by_node(), source)
    write_atomic(args.out, fleet.generate_baseline(result, name, source, configuration))
    _err(f"wrote {args.out}: {len(result.stats)} metrics and {len(configuration)} "
         f"configuration facts from {len(table)} nodes")
    return EXIT_OK


def _cmd_upload(args: argparse.Namespace) -> int:
    import os

    url = args.collector or os.environ.get("BENCH_AGENT_COLLECTOR")
    if not url:
        raise _usage("no collector: give --collector URL or set BENCH_AGENT_COLLECTOR")
    return _upload(args.output, url, args.key, as_json=args.json)


# Where a report goes when its output folder cannot take it (full disk, EIO, a
# read-only remount): --fallback-dir first, then /var/tmp (kept across reboots,
# FHS 3.0 section 5.15), then $XDG_RUNTIME_DIR (a tmpfs in RAM on systemd hosts,
# so usually another filesystem than a full disk; lost at reboot).
VAR_TMP_FALLBACK = Path("/var/tmp/bench-agent")


def fallback_dirs(fallback_dir: Path | None, environ: dict[str, str] | None = None,
                  ) -> list[Path]:
    import os

    env = os.environ if environ is None else environ
    dirs = [fallback_dir] if fallback_dir is not None else []
    dirs.append(VAR_TMP_FALLBACK)
    if env.get("XDG_RUNTIME_DIR"):
        dirs.append(Path(env["XDG_RUNTIME_DIR"]) / "bench-agent")
    return list(dict.fromkeys(dirs))


@dataclass
class Kept:
    """Where the run's files went. ``complete``: each one at its place, as asked."""

    report: Path | None
    complete: bool
    verdict_code: int

    @property
    def exit_code(self) -> int:
        return self.verdict_code if self.complete else EXIT_REPORT


def _rerun_command(args: argparse.Namespace) -> list[str]:
    """`bench-agent run` with this run's options that say where and against what it
    measured (not which checks: the failed ones are added by display.next_steps)."""
    command = ["bench-agent", "run"]
    if args.output != Path("results"):
        command += ["--output", str(args.output)]
    for option in ("target", "peer", "runtime", "size", "repetitions"):
        value = getattr(args, option, None)
        if value is not None:
            command += [f"--{option}", str(value)]
    for device in args.device:
        command += ["--device", device]
    command += ["--all-nvme"] if args.all_nvme else []
    command += ["--destructive"] if args.destructive else []
    return command


def _keep_and_show(args: argparse.Namespace, report: Report,
                   rerun: list[str] | None = None) -> Kept:
    """Write the report and its exports first, then print: no fault of the display
    (a markup bug, a closed pipe) can lose a file or change the exit code."""
    from bench_agent.report.display import next_steps, print_table
    from bench_agent.run.runner import exit_code

    kept = _save_report(args, report)
    if args.json:
        sys.stdout.write(report.to_json())
    else:
        print_table(report, next_steps=next_steps(report, kept.report, args.output, rerun,
                                                  kept.note))
    return Kept(kept.report, kept.complete, exit_code(report))


@dataclass
class _Saved:
    report: Path | None
    note: str
    complete: bool


def _save_report(args: argparse.Namespace, report: Report) -> _Saved:
    """Write the report (signed unless --no-sign), then --junit and --prom.

    Each file is tried at its place, then in each fallback folder; a report that
    fits nowhere in full is tried again as a compact unsigned copy (no
    indentation, no envelope: about three quarters of the size). stderr names
    every failure and where each file went. A key that cannot be read or
    created does not lose the run either: the report is written unsigned.
    """
    from bench_agent.core.errors import ConfigError
    from bench_agent.core.model import write_atomic
    from bench_agent.run.runner import report_path

    elsewhere = fallback_dirs(args.fallback_dir)
    primary = report_path(args.output, report)
    complete = True
    if args.no_sign:
        text, note = report.to_json(), "unsigned"
    else:
        try:
            text, note = _signed_text(args, report), "signed"
        except ConfigError as exc:
            _err(f"bench-agent: cannot sign the report: {exc}")
            primary = _unsigned_name(primary)
            text, note, complete = report.to_json(), "UNSIGNED: signing failed", False

    def writer(content: str) -> Callable[[Path], None]:
        return lambda path: write_atomic(path, content)

    attempts = [(primary, writer(text), note)]
    attempts += [(report_path(d, report).with_name(primary.name), writer(text), note)
                 for d in elsewhere]
    compact = report.to_json(compact=True)
    compact_note = "UNSIGNED compact copy: the full report did not fit anywhere"
    attempts += [(_unsigned_name(report_path(d, report)), writer(compact), compact_note)
                 for d in [args.output, *elsewhere]]
    where = _write_first("report", attempts)
    if where is None:
        return _Saved(None, "", False)
    path, note = where
    if path != primary:
        complete = False
        _err(f"bench-agent: the report was kept as {path!s} ({note}), not in "
             f"{args.output!s}; move it there for `bench-agent upload`")
    for option, export in (("--junit", args.junit), ("--prom", args.prom)):
        if export is None:
            continue
        write = _export_writer(option, report)
        went = _write_first(f"{option} file", [(export, write, "")]
                            + [(d / export.name, write, "") for d in elsewhere])
        if went is None or went[0] != export:
            complete = False
        if went is not None and went[0] != export:
            _err(f"bench-agent: the {option} file was kept as {went[0]!s}, "
                 f"not {export!s}")
    return _Saved(path, note, complete)


def _export_writer(option: str, report: Report) -> Callable[[Path], None]:
    from bench_agent.core.model import write_atomic
    from bench_agent.report.exports import to_junit, write_prometheus

    if option == "--junit":
        text = to_junit(report)
        return lambda path: write_atomic(path, text)
    return lambda path: write_prometheus(report, path)


def _write_first(what: str, attempts: list[tuple[Path, Callable[[Path], None], str]],
                 ) -> tuple[Path, str] | None:
    """The first (path, note) whose writer succeeds; every failure is told on stderr."""
    from bench_agent.core.errors import ReportError

    for path, write, note in attempts:
        try:
            write(path)
        except ReportError as exc:
            _err(f"bench-agent: {exc}")
        except OSError as exc:  # the folder itself could not be made
            _err(f"bench-agent: cannot write {path!s}: {exc.strerror or exc}")
        else:
            return path, note
    _err(f"bench-agent: the {what} could not be written anywhere "
         f"(tried {', '.join(str(p) for p, _w, _n in attempts)})")
    return None


def _unsigned_name(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".json") + ".unsigned.json")


def _signed_text(args: argparse.Namespace, report: Report) -> str:
    from bench_agent.report.attest import default_key_path, load_or_create_key, sign_report

    key_path = args.key or default_key_path()
    try:
        key, created = load_or_create_key(key_path)
    except OSError as exc:
        from bench_agent.core.errors import ConfigError

        raise ConfigError(f"cannot create the node key {key_path}: {exc.strerror}") from exc
    if created:
        _err(f"bench-agent: created the node key {key_path} (keyid "
              f"{key.public.keyid[:16]}); enroll its public key: bench-agent keys show")
    return json.dumps(sign_report(report.to_dict(), key), indent=2) + "\n"


def _cmd_list(args: argparse.Namespace) -> int:
    from bench_agent.checks import catalog, check_names, get_check
    from bench_agent.config.loader import load_profile_named, profile_names, suite_names

    if args.markdown:
        if args.metrics:
            raise _usage("--markdown writes the README's check table; it takes no --metrics")
        sys.stdout.write(catalog.readme_block())
        return EXIT_OK
    if args.facts:
        from bench_agent.core.config_rules import FACTS

        if args.json:
            print(json.dumps([{"fact": k, "meaning": v} for k, v in FACTS.items()], indent=2))
        else:
            for fact, meaning in FACTS.items():
                print(f"{fact:<28} {meaning}")
        return EXIT_OK
    if args.metrics:
        if args.json:
            print(json.dumps(catalog.metric_records(), indent=2))
        else:
            from bench_agent.report.display import print_rows

            print_rows(catalog.METRIC_COLUMNS, list(catalog.metric_rows()))
        return EXIT_OK
    if args.json:
        print(json.dumps({
            "checks": catalog.check_records(), "suites": suite_names(),
            "profiles": [{"name": name, "description": load_profile_named(name).description}
                         for name in profile_names()]}, indent=2))
        return EXIT_OK
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
    from bench_agent.core.errors import ReportError
    from bench_agent.report.attest import load_report
    from bench_agent.report.display import print_table
    from bench_agent.run.runner import exit_code

    path = _existing_file(args.file, "report")
    try:
        if path.suffix == ".jsonl":
            from bench_agent.burnin.engine import report_from_series

            report = report_from_series(path)
        else:
            report = load_report(path)
    except ReportError as exc:
        if str(path) in str(exc):
            raise
        raise ReportError(f"{path}: {exc}") from exc  # which file, when the reader omits it
    if args.format == "json":
        sys.stdout.write(report.to_json())
    elif args.format == "csv":
        from bench_agent.report.exports import to_csv

        sys.stdout.write(to_csv(report))
    else:
        print_table(report)
    return exit_code(report)


def _cmd_keys(args: argparse.Namespace) -> int:
    from bench_agent.report.attest import default_key_path, init_key, load_key

    path = args.key or default_key_path()
    if args.keys_command == "init":
        try:
            key = init_key(path, force=args.force)
        except OSError as exc:
            from bench_agent.core.errors import ConfigError

            raise ConfigError(f"cannot create the node key {path}: {exc}") from exc
        print(f"created {path} (mode 0600)")
    else:
        if not path.exists():
            raise _usage(f"no node key at {path}; create one with `bench-agent keys init`")
        key = load_key(path)
        if args.json:
            from bench_agent.cli.json_out import emit

            emit({"path": str(path), "keyid": key.public.keyid,
                  "public_key_pem": key.public.pem()})
            return EXIT_OK
    print(key.public.pem(), end="")
    print(f"keyid: {key.public.keyid}")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from bench_agent.core.errors import SignatureError, StrictJSONError
    from bench_agent.report.attest import PublicKey, loads_strict, verify_envelope

    try:
        pubkey = PublicKey.from_pem(args.pubkey.read_bytes(), str(args.pubkey))
    except OSError as exc:
        raise _usage(f"cannot read {args.pubkey}: {exc.strerror}") from exc
    _existing_file(args.file, "report")
    answer: dict[str, object] = {"file": str(args.file), "keyid": pubkey.keyid,
                                 "verified": False, "subjects": [], "error": ""}
    try:
        # As strict as the collector: what verifies here is what it accepts.
        envelope = loads_strict(args.file.read_bytes())
    except (OSError, StrictJSONError) as exc:
        _err(f"bench-agent: {args.file}: not a signed report: {exc}")
        return _verify_answer(args, answer, f"not a signed report: {exc}")
    try:
        statement = verify_envelope(envelope, pubkey)
    except SignatureError as exc:
        _err(f"bench-agent: {args.file}: NOT VERIFIED: {exc}")
        return _verify_answer(args, answer, f"NOT VERIFIED: {exc}")
    if args.json:
        answer["verified"] = True
        answer["subjects"] = [{"name": s["name"], "sha256": s["digest"]["sha256"]}
                              for s in statement["subject"]]
        return _verify_answer(args, answer, "")
    for subject in statement["subject"]:
        print(f"verified: subject {subject['name']} sha256:{subject['digest']['sha256']} "
              f"signed by keyid {pubkey.keyid}")
    return EXIT_OK


def _verify_answer(args: argparse.Namespace, answer: dict[str, object], error: str) -> int:
    if args.json:
        from bench_agent.cli.json_out import emit

        emit({**answer, "error": error})
    return EXIT_OK if answer["verified"] else EXIT_FAIL


def _cmd_peer(args: argparse.Namespace) -> int:
    from bench_agent.peer.server import PeerConfig, parse_ports, run_peer

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
    from bench_agent.tools import parse_failures

    failures = parse_failures(args.tool, measurements)
    for failure in failures:  # the output reports a failure (dcgm, nvbandwidth)
        _err(f"bench-agent: {args.tool}: {failure}")
    return EXIT_FAIL if failures else EXIT_OK


def _cmd_collector(args: argparse.Namespace) -> int:
    try:
        from bench_agent.collector import cli as collector
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise _usage(f"the collector needs its extra: pip install 'bench-agent[collector]' "
                     f"({exc})") from exc
    if args.collector_command in collector.HANDLED:
        return collector.run(args)
    if args.collector_command == "serve":
        return collector.serve(db_url=args.db, host=args.host, port=args.port,
                               auto_enroll=args.auto_enroll,
                               admin_token_file=args.admin_token_file,
                               max_body_bytes=args.max_body_bytes,
                               max_in_flight=args.max_in_flight,
                               body_timeout_s=args.body_timeout_s, access_log=args.access_log)
    if args.collector_command == "init":
        return collector.init(db_url=args.db)
    if args.collector_command == "enroll":
        return collector.enroll(db_url=args.db, node=args.node, pubkey=args.pubkey,
                                replace=args.replace)
    return collector.revoke(db_url=args.db, keyid=args.keyid)


def _cmd_slurm(args: argparse.Namespace) -> int:
    from bench_agent.cli.slurm import cmd_slurm

    return cmd_slurm(args)


def _cmd_kube(args: argparse.Namespace) -> int:
    from bench_agent.cli.kube import cmd_kube

    return cmd_kube(args)


def _cmd_completion(args: argparse.Namespace) -> int:
    from bench_agent.cli.completion import bash_script, zsh_script

    parser = build_parser()
    sys.stdout.write(bash_script(parser) if args.shell == "bash" else zsh_script(parser))
    return EXIT_OK


def _cmd_man(args: argparse.Namespace) -> int:
    from bench_agent.cli.manpage import man_page

    text = man_page(build_parser())
    if args.out is None:
        sys.stdout.write(text)
        return EXIT_OK
    from bench_agent.core.model import write_atomic

    write_atomic(args.out, text)
    _err(f"wrote {args.out}")
    return EXIT_OK


def _usage(message: str) -> Exception:
    from bench_agent.core.errors import UsageError

    return UsageError(message)


def _err(message: str) -> None:
    """One message on stderr, names from outside shown printable (see display.py)."""
    from bench_agent.report.display import printable

    print("\n".join(printable(line) for line in message.split("\n")), file=sys.stderr)


def _existing_file(path: Path, what: str) -> Path:
    """``path`` when it is a file; a usage error (3) when it is missing or a folder."""
    if path.is_file():
        return path
    raise _usage(f"{what} {path}: " + ("not a file" if path.exists() else "no such file"))


def _profile_from_command_line(name_or_path: str) -> Profile:
    """--profile: a name or file that does not exist is a usage error (3); one that
    exists and is invalid is a configuration error (4)."""
    from bench_agent.config.loader import load_profile, resolve_profile_path
    from bench_agent.core.errors import ConfigError

    try:
        path = resolve_profile_path(name_or_path)
    except ConfigError as exc:  # resolve_profile_path raises only for "not found"
        raise _usage(f"--profile: {exc}") from exc
    return load_profile(path)


def _cmd_faults(args: argparse.Namespace) -> int:
    from bench_agent.cli.faults import cmd_faults

    return cmd_faults(args)


def _cmd_health(args: argparse.Namespace) -> int:
    from bench_agent.cli.health import cmd_health

    return cmd_health(args)


def main(argv: list[str] | None = None) -> int:
    from bench_agent.report.display import guard_std_streams

    # Before anything prints: a closed pipe or a full disk behind stdout must not
    # raise out of a print (`bench-agent list | head -1`, `run | head -1`).
    guard_std_streams()
    args = build_parser().parse_args(argv)
    from bench_agent.core.errors import BenchAgentError, ConfigError

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
        "faults": _cmd_faults,
        "health": _cmd_health,
        "slurm": _cmd_slurm,
        "kube": _cmd_kube,
        "topology": _cmd_topology,
        "completion": _cmd_completion,
        "man": _cmd_man,
    }
    try:
        return handlers[args.command](args)
    except BenchAgentError as exc:
        # The exit code is the error class's own (core/errors.py draws them all):
        # UsageError 3, ConfigError 4, ReportError and SignatureError 5, a
        # CheckError 2 (`parse`: the tool's output reports a failure or is garbage).
        if exc.exit_code is None:
            raise  # an error that its caller should have turned into another: a bug
        kind = "configuration error: " if isinstance(exc, ConfigError) else ""
        _err(f"bench-agent: {kind}{exc}")
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
