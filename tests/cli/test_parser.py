"""The command line's grammar (cli/parser.py), in-process: every subcommand parses
its documented options into the values cli/main.py reads, every --help prints its
own usage and exits 0, and every misuse exits 3 (EXIT_USAGE) with argparse's words."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench_agent import __version__
from bench_agent.cli.parser import EXIT_USAGE, build_parser

# One command line per leaf command, with the values cli/main.py reads from it.
EXAMPLES: dict[tuple[str, ...], tuple[list[str], dict[str, object]]] = {
    ("inventory",): (["--json"], {"json": True, "sysroot": Path("/")}),
    ("run",): (["cpu", "storage.randread", "--profile", "p.yaml", "--output", "/o",
                "--device", "/dev/a", "--device", "/dev/b", "--nnodes", "2",
                "--rdzv-endpoint", "h:29400", "--junit", "j.xml", "--no-sign"],
               {"targets": ["cpu", "storage.randread"], "profile": "p.yaml",
                "output": Path("/o"), "device": ["/dev/a", "/dev/b"],
                "nnodes": 2, "rdzv_endpoint": "h:29400", "junit": Path("j.xml"),
                "no_sign": True, "json": False, "destructive": False, "peer": None,
                "runtime": None, "size": None, "repetitions": None}),
    ("burnin",): (["--duration", "30m", "--no-plots"],
                  {"duration": "30m", "suite": "burnin", "no_plots": True,
                   "output": Path("results"), "junit": None, "prom": None}),
    ("upload",): (["--collector", "http://c:8080", "--json"],
                  {"collector": "http://c:8080", "output": Path("results"), "key": None,
                   "json": True}),
    ("fleet", "compare"): (["reports", "--json", "--z", "2.5"],
                           {"folder": Path("reports"), "format": "json", "z": 2.5,
                            "collector": None}),
    ("baseline", "generate"): (["reports", "--out", "b.yaml"],
                               {"folder": Path("reports"), "out": Path("b.yaml"),
                                "name": None, "z": 3.5}),
    ("list",): ([], {}),
    ("report", "show"): (["r.json", "--json"], {"file": Path("r.json"), "format": "json"}),
    ("keys", "init"): (["--key", "k", "--force"], {"key": Path("k"), "force": True}),
    ("keys", "show"): (["--json"], {"key": None, "json": True}),
    ("verify",): (["r.json", "--pubkey", "k.pem", "--json"],
                  {"file": Path("r.json"), "pubkey": Path("k.pem"), "json": True}),
    ("peer",): (["--bind", "10.0.0.1", "--ports", "iperf3=6201", "--iperf3-servers", "2"],
                {"bind": "10.0.0.1", "ports": ["iperf3=6201"], "iperf3_servers": 2}),
    ("parse",): (["fio", "out.json"], {"tool": "fio", "file": Path("out.json")}),
    ("collector", "serve"): (["--db", "sqlite:///c.db", "--port", "9000", "--no-access-log",
                              "--body-timeout", "5"],
                             {"db": "sqlite:///c.db", "port": 9000, "host": "127.0.0.1",
                              "access_log": False, "body_timeout_s": 5.0,
                              "auto_enroll": False}),
    ("collector", "init"): ([], {"db": None}),
    ("collector", "enroll"): (["--node", "n1", "--pubkey", "n1.pem", "--replace"],
                              {"node": "n1", "pubkey": Path("n1.pem"), "replace": True}),
    ("collector", "revoke"): (["abc123"], {"keyid": "abc123"}),
    ("faults",): (["--json"], {"json": True}),
    ("health",): (["--profile", "site.yaml", "--state", "s.json", "--suite-file", "h.yaml",
                   "--json", "--no-sign"],
                  {"profile": "site.yaml", "state": Path("s.json"),
                   "suite_file": Path("h.yaml"), "json": True, "no_sign": True,
                   "output": Path("results"), "sysroot": Path("/")}),
    ("slurm", "health"): (["--profile", "p.yaml", "--mode", "prolog", "--budget", "30"],
                          {"profile": "p.yaml", "mode": "prolog", "budget": 30.0,
                           "node": None, "output": None, "no_sign": False}),
    ("kube", "health"): (["--node", "gpu-7", "--interval", "300"],
                         {"node": "gpu-7", "interval": 300.0, "budget": 60.0,
                          "kubeconfig": None, "profile": None}),
    ("topology", "capture"): (["--output", "h100.yaml"], {"output": Path("h100.yaml"),
                                                          "sysroot": Path("/")}),
    ("collector", "node"): (["gpu-7", "--state", "in-repair", "--why", "RMA 1234"],
                            {"name": "gpu-7", "state": "in-repair", "why": "RMA 1234",
                             "json": False, "db": None}),
    ("completion",): (["zsh"], {"shell": "zsh"}),
    ("man",): (["--out", "ba.1"], {"out": Path("ba.1")}),
}
# The dest that names the chosen subcommand at each level (cli/main.py dispatches on them).
LEVEL_DEST = {"fleet": "fleet_command", "baseline": "baseline_command",
              "report": "report_command", "keys": "keys_command",
              "collector": "collector_command", "slurm": "slurm_command",
              "kube": "kube_command", "topology": "topology_command"}


def _leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
            ) -> list[tuple[str, ...]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [prefix]
    return [leaf for name, child in subs[0].choices.items()
            for leaf in _leaves(child, (*prefix, name))]


def test_every_leaf_command_has_an_example() -> None:
    # A new subcommand must come with its line here (and so be parsed by the tests below).
    assert sorted(_leaves(build_parser())) == sorted(EXAMPLES)


@pytest.mark.parametrize("command", sorted(EXAMPLES), ids=" ".join)
def test_each_command_parses_its_options(command: tuple[str, ...]) -> None:
    extra, expected = EXAMPLES[command]
    args = build_parser().parse_args([*command, *extra])
    assert args.command == command[0]
    if len(command) == 2:
        assert getattr(args, LEVEL_DEST[command[0]]) == command[1]
    assert {key: getattr(args, key) for key in expected} == expected


@pytest.mark.parametrize("command", [(), *sorted(EXAMPLES)], ids=lambda c: " ".join(c) or "top")
def test_each_help_prints_its_usage_and_exits_0(
        command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {' '.join(('bench-agent', *command))}")
    if not command:  # the top-level help lists every command and the exit codes
        for name in {c[0] for c in EXAMPLES}:
            assert name in out
        assert "3 usage, 4 config, 5 report I/O" in " ".join(out.split())


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"bench-agent {__version__}\n"


@pytest.mark.parametrize(("argv", "message"), [
    (["frobnicate"], "argument command: invalid choice: 'frobnicate'"),
    ([], "the following arguments are required: command"),
    (["keys"], "the following arguments are required: keys_command"),
    (["collector", "dance"], "invalid choice: 'dance'"),
    (["burnin"], "the following arguments are required: --duration"),
    (["verify", "r.json"], "the following arguments are required: --pubkey"),
    (["run", "--nnodes", "two"], "argument --nnodes: invalid int value: 'two'"),
    (["report", "show", "r.json", "--format", "xml"], "argument --format: invalid choice"),
    (["run", "--no-such-option"], "unrecognized arguments: --no-such-option"),
])
def test_misuse_exits_3_with_the_reason(argv: list[str], message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == EXIT_USAGE == 3
    err = capsys.readouterr().err
    assert err.startswith("usage: bench-agent")
    assert message in err
