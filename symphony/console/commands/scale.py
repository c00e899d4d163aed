"""``symphony scale vmss``: an Azure VM scale set's capacity follows the pool's work (docs/deploy.md).

    symphony scale vmss --pool linux --scale-set scan-linux --min 0 --max 20 --per-vm 4
    symphony scale vmss --pool windows --scale-set scan-win --max 8 --per-vm 4 --once

Scaling in never deletes a VM running tasks: its workers are drained first (they stop claiming
and finish), and the instance is deleted once they are idle. Credentials: DefaultAzureCredential
(a managed identity, a service principal's AZURE_* variables, az login); the identity needs the
'Virtual Machine Contributor' role on the scale set. Needs the azure extra.
"""
from __future__ import annotations

import argparse
import os
import signal
import threading

from symphony.engine import ConfigError

from .. import fmt
from ..servicelog import service_log
from .common import add_verb_options, engine_from_args, print_json

HELP = "autoscale an Azure VM scale set by the pool's queued and running work (drains before scale-in)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scale", help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="scale_kind", metavar="KIND")
    kinds.required = True
    v = kinds.add_parser("vmss", help="an Azure VM scale set", description=__doc__,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("--pool", required=True, help="the pool whose work sizes the scale set")
    v.add_argument("--scale-set", required=True, metavar="NAME", help="the VM scale set")
    v.add_argument("--resource-group", metavar="NAME",
                   help="its resource group (default: $SYMPHONY_AZURE_RESOURCE_GROUP)")
    v.add_argument("--subscription", metavar="ID",
                   help="its subscription (default: $SYMPHONY_AZURE_SUBSCRIPTION, $AZURE_SUBSCRIPTION_ID)")
    v.add_argument("--min", type=int, default=0, help="fewest VMs (default %(default)s)")
    v.add_argument("--max", type=int, default=20, help="most VMs (default %(default)s)")
    v.add_argument("--per-vm", type=int, default=1, metavar="N",
                   help="tasks one VM runs at once: its worker processes (default %(default)s)")
    v.add_argument("--max-step", type=int, default=5, metavar="N", help="most VMs added or removed at once "
                                                                         "(default %(default)s)")
    v.add_argument("--cooldown", default="5m", metavar="DURATION",
                   help="no change sooner than this after the previous one (default %(default)s)")
    v.add_argument("--interval", default="60s", metavar="DURATION", help="time between rounds (default %(default)s)")
    v.add_argument("--once", action="store_true", help="one round, then exit (from cron: the cooldown still holds, it is kept in Redis)")
    v.add_argument("--json", action="store_true", help="with --once: what it saw and did, as JSON")
    add_verb_options(v)
    v.set_defaults(func=run_vmss)


def _line(step) -> str:
    if step.problem:
        return f"problem: {step.problem}"
    did = []
    if step.set_capacity is not None:
        did.append(f"capacity {step.capacity} -> {step.set_capacity}")
    if step.undrained:
        did.append(f"undrained {', '.join(step.undrained)}")
    if step.draining:
        did.append(f"draining {', '.join(step.draining)}")
    if step.deleted:
        did.append(f"deleted instance(s) {', '.join(step.deleted)}")
    if step.cooling:
        did.append("cooling down")
    return f"work {step.work}, {step.capacity} VM(s), target {step.target}: " + ("; ".join(did) or "no change")


def run_vmss(args: argparse.Namespace, *, credential=None, transport=None) -> int:
    from dataclasses import asdict

    from symphony.azure.vmss import EngineFleet, ScaleLimits, ScaleSetArm, VmssScaler

    subscription = args.subscription or os.environ.get("SYMPHONY_AZURE_SUBSCRIPTION") or \
        os.environ.get("AZURE_SUBSCRIPTION_ID")
    group = args.resource_group or os.environ.get("SYMPHONY_AZURE_RESOURCE_GROUP")
    if not subscription or not group:
        raise ConfigError("name the scale set's subscription and resource group: --subscription/--resource-group "
                          "(or SYMPHONY_AZURE_SUBSCRIPTION and SYMPHONY_AZURE_RESOURCE_GROUP)")
    limits = ScaleLimits(minimum=args.min, maximum=args.max, per_vm=args.per_vm, max_step=args.max_step,
                         cooldown_s=fmt.parse_duration(args.cooldown), interval_s=fmt.parse_duration(args.interval))
    limits.check()
    say = service_log(args, "symphony-scale", "symphony.scale")
    engine = engine_from_args(args, client_name="symphony-scale")
    arm = ScaleSetArm(subscription, group, args.scale_set, credential=credential, transport=transport)
    scaler = VmssScaler(EngineFleet(engine), arm, args.pool, limits)
    try:
        if args.once:
            step = scaler.step()
            if args.json:
                print_json(asdict(step))
            else:
                say(_line(step))
            return 1 if step.problem else 0
        stop = threading.Event()
        for name in ("SIGTERM", "SIGINT"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), lambda *_: stop.set())
        say(f"scaling {args.scale_set} by pool {args.pool}'s work: {limits.minimum}..{limits.maximum} VM(s), "
            f"{limits.per_vm} task(s) each, steps of at most {limits.max_step}, cooldown {limits.cooldown_s:.0f}s")
        scaler.run(stop, on_step=lambda s: say(_line(s)) if not s.problem else None)
        say("stopped")
        return 0
    finally:
        arm.close()
        engine.close()
