"""``symphony deploy``: what puts workers on machines (docs/deploy.md).

    symphony --redis rediss://redis.internal:6380/0 deploy cloud-init --pool linux -n 4 --key-vault scan-kv
    symphony --redis rediss://redis.internal:6380/0 deploy systemd --pool linux -n 4
    symphony --redis rediss://redis.internal:6380/0 deploy windows --pool windows -n 4 --key-vault scan-kv

What it prints holds no secret: the Redis URL carries no password, and the workers read the
password and the encryption key from files on the VM (filled from Key Vault at boot with
``--key-vault``, or put there by the image). With ``--redis-url-file PATH`` the URL itself (a
password in it too) is only in that file on the VM, readable by the service user only.
"""
from __future__ import annotations

import argparse
import sys

from symphony.engine import ConfigError

from .common import add_verb_options

HELP = "print what installs workers on a machine: cloud-init user-data, a systemd unit, Windows PowerShell"
WHAT = {"cloud-init": "cloud-init user-data for a Linux VM scale set's custom data (no VM extension)",
        "systemd": "the systemd unit of the worker service",
        "windows": "the PowerShell a Windows image build runs once (a scheduled task at boot)"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="deploy_kind", metavar="KIND")
    kinds.required = True
    for kind, what in WHAT.items():
        k = kinds.add_parser(kind, help=what, description=what)
        g = k.add_argument_group("the worker service")
        g.add_argument("--pool", required=True, help="the pool the workers serve (e.g. linux, windows)")
        g.add_argument("--processes", "-n", type=int, default=1, help="worker processes per VM (default %(default)s)")
        g.add_argument("--drain-timeout", type=float, default=30.0, metavar="SECONDS",
                       help="on a stop, running tasks have this long before they are handed back (default "
                            "%(default)s; the service manager's stop timeout is longer)")
        g.add_argument("--package", default="redis-symphony", metavar="SPEC",
                       help="what pip installs: a requirement (redis-symphony==0.1.0) or a wheel's URL "
                            "(default %(default)s)")
        g.add_argument("--index-url", metavar="URL", help="the package index pip installs from (default: PyPI)")
        g.add_argument("--redis-url-file", metavar="PATH", dest="vm_url_file",
                       help="the workers read the Redis URL (it may hold the password) from this file on the VM, "
                            "readable by the service user only; with --key-vault, filled from secret "
                            "symphony-redis-url (no --redis then: the URL is in nothing printed)")
        g.add_argument("--vm-password-file", metavar="PATH",
                       help="the file on the VM holding the Redis password (default with --key-vault: "
                            "/etc/symphony/redis-password; without: none)")
        g.add_argument("--vm-key-file", metavar="PATH",
                       help="the file on the VM holding the encryption key (default with --key-vault: "
                            "/etc/symphony/encryption-key; without: none)")
        g.add_argument("--vm-ca-file", metavar="PATH", help="the CA certificate of a rediss:// server, on the VM")
        g.add_argument("--key-vault", metavar="NAME",
                       help="at boot, fill the secret files from this Key Vault with the VM's managed identity "
                            "(secrets symphony-redis-password and symphony-encryption-key)")
        g.add_argument("--no-scheduled-events", action="store_true",
                       help="do not watch Azure Scheduled Events (on by default: the workers hand their tasks "
                            "back before Azure evicts, reboots or deletes the VM)")
        g.add_argument("--worker-option", action="append", default=[], metavar="KEY=VALUE",
                       help="another worker option for its file, e.g. --worker-option prefetch=1 (repeatable)")
        if kind != "windows":
            g.add_argument("--user", default="symphony", help="the service user (default %(default)s)")
            g.add_argument("--nice", type=int, default=10, help="the unit's Nice= (default %(default)s)")
            g.add_argument("--venv", default="/opt/symphony/venv", help="the virtual environment (default %(default)s)")
            g.add_argument("--config-path", default="/etc/symphony/worker.toml",
                           help="the worker's options file on the VM (default %(default)s)")
        else:
            g.add_argument("--python", default="python",
                           help="the Python 3.11+ of the image that makes the virtual environment (default %(default)s)")
        add_verb_options(k, url_file=False)  # its --redis-url-file is a file on the VMs
        k.set_defaults(func=run)


def _value(text: str):
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _vms_redis(args: argparse.Namespace):
    """The Redis URL the VMs' workers reach (--redis, or the environment), holding no password."""
    from symphony.engine import resolve_redis

    config = resolve_redis(getattr(args, "redis", None), password_file=None)
    if not config.explicit:
        raise ConfigError("name the Redis the VMs' workers reach: symphony --redis rediss://HOST:PORT/0 deploy ... "
                          "(or, on the VMs, the file that holds it: deploy KIND --redis-url-file PATH)")
    if config.password and getattr(args, "redis", None) is None:
        raise ConfigError("the Redis URL of the environment holds a password: give the VMs' URL without one (--redis)")
    return config.url


def _worker_options(args: argparse.Namespace) -> dict:
    extra = {}
    for item in args.worker_option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--worker-option {item!r}: expected KEY=VALUE")
        extra[key.strip()] = _value(value.strip())
    return extra


def service_from_args(args: argparse.Namespace):
    from symphony.deploy import WorkerService

    if getattr(args, "redis_url_file", None):
        raise ConfigError("symphony deploy: give --redis-url-file after 'deploy KIND': it names the file on the VMs")
    url_file = args.vm_url_file
    if url_file and getattr(args, "redis", None) is not None:
        raise ConfigError("give the VMs' Redis URL (--redis) or the file on the VMs that holds it "
                          "(--redis-url-file), not both")
    url = "" if url_file else _vms_redis(args)
    vault = args.key_vault
    # with a URL file the password is in the URL: no password file unless one is named
    password_file = args.vm_password_file or ("/etc/symphony/redis-password" if vault and not url_file else None)
    key_file = args.vm_key_file or ("/etc/symphony/encryption-key" if vault else None)
    kwargs = {}
    if args.deploy_kind != "windows":
        kwargs = {"user": args.user, "nice": args.nice, "venv": args.venv.rstrip("/"), "config_path": args.config_path}
    return WorkerService(pool=args.pool, redis_url=url, url_file=url_file, processes=args.processes,
                         drain_timeout_s=args.drain_timeout, password_file=password_file, key_file=key_file,
                         ca_file=args.vm_ca_file, package=args.package, index_url=args.index_url, key_vault=vault,
                         scheduled_events="" if args.no_scheduled_events else
                         "http://169.254.169.254/metadata/scheduledevents", extra=_worker_options(args), **kwargs)


def run(args: argparse.Namespace) -> int:
    from symphony.deploy import cloud_init, systemd_unit, windows_script

    from symphony.deploy import worker_toml

    service = service_from_args(args)
    worker_toml(service)  # the options are the worker's (ConfigError naming the one that is not)
    if args.deploy_kind == "cloud-init":
        text = cloud_init(service)
    elif args.deploy_kind == "systemd":
        text = systemd_unit(service)
    else:
        text = windows_script(service, python=args.python)
    sys.stdout.write(text)
    return 0
