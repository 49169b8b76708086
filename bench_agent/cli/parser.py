"""The command line's grammar: every subcommand, option and exit code of bench-agent.

Kept apart from cli.py (which runs the commands) so each stays small; imports
only the standard library and core/errors.py (which says each error's exit code;
it imports only the standard library too), as `bench-agent --help` must start fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

# The README's exit codes: 0 and 1 come from verdicts, 2 to 5 from the error tree.
from bench_agent.core.errors import EXIT_CONFIG as EXIT_CONFIG
from bench_agent.core.errors import EXIT_ERROR as EXIT_ERROR
from bench_agent.core.errors import EXIT_REPORT as EXIT_REPORT
from bench_agent.core.errors import EXIT_USAGE as EXIT_USAGE

EXIT_OK, EXIT_FAIL = 0, 1
FALLBACK_HELP = ("where the report (and --junit, --prom) go when their place cannot take "
                 "them (full disk); tried before /var/tmp/bench-agent and "
                 "$XDG_RUNTIME_DIR/bench-agent; exit code 5")


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

    parser.add_argument("-V", "--version", action="version",
                        version=f"bench-agent {__version__}")
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
    run.add_argument("--fallback-dir", type=Path, metavar="DIR", help=FALLBACK_HELP)
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
    network = run.add_argument_group("network")
    network.add_argument("--peer", metavar="ADDRESS",
                         help="node running `bench-agent peer` to measure against")
    nccl = run.add_argument_group("nccl across nodes (torchrun c10d rendezvous)")
    nccl.add_argument("--nnodes", type=int, default=1, help="nodes taking part (default 1)")
    nccl.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                      help="rendezvous endpoint, one of the nodes; same on every node")
    nccl.add_argument("--rdzv-id", help="rendezvous id, same on every node of one run")
    topology = run.add_argument_group("topology")
    topology.add_argument("--expect", type=Path, metavar="FILE",
                          help="expected topology (from `bench-agent topology capture`); "
                          "default: the profile's topology key")
    oneoff = run.add_argument_group(
        "one-off changes to the selected checks (each must take the parameter; shown in "
        "the report's parameters)")
    oneoff.add_argument("--runtime", metavar="DURATION",
                        help="seconds each check measures: 30s, 2m (storage, network)")
    oneoff.add_argument("--size", metavar="SIZE",
                        help="test size: 4GiB for storage files, 4096 for a CPU matrix")
    oneoff.add_argument("--repetitions", type=int, metavar="N",
                        help="how many times each check repeats its measurement")

    burnin = sub.add_parser("burnin", help="sustained load with health sampling",
                            description="Keep the node under the loads of a burn-in suite, "
                            "sample health every interval into a JSON-lines series, and "
                            "write a signed report at the end (or when interrupted).")
    burnin.add_argument("--duration", required=True, help="how long: 20s, 30m, 4h")
    burnin.add_argument("--suite", default="burnin", help="burn-in suite name (default burnin)")
    burnin.add_argument("--suite-file", type=Path, help="a burn-in suite YAML file")
    burnin.add_argument("--output", type=Path, default=Path("results"))
    burnin.add_argument("--fallback-dir", type=Path, metavar="DIR", help=FALLBACK_HELP)
    burnin.add_argument("--target", type=Path, help="directory for the storage load's file")
    burnin.add_argument("--peer", metavar="ADDRESS",
                        help="node running `bench-agent peer`, for the network load")
    burnin.add_argument("--key", type=Path)
    burnin.add_argument("--no-sign", action="store_true")
    burnin.add_argument("--no-plots", action="store_true", help="skip the SVG plots")
    burnin.add_argument("--upload", metavar="URL")
    burnin.add_argument("--json", action="store_true")
    burnin.set_defaults(junit=None, prom=None)

    upload = sub.add_parser("upload", help="send waiting reports to the collector",
                            description="Send every signed report in the spool that the "
                            "collector has not acknowledged, oldest first. Exit 0 all "
                            "delivered, 1 some refused, 2 some still waiting.")
    upload.add_argument("--collector", metavar="URL",
                        help="collector base URL (default: $BENCH_AGENT_COLLECTOR)")
    upload.add_argument("--output", type=Path, default=Path("results"),
                        help="the spool: the report folder of `run` (default: results/)")
    upload.add_argument("--key", type=Path, help="node key whose public half is offered to "
                        "a collector in --auto-enroll mode (default: the node key)")
    upload.add_argument("--json", action="store_true",
                        help="what happened to each report, as JSON on stdout")

    fleet = sub.add_parser("fleet", help="compare nodes (needs the fleet extra: pandas)")
    fleet_sub = fleet.add_subparsers(dest="fleet_command", required=True, parser_class=_Parser)
    compare = fleet_sub.add_parser("compare", help="nodes by key metrics, with outliers",
                                   description="Newest report per node; outliers are nodes "
                                   "whose modified z-score lies beyond --z in the bad "
                                   "direction; configuration drift lists the nodes whose "
                                   "configuration facts differ from the fleet's most "
                                   "common value. Exit 0 neither, 1 outliers or drift.")
    compare.add_argument("folder", type=Path, nargs="?", help="folder of report files")
    compare.add_argument("--collector", metavar="URL", help="read reports from a collector")
    compare.add_argument("--format", choices=("table", "csv", "html", "json"), default="table")
    compare.add_argument("--json", action="store_const", const="json", dest="format",
                         help="same as --format json")
    compare.add_argument("--out", type=Path, help="write to this file instead of stdout")
    compare.add_argument("--z", type=float, default=3.5, help="outlier line (default 3.5)")
    baseline = sub.add_parser("baseline", help="derive baselines from a healthy fleet")
    baseline_sub = baseline.add_subparsers(dest="baseline_command", required=True,
                                           parser_class=_Parser)
    generate = baseline_sub.add_parser("generate", help="write a fleet baseline YAML")
    generate.add_argument("folder", type=Path)
    generate.add_argument("--out", type=Path, required=True)
    generate.add_argument("--name", help="baseline name (default: the file name)")
    generate.add_argument("--z", type=float, default=3.5)

    listing = sub.add_parser("list", help="list checks, suites and profiles")
    listing.add_argument("--metrics", action="store_true",
                         help="every metric the checks declare: unit, better, meaning")
    listing.add_argument("--facts", action="store_true",
                         help="the configuration facts a profile's configuration section "
                         "may name")
    listing_format = listing.add_mutually_exclusive_group()
    listing_format.add_argument("--json", action="store_true", help="as JSON")
    listing_format.add_argument("--markdown", action="store_true",
                                help="the README's check table (generated)")

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
    keys_show.add_argument("--json", action="store_true", help="path, keyid and PEM as JSON")

    verify = sub.add_parser("verify", help="verify a signed report (exit 0 valid, 1 not)")
    verify.add_argument("file", type=Path)
    verify.add_argument("--pubkey", type=Path, required=True, help="the node's public key PEM")
    verify.add_argument("--json", action="store_true", help="the outcome as JSON on stdout")

    peer = sub.add_parser("peer", help="serve the network checks of another node",
                          description="Start and supervise iperf3, sockperf and qperf servers "
                          "and a control port (perftest servers on demand) until SIGTERM or "
                          "Ctrl-C. With no options: every address, default ports.")
    peer.add_argument("--bind", default="", metavar="ADDRESS",
                      help="listen on this address only (default: every address)")
    peer.add_argument("--ports", action="append", default=[], metavar="NAME=PORT,...",
                      help="override ports: control=5200, iperf3=5201 (first of N), "
                      "sockperf=11111, qperf=19765, perftest=18515")
    peer.add_argument("--iperf3-servers", type=int, default=4, metavar="N",
                      help="iperf3 server processes, one port each (default 4)")
    parse = sub.add_parser("parse", help="print the measurements read from a tool's output")
    parse.add_argument("tool")
    parse.add_argument("file", type=Path)
    _add_collector_parser(sub)
    _add_scheduler_parsers(sub)
    _add_docs_parsers(sub)
    return parser


def _add_docs_parsers(sub: argparse._SubParsersAction[_Parser]) -> None:
    """`completion bash|zsh` and `man`: generated from this parser (cli/completion.py)."""
    completion = sub.add_parser(
        "completion", help="print a shell completion script",
        description="Print the completion script for bash or zsh, generated from the "
        "command line's grammar. bash: source <(bench-agent completion bash); zsh, "
        "in ~/.zshrc after compinit: source <(bench-agent completion zsh). The wheel "
        "also ships both files (bench_agent/data/completion), the zsh one in autoload "
        "form for a folder of $fpath.")
    completion.add_argument("shell", choices=("bash", "zsh"))
    man = sub.add_parser("man", help="print the man page (roff)",
                         description="Print bench-agent(1) in roff; read it with "
                         "`bench-agent man | man -l -`.")
    man.add_argument("--out", type=Path, help="write it to this file instead")


def _add_collector_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    """`collector serve|init|enroll|revoke`: the central service (needs the collector extra)."""
    # collector/settings.py resolve_db_url, without importing it (--help stays fast).
    db_help = ("database URL or SQLite file (default: $BENCH_AGENT_COLLECTOR_DB, else "
               "/var/lib/bench-agent/collector.db as root, else "
               "$XDG_DATA_HOME/bench-agent/collector.db; PostgreSQL: "
               "postgresql://user@host/db)")
    topo = sub.add_parser("topology", help="the node's PCI topology (GPUs, HCAs, NICs, NVMe)")
    topo_sub = topo.add_subparsers(dest="topology_command", required=True)
    topo_capture = topo_sub.add_parser(
        "capture", help="write this node's topology as its node type's expected YAML")
    topo_capture.add_argument("--output", type=Path, metavar="FILE",
                              help="write here (default: stdout)")
    topo_capture.add_argument("--sysroot", type=Path, default=Path("/"), help=argparse.SUPPRESS)

    collector = sub.add_parser("collector", help="run the central collector, enroll node keys")
    csub = collector.add_subparsers(dest="collector_command", required=True,
                                    parser_class=_Parser)
    serve = csub.add_parser("serve", help="serve the report API and the dashboard")
    serve.add_argument("--db", help=db_help)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: %(default)s; 0.0.0.0 for every "
                       "IPv4 address)")
    serve.add_argument("--port", type=int, default=8080,
                       help="TCP port (default: %(default)s)")
    serve.add_argument("--auto-enroll", action="store_true", help="trust a node's first key "
                       "on first use (labs only)")
    serve.add_argument("--admin-token-file", type=Path, help="file holding the token of "
                       "POST /v1/keys and revocation (else $BENCH_AGENT_COLLECTOR_TOKEN)")
    serve.add_argument("--max-body-bytes", type=int, help="largest report accepted "
                       "(default 4 MiB)")
    serve.add_argument("--max-in-flight", type=int, metavar="N", help="reports verified or "
                       "stored at once; more get 429 (default 256)")
    serve.add_argument("--body-timeout", type=float, dest="body_timeout_s", metavar="SECONDS",
                       help="a body must arrive whole within this, else 408 (default 30)")
    serve.add_argument("--no-access-log", dest="access_log", action="store_false")
    serve.add_argument("--tokens-file", type=Path, help="read/operate/admin tokens, one "
                       "'ROLE NAME TOKEN' a line (else $BENCH_AGENT_COLLECTOR_TOKENS)")
    serve.add_argument("--reads-need-token", action="store_true", help="the API, dashboard "
                       "and /metrics need a read token (default: reads are open)")
    serve.add_argument("--validity-days", type=float, metavar="DAYS", help="how long a "
                       "result counts toward a node's status before it is stale (default 30)")
    serve.add_argument("--acceptance-suite", action="append", metavar="SUITE", help="a suite "
                       "whose PASS accepts a node in burn-in (default: acceptance)")
    serve.add_argument("--burnin-suite", action="append", metavar="SUITE", help="a suite "
                       "whose FAIL does not quarantine a node in service (default: burnin)")
    init = csub.add_parser("init", help="create the collector's database or bring its schema "
                           "up to date")
    init.add_argument("--db", help=db_help)
    enroll = csub.add_parser("enroll", help="enroll a node's public key")
    enroll.add_argument("--db", help=db_help)
    enroll.add_argument("--node", required=True, help="the node's name (its report host)")
    enroll.add_argument("--pubkey", type=Path, required=True,
                        help="PEM public key (`bench-agent keys show` on the node)")
    enroll.add_argument("--replace", action="store_true", help="revoke the node's active key "
                        "(a node has one) and enroll this one in its place")
    revoke = csub.add_parser("revoke", help="revoke a node key")
    revoke.add_argument("--db", help=db_help)
    revoke.add_argument("keyid")
    node = csub.add_parser("node", help="show a node's lifecycle state and history, or "
                           "set its state (--state S --why TEXT)")
    node.add_argument("--db", help=db_help)
    node.add_argument("name")
    # collector/lifecycle.py STATES, without importing it (--help stays fast).
    node.add_argument("--state", choices=("new", "burn-in", "accepted", "in-service",
                                          "quarantined", "in-repair", "retired"))
    node.add_argument("--why", help="the reason, recorded with the state change (required "
                      "with --state)")
    node.add_argument("--json", action="store_true", help="print the node as JSON")

    faults = sub.add_parser("faults", help="list the fault catalog (codes, remediations)")
    faults.add_argument("--json", action="store_true", help="JSON instead of a table")
    from bench_agent.cli.health import add_parser as add_health_parser

    add_health_parser(sub, _Parser, FALLBACK_HELP)

def _add_scheduler_parsers(sub: argparse._SubParsersAction[_Parser]) -> None:
    """`slurm health` and `kube health`: take a failing node out of the scheduler
    and put it back when it passes (docs/slurm.md, docs/kubernetes.md)."""
    profile_help = "profile name or YAML path (default: the health checks' own)"
    budget_help = "seconds for everything, the scheduler's calls included (default 60)"
    slurm = sub.add_parser("slurm", help="Slurm: drain a failing node, resume it when fixed")
    slurm_sub = slurm.add_subparsers(dest="slurm_command", required=True, parser_class=_Parser)
    health = slurm_sub.add_parser(
        "health", help="health checks, then drain or resume this node (HealthCheckProgram, "
        "Prolog, Epilog)",
        description="Run the health checks; on FAIL drain this node with reason "
        "'bench-agent: <fault code> <component>', on PASS resume it only when bench-agent "
        "drained it (an admin's drain stays). Through scontrol, each call bounded.")
    health.add_argument("--profile", help=profile_help)
    health.add_argument("--mode", choices=("health", "prolog", "epilog"), default="health",
                        help="how Slurm runs it: HealthCheckProgram (default), Prolog, Epilog "
                        "(their exit codes differ: docs/slurm.md)")
    health.add_argument("--budget", type=float, default=60.0, metavar="S", help=budget_help)
    health.add_argument("--node", help="Slurm node name (default: $SLURMD_NODENAME, else the "
                        "short host name)")
    health.add_argument("--output", type=Path, help="also keep the report in this folder")
    health.add_argument("--key", type=Path, help="node signing key (see `keys show`)")
    health.add_argument("--no-sign", action="store_true", help="keep the report unsigned")

    kube = sub.add_parser("kube", help="Kubernetes: label and taint this node by its health")
    kube_sub = kube.add_subparsers(dest="kube_command", required=True, parser_class=_Parser)
    khealth = kube_sub.add_parser(
        "health", help="health checks, then label this node and taint it on FAIL",
        description="Run the health checks; label the node bench-agent.dev/health=pass|warn|"
        "fail and bench-agent.dev/fault=<code>, annotate the report id and time, and taint it "
        "bench-agent.dev/unhealthy=<code>:NoSchedule on FAIL (removed on PASS). Other labels "
        "and taints are never touched.")
    khealth.add_argument("--profile", help=profile_help)
    khealth.add_argument("--node", help="node name (default: $NODE_NAME, from the downward "
                         "API in the DaemonSet)")
    khealth.add_argument("--budget", type=float, default=60.0, metavar="S", help=budget_help)
    khealth.add_argument("--interval", type=float, default=0.0, metavar="S",
                         help="run again every S seconds until stopped (a DaemonSet's pod); "
                         "default: once")
    khealth.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default: the "
                         "pod's service account, else ~/.kube/config)")
    khealth.add_argument("--output", type=Path, help="also keep the report in this folder")
    khealth.add_argument("--key", type=Path, help="node signing key (see `keys show`)")
    khealth.add_argument("--no-sign", action="store_true", help="keep the report unsigned")
