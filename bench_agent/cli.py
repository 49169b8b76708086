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
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from bench_agent.model import Report

EXIT_OK, EXIT_FAIL, EXIT_ERROR, EXIT_USAGE, EXIT_CONFIG, EXIT_REPORT = 0, 1, 2, 3, 4, 5


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bench-agent",
        description="Measure an AI cluster node (GPU, NCCL, storage, network, CPU) against "
        "the requirements guide and write a report.",
        epilog="Exit codes: 0 pass, 1 fail, 2 error/incomplete, 3 usage, 4 config, 5 report I/O.",
    )
    from bench_agent import __version__

    parser.add_argument("--version", action="version", version=f"bench-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    inv = sub.add_parser("inventory", help="print the node's inventory")
    inv.add_argument("--json", action="store_true", help="JSON instead of a summary")
    inv.add_argument("--sysroot", type=Path, default=Path("/"), help=argparse.SUPPRESS)

    run = sub.add_parser("run", help="run checks and write a report",
                         description="Run domains (cpu, storage, network, gpu, nccl), suites "
                         "(quick, acceptance, ...) or single checks; default: quick.")
    run.add_argument("targets", nargs="*", metavar="DOMAIN|SUITE|CHECK")
    run.add_argument("--profile", help="profile name or YAML path (default: the suite's, "
                     "else guide-minimum)")
    run.add_argument("--suite-file", type=Path, help="run this suite YAML file")
    run.add_argument("--output", type=Path, default=Path("results"),
                     help="report folder (default: results/)")
    run.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    run.add_argument("--sysroot", type=Path, default=Path("/"), help=argparse.SUPPRESS)
    run.add_argument("--key", type=Path, help="node signing key (default: see `keys show`; "
                     "created on first run)")
    run.add_argument("--no-sign", action="store_true", help="write the report unsigned")
    run.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML")
    run.add_argument("--upload", metavar="URL",
                     help="upload the spool (this report and any waiting) to the collector")
    run.add_argument("--prom", type=Path, metavar="FILE",
                     help="also write a Prometheus textfile (node_exporter textfile collector)")
    storage = run.add_argument_group("storage targets")
    storage.add_argument("--target", type=Path, help="directory to test in (a test file is "
                         "created inside and removed); default: the output folder's filesystem")
    storage.add_argument("--device", action="append", default=[], metavar="DEV",
                         help="raw block device to test (repeatable); reads are read-only")
    storage.add_argument("--all-nvme", action="store_true",
                         help="test every NVMe namespace in the inventory")
    storage.add_argument("--destructive", action="store_true",
                         help="allow write tests on raw devices (refused on mounted devices or "
                         "devices holding partitions or a filesystem)")

    upload = sub.add_parser("upload", help="send waiting reports to the collector",
                            description="Send every signed report in the spool that the "
                            "collector has not acknowledged, oldest first. Exit 0 all "
                            "delivered, 1 some refused, 2 some still waiting.")
    upload.add_argument("--collector", metavar="URL",
                        help="collector base URL (default: $BENCH_AGENT_COLLECTOR)")
    upload.add_argument("--output", type=Path, default=Path("results"),
                        help="the spool: the report folder of `run` (default: results/)")

    sub.add_parser("list", help="list checks, suites and profiles")

    report = sub.add_parser("report", help="read reports")
    report_sub = report.add_subparsers(dest="report_command", required=True,
                                       parser_class=_Parser)
    show = report_sub.add_parser("show", help="print a report's verdict table")
    show.add_argument("file", type=Path)
    show.add_argument("--format", choices=("table", "json", "csv"), default="table")
    show.add_argument("--json", action="store_const", const="json", dest="format",
                      help="same as --format json")

    keys = sub.add_parser("keys", help="the node's Ed25519 signing key")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, parser_class=_Parser)
    keys_init = keys_sub.add_parser("init", help="create the node key (mode 0600)")
    keys_init.add_argument("--key", type=Path, help="key path (default: "
                           "$BENCH_AGENT_KEY, /etc/bench-agent/node.key as root, else "
                           "~/.config/bench-agent/node.key)")
    keys_init.add_argument("--force", action="store_true", help="replace an existing key")
    keys_show = keys_sub.add_parser("show", help="print the public key (PEM) and its keyid")
    keys_show.add_argument("--key", type=Path)

    verify = sub.add_parser("verify", help="verify a signed report (exit 0 valid, 1 not)")
    verify.add_argument("file", type=Path)
    verify.add_argument("--pubkey", type=Path, required=True, help="the node's public key PEM")

    parse = sub.add_parser("parse", help="print the measurements read from a tool's output")
    parse.add_argument("tool")
    parse.add_argument("file", type=Path)
    return parser


def _cmd_inventory(args: argparse.Namespace) -> int:
    from bench_agent.inventory import collect_inventory

    inventory = collect_inventory(args.sysroot)
    if args.json:
        print(json.dumps(inventory, indent=2))
        return EXIT_OK
    cpu = inventory.get("cpu", {})
    mem = inventory.get("memory", {})
    from bench_agent.units import Unit, format_value

    total = mem.get("total_bytes")
    print(f"host     {inventory.get('host', {}).get('hostname', '?')}")
    print(f"os       {inventory.get('os', {}).get('pretty_name', '?')}, kernel "
          f"{inventory.get('os', {}).get('kernel', '?')}")
    print(f"cpu      {cpu.get('model', '?')}: {cpu.get('sockets')} socket(s), "
          f"{cpu.get('physical_cores')} cores, {cpu.get('logical_cpus')} logical; "
          f"AI flags: {' '.join(cpu.get('flags_ai') or []) or 'none'}")
    print(f"memory   {format_value(total, Unit.BYTES) if total else '?'}, "
          f"{len(mem.get('numa_nodes') or [])} NUMA node(s)")
    for disk in inventory.get("disks", []):
        size = format_value(disk["size_bytes"], Unit.BYTES) if disk.get("size_bytes") else "?"
        kind = "NVMe" if disk.get("nvme") else ("HDD" if disk.get("rotational") else "SSD")
        print(f"disk     {disk.get('name')}: {disk.get('model') or '?'} {size} {kind}")
    for nic in inventory.get("nics", []):
        speed = nic.get("speed_bits_per_second")
        shown = format_value(speed, Unit.BITS_PER_SECOND) if speed else "unknown speed"
        print(f"nic      {nic.get('name')}: {shown}, driver {nic.get('driver') or '-'}")
    for port in inventory.get("infiniband", []):
        print(f"ib       {port.get('device')}/{port.get('port')}: {port.get('state')}, "
              f"{port.get('rate')}, {port.get('link_layer')}")
    gpus = inventory.get("gpus", [])
    print(f"gpus     {len(gpus)}" + (f" ({inventory['gpu_probe_note']})"
                                     if not gpus and inventory.get("gpu_probe_note") else ""))
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
        uploaded = _upload(args.output, args.upload)
        code = max(code, EXIT_ERROR if uploaded != EXIT_OK else EXIT_OK)
    return code


def _upload(spool: Path, url: str) -> int:
    from bench_agent.upload import upload_spool

    result = upload_spool(spool, url, log=lambda m: print(f"upload: {m}", file=sys.stderr))
    for path, why in result.skipped:
        print(f"upload: skipped {path}: {why}", file=sys.stderr)
    print(f"upload: {len(result.delivered)} delivered, {len(result.rejected)} rejected, "
          f"{len(result.pending)} waiting" + (f" ({result.stopped_because})"
                                              if result.stopped_because else ""),
          file=sys.stderr)
    return result.exit_code


def _cmd_upload(args: argparse.Namespace) -> int:
    import os

    url = args.collector or os.environ.get("BENCH_AGENT_COLLECTOR")
    if not url:
        raise _usage("no collector: give --collector URL or set BENCH_AGENT_COLLECTOR")
    return _upload(args.output, url)


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
        print(f"  {name:<16} [{check.domain}] {check.description}")
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
        key = init_key(path, force=args.force)
        print(f"created {path} (mode 0600)")
    else:
        key = load_key(path)
    print(key.public.pem(), end="")
    print(f"keyid: {key.public.keyid}")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from bench_agent.attest import PublicKey, verify_envelope
    from bench_agent.errors import SignatureError

    try:
        pubkey = PublicKey.from_pem(args.pubkey.read_bytes(), str(args.pubkey))
    except OSError as exc:
        print(f"bench-agent: cannot read {args.pubkey}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    try:
        envelope = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
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


def _cmd_parse(args: argparse.Namespace) -> int:
    from bench_agent.tools import parse_tool_output

    measurements = parse_tool_output(args.tool, args.file)
    print(json.dumps([m.to_dict() for m in measurements], indent=2))
    return EXIT_OK


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
        "upload": _cmd_upload,
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
