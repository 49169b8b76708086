"""`bench-agent kube health`: label and taint this node by its health run.

Runs in the DaemonSet of deploy/kubernetes (one pod per GPU node, NODE_NAME from
the downward API), once or every --interval seconds. Exit codes (one run): the
report's (0 pass, 1 fail, 2 could not measure), 2 when the API server refused
or did not answer, 3 no node name, 4 no credentials.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from bench_agent.cli.parser import EXIT_ERROR
from bench_agent.core.errors import CheckError, ConfigError, UsageError
from bench_agent.sched.report_source import ReportSource, default_report_source


def core_v1_api(kubeconfig: Path | None) -> Any:
    """The official client, configured from the pod's service account (in-cluster),
    else the kubeconfig file; imported only here."""
    try:
        from kubernetes import client, config
    except ImportError as exc:
        raise UsageError("the kubernetes client is not installed: pip install "
                         f"'bench-agent[kube]' ({exc})") from exc
    # kubernetes.config carries no type hints: its loaders are called through Any.
    loaders: Any = config
    try:
        if kubeconfig is not None:
            loaders.load_kube_config(config_file=str(kubeconfig))
        else:
            try:
                loaders.load_incluster_config()
            except config.ConfigException:
                loaders.load_kube_config()
    except (config.ConfigException, OSError, ValueError) as exc:
        raise ConfigError(f"no Kubernetes credentials: not in a pod with a service account "
                          f"and no usable kubeconfig ({exc})") from exc
    return client.CoreV1Api()


def _one_run(args: argparse.Namespace, api: Any, node: str, profile: str | None,
             source: ReportSource) -> int:
    from bench_agent.cli.slurm import summarized_run, summary_text
    from bench_agent.sched import kube

    summary, code = summarized_run(args, source, profile, args.budget)
    fault = summary.first
    said = summary_text(summary)
    try:
        kube.apply(api, node, summary)
    except CheckError as exc:
        print(f"bench-agent kube: node {node}: {said}; not recorded on the node: {exc}",
              file=sys.stderr)
        return EXIT_ERROR
    taint = (f"tainted {kube.TAINT_KEY}={kube.label_value(fault.code)}:{kube.TAINT_EFFECT}"
             if fault else f"no {kube.TAINT_KEY} taint")
    print(f"bench-agent kube: node {node}: {said}; labelled {kube.LABEL_HEALTH}="
          f"{summary.state}, {taint}", flush=True)
    return code


def cmd_kube(args: argparse.Namespace, api: Any = None,
             source: ReportSource = default_report_source) -> int:
    from bench_agent.cli.slurm import profile_argument

    node = args.node or os.environ.get("NODE_NAME")
    if not node:
        raise UsageError("no node name: give --node or set NODE_NAME (the DaemonSet sets it "
                         "from the downward API, spec.nodeName)")
    if args.budget <= 0 or args.interval < 0:
        raise UsageError("--budget must be positive and --interval not negative")
    profile = profile_argument(args.profile)
    if api is None:
        api = core_v1_api(args.kubeconfig)
    if not args.interval:
        return _one_run(args, api, node, profile, source)
    # A pod is stopped with SIGTERM (then SIGKILL after the grace period): end
    # between runs, not in the middle of a patch.
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, request_stop)
    try:
        while not stop.is_set():
            _one_run(args, api, node, profile, source)
            stop.wait(args.interval)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
