"""The command-line options every entry point shares, declared once.

``symphony`` (and each of its verbs), ``symphony-tui`` and ``symphony-worker`` take the same
Redis, encryption and logging options, and ``--version``. :func:`add_shared_options` declares
them on a parser; :func:`shared_options` turns the parsed arguments into a :class:`SharedOptions`
(a :class:`RedisConfig`, the encryption key, the log level and format), falling back on the
environment exactly as :func:`resolve_redis` and :func:`load_key` do.

A verb's own parser takes them too (``nested=True``): ``symphony --redis URL status`` and
``symphony status --redis URL`` mean the same, and an option absent after the verb keeps what was
given before it.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Mapping

from .config import RedisConfig, resolve_redis
from .crypto import Sealer, load_key, sealer_from
from .errors import ConfigError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class SharedOptions:
    """What the shared options say: where Redis is, the encryption key, how to log."""

    redis: RedisConfig
    key: bytes | None = field(default=None, repr=False)
    key_file: str | None = None  # where the key came from, when it was a file (to hand on to workers)
    log_level: str = "WARNING"
    log_format: str = "text"

    def sealer(self) -> Sealer | None:
        """The AES-GCM sealer of the key, or None when no key is configured."""
        return sealer_from(self.key)


def _version() -> str:
    from symphony import __version__

    return __version__


def _level(text: str) -> str:
    value = text.strip().upper()
    if value not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"invalid log level {text!r} (choose from {', '.join(LOG_LEVELS)})")
    return value


def add_shared_options(parser: argparse.ArgumentParser, *, log_level: str = "WARNING", nested: bool = False,
                       key_help: str = "", url_file: bool = True) -> None:
    """Declare ``--redis`` (or ``--redis-url-file``), ``--redis-password-file``, ``--redis-ca-file``,
    ``--encryption-key-file``, ``--log-level`` and ``--log-format`` on ``parser``, and ``--version``
    unless ``nested``.

    ``log_level`` is the default level of this program (a worker logs INFO, the CLI WARNING).
    ``nested`` is for a verb's parser below one that already declared them: absent there, an
    option keeps the value given before the verb (argparse would otherwise reset it).
    ``url_file=False`` leaves ``--redis-url-file`` to a verb that gives it its own meaning.
    """
    unset = argparse.SUPPRESS if nested else None
    redis = parser.add_argument_group("Redis")
    where = redis.add_mutually_exclusive_group()
    where.add_argument("--redis", metavar="URL", default=unset,
                       help="Redis URL (default: $SYMPHONY_REDIS_URL, $SYMPHONY_REDIS_URL_FILE, $REDIS_URL, or "
                            "redis://127.0.0.1:6379/0); a password in it is never shown")
    if url_file:
        where.add_argument("--redis-url-file", metavar="FILE", default=unset,
                           help="read the Redis URL from FILE (one line; it may hold the password: keep the file "
                                "readable by its user only)")
    redis.add_argument("--redis-password-file", metavar="FILE", default=unset,
                       help="read the Redis password from FILE (default: $SYMPHONY_REDIS_PASSWORD_FILE, "
                            "$REDIS_PASSWORD_FILE, else the URL's or $REDIS_PASSWORD)")
    redis.add_argument("--redis-ca-file", metavar="FILE", default=unset,
                       help="CA certificate of a rediss:// (TLS) server (default: $SYMPHONY_REDIS_CA_FILE, "
                            "$REDIS_CA_FILE)")
    crypto = parser.add_argument_group("encryption")
    crypto.add_argument("--encryption-key-file", metavar="FILE", default=unset,
                        help=key_help or "AES key (hex or base64) of encrypted task data and job values "
                                         "(default: $SYMPHONY_KEY_FILE, $SYMPHONY_KEY; docs/security.md)")
    logs = parser.add_argument_group("logging")
    logs.add_argument("--log-level", type=_level, metavar="LEVEL", default=argparse.SUPPRESS if nested else log_level,
                      help=f"{', '.join(LOG_LEVELS)} (default {log_level})")
    logs.add_argument("--log-format", choices=LOG_FORMATS, default=argparse.SUPPRESS if nested else "text",
                      help="text lines, or one JSON object a line (default text)")
    if not nested:
        parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                            help="print the version and exit")


def shared_options(args: argparse.Namespace, *, client_name: str = "symphony",
                   env: Mapping[str, str] | None = None) -> SharedOptions:
    """The :class:`SharedOptions` of parsed ``args`` (flags first, then the environment).

    Raises :class:`ConfigError` for a bad URL, an unreadable password or key file, or a missing
    CA file; nothing connects to Redis here.
    """
    config = resolve_redis(getattr(args, "redis", None), password_file=getattr(args, "redis_password_file", None),
                           ca_file=getattr(args, "redis_ca_file", None), env=env,
                           url_file=getattr(args, "redis_url_file", None))
    key_file = getattr(args, "encryption_key_file", None)
    return SharedOptions(redis=config.with_client_name(client_name), key=load_key(key_file, env), key_file=key_file,
                         log_level=getattr(args, "log_level", "WARNING"),
                         log_format=getattr(args, "log_format", "text"))


def parse_duration(text: str | float | int | None, default: float | None = None) -> float | None:
    """Seconds from ``90``, ``90s``, ``15m``, ``6h`` or ``2d`` (``default`` when empty or None)."""
    if text is None or text == "":
        return default
    if isinstance(text, (int, float)):
        return float(text)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    s = str(text).strip().lower()
    try:
        return float(s[:-1]) * units[s[-1]] if s and s[-1] in units else float(s)
    except (ValueError, KeyError):
        raise ConfigError(f"{text!r} is not a duration (e.g. 90, 90s, 15m, 6h)") from None


# --- a program's options from a TOML file and the environment ----------------------------------
#
# A service (``symphony-worker`` under systemd, a Windows scheduled task, a VM's custom data) takes
# every option of its command line from a TOML file (``--config FILE``) and from environment
# variables as well. One rule for every option: the command line beats the environment, which
# beats the file, which beats the default. A file key is the long option without its dashes
# (``drain-timeout = 60``); a variable is the prefix and the option in capitals (``SYMPHONY_WORKER_
# DRAIN_TIMEOUT=60``). The shared options keep their own variables (``SYMPHONY_REDIS_URL``,
# ``SYMPHONY_KEY_FILE``, ...: :func:`resolve_redis`, :func:`load_key`), which beat the file too.

# the variables of the shared options (a flag beats them; they beat a config file)
SHARED_ENVIRONMENT: dict[str, tuple[str, ...]] = {
    "redis": ("SYMPHONY_REDIS_URL", "REDIS_URL"),
    "redis_url_file": ("SYMPHONY_REDIS_URL_FILE",),
    "redis_password_file": ("SYMPHONY_REDIS_PASSWORD_FILE", "REDIS_PASSWORD_FILE"),
    "redis_ca_file": ("SYMPHONY_REDIS_CA_FILE", "REDIS_CA_FILE"),
    "encryption_key_file": ("SYMPHONY_KEY_FILE", "SYMPHONY_KEY"),
}
_NOT_CONFIGURABLE = {"help", "version", "config"}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class OptionSource:
    """Where an option's value came from: ``file worker.toml line 3``, ``$SYMPHONY_WORKER_POOL``."""

    option: str
    where: str


def _configurable(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The options a file or the environment may set, by key (the long option without dashes)."""
    out: dict[str, argparse.Action] = {}
    for action in parser._actions:  # noqa: SLF001 - argparse has no public list of its actions
        if action.dest in _NOT_CONFIGURABLE or not action.option_strings:
            continue
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs:
            out[longs[0][2:]] = action
    return out


def env_name(prefix: str, key: str) -> str:
    """The variable of option ``key``: ``SYMPHONY_WORKER_`` + ``DRAIN_TIMEOUT``."""
    return prefix + key.upper().replace("-", "_")


def _flag(action: argparse.Action, value, from_text: bool, bad) -> bool:
    """A store_true/store_false option's value: TOML true/false, or a variable's 1/0, yes/no, ..."""
    if from_text:
        text = str(value).strip().lower()
        if text not in _TRUE | _FALSE:
            raise bad("true or false")
        flag = text in _TRUE
    elif isinstance(value, bool):
        flag = value
    else:
        raise bad("true or false")
    return flag if isinstance(action, argparse._StoreTrueAction) else not flag  # noqa: SLF001


def _check_toml_type(action: argparse.Action, value, bad) -> None:
    if isinstance(value, (dict, list)):
        raise bad("a single value (not a table or a list)")
    if action.type is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise bad("an integer")
    if action.type is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise bad("a number")
    if action.type in (None, str) and not isinstance(value, str):
        raise bad("a string")


def _convert(action: argparse.Action, key: str, value, where: str, *, from_text: bool):
    """An option's value from a file (typed TOML) or a variable (text), checked as argparse would."""
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}: {key}: expected {expected}, got {value!r}")

    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):  # noqa: SLF001
        return _flag(action, value, from_text, bad)
    if not from_text:
        _check_toml_type(action, value, bad)
    converted = value
    if action.type is not None:
        try:
            converted = action.type(value if not from_text else str(value).strip())
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: {key}: {exc}") from None
    if action.choices is not None and converted not in action.choices:
        raise ConfigError(f"{where}: {key}: {value!r} is not one of {', '.join(map(str, action.choices))}")
    return converted


def _line_of(text: str, key: str) -> int | None:
    import re

    pattern = re.compile(rf"^[ \t]*(\[+[ \t]*)?[\"']?{re.escape(key)}[\"']?[ \t]*(=|\])", re.MULTILINE)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def read_config_file(path: str, parser: argparse.ArgumentParser) -> dict[str, tuple[object, OptionSource]]:
    """The options of a TOML file, by argparse ``dest``: checked, typed, each with its line.

    Raises :class:`ConfigError` naming the file, the line and the option for a syntax error, an
    unknown option, a value of the wrong type, or a Redis URL that holds a password (a file
    readable by more than the service user must hold no secret: use ``redis-password-file``).
    """
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise ConfigError(f"{path}: reading a TOML configuration file needs Python 3.11 or later") from None
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration file {path}: {exc.strerror or exc}") from None
    text = raw.decode("utf-8", "replace")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    known = _configurable(parser)
    out: dict[str, tuple[object, OptionSource]] = {}
    for key, value in document.items():
        line = _line_of(text, key)
        where = f"{path} line {line}" if line else path
        action = known.get(key) or known.get(key.replace("_", "-"))
        if action is None:
            raise ConfigError(f"{where}: unknown option {key!r} (the options: {', '.join(sorted(known))})")
        name = key.replace("_", "-")
        converted = _convert(action, name, value, where, from_text=False)
        if action.dest == "redis" and isinstance(converted, str):
            from urllib.parse import urlsplit

            try:
                has_password = bool(urlsplit(converted).password)
            except ValueError:
                has_password = False
            if has_password:
                raise ConfigError(f"{where}: redis: the URL holds a password; a configuration file holds no "
                                  f"secret: put the password in a file only the service user can read and name "
                                  f"it with redis-password-file")
        out[action.dest] = (converted, OptionSource(name, f"{path} line {line}" if line else path))
    return out


def read_environment(prefix: str, parser: argparse.ArgumentParser,
                     env: Mapping[str, str]) -> dict[str, tuple[object, OptionSource]]:
    """The options set by ``<prefix><OPTION>`` variables (the shared options excepted: they keep
    their own variables), by argparse ``dest``."""
    out: dict[str, tuple[object, OptionSource]] = {}
    for key, action in _configurable(parser).items():
        if action.dest in SHARED_ENVIRONMENT:
            continue
        name = env_name(prefix, key)
        if name in env:
            out[action.dest] = (_convert(action, key, env[name], f"${name}", from_text=True),
                                OptionSource(key, f"${name}"))
    return out


def _given(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The dests given on the command line itself."""
    given = set()
    for action in parser._actions:  # noqa: SLF001
        for opt in action.option_strings:
            if any(a == opt or (opt.startswith("--") and a.startswith(opt + "=")) for a in argv):
                given.add(action.dest)
    return given


def _exclusive(parser: argparse.ArgumentParser, values: dict, given: set[str]) -> None:
    """Of a mutually exclusive group, a member on the command line replaces the others from the
    file or the environment; two of them set there is an error naming both."""
    for group in parser._mutually_exclusive_groups:  # noqa: SLF001
        dests = [a.dest for a in group._group_actions]  # noqa: SLF001
        if any(d in given for d in dests):
            for d in dests:
                values.pop(d, None)
            continue
        chosen = [d for d in dests if d in values and values[d][0] not in (None, "", False)]
        if len(chosen) > 1:
            raise ConfigError(" and ".join(f"{values[d][1].option} ({values[d][1].where})" for d in chosen)
                              + ": only one of them may be set")


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str] | None, *, env_prefix: str,
                      env: Mapping[str, str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` with defaults from the TOML file of ``--config`` (or ``$<prefix>CONFIG``) and
    from the ``<prefix><OPTION>`` variables: the command line beats the environment, which beats
    the file. ``args.option_sources`` lists what came from where (for the start-up log line).

    Of a mutually exclusive group (``--pool`` or ``--roles``), a member given on the command line
    replaces what the file or the environment said for the others. Raises :class:`ConfigError`
    naming the file and line, or the variable, of a bad value; the parser exits on bad flags.
    """
    import os
    import sys

    env = os.environ if env is None else env
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    path = known.config or env.get(env_prefix + "CONFIG") or None
    values = read_config_file(path, parser) if path else {}
    for dest, names in SHARED_ENVIRONMENT.items():  # their own variables beat the file
        if dest in values and any(env.get(n) for n in names):
            del values[dest]
    if any(env.get(n) for n in (*SHARED_ENVIRONMENT["redis"], *SHARED_ENVIRONMENT["redis_url_file"])):
        values.pop("redis", None)  # a URL of the environment, whichever variable, beats the file's
        values.pop("redis_url_file", None)
    values.update(read_environment(env_prefix, parser, env))
    given = _given(parser, argv)
    _exclusive(parser, values, given)
    parser.set_defaults(**{dest: value for dest, (value, _) in values.items()})
    args = parser.parse_args(argv)
    args.config = path
    args.option_sources = tuple(src for dest, (_, src) in values.items() if dest not in given)
    return args


def secret_file_problem(path: str | None) -> str | None:
    """Why a password or key file is too open (readable by others than its owner), or None."""
    import os
    import stat

    if not path or os.name != "posix":
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # the reader says what is wrong with it
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (f"{path} may be read by other users (mode {stat.filemode(mode)}); make it readable by the "
                f"service user only: chmod 600 {path}")
    return None
