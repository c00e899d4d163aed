"""``symphony completion bash|zsh``: a shell completion script for ``symphony``, ``symphony-worker``
and ``symphony-tui``, made from their own argument parsers (so it never lags behind them).

    symphony completion bash > ~/.local/share/bash-completion/completions/symphony
    eval "$(symphony completion zsh)"          # in ~/.zshrc

It completes verbs, options, the choices of options that have them, and file names after
options that take a file or a directory. Nothing is asked of Redis while you type.
"""
from __future__ import annotations

import argparse
import importlib
import re
from dataclasses import dataclass, field

HELP = "print a shell completion script (bash or zsh) for symphony, symphony-worker and symphony-tui"

# the console scripts of pyproject.toml and the modules whose build_parser() describes them
PROGRAMS = (("symphony", "symphony.console.commands.main"),
            ("symphony-worker", "symphony.workers.cli"),
            ("symphony-tui", "symphony.console.tui_main"))
PATH_METAVAR = re.compile(r"FILE|DIR|PATH")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("completion", help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shell", choices=["bash", "zsh"], help="the shell the script is for")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(script(args.shell), end="")
    return 0


@dataclass
class Context:
    """One level of a command line: the program, or the program and its verbs so far."""

    name: str  # e.g. "symphony metrics collect"
    words: list[str] = field(default_factory=list)  # options and verbs offered here
    subcommands: dict[str, str] = field(default_factory=dict)  # verb -> the context it leads to
    valued: list[str] = field(default_factory=list)  # options that take a value
    choices: dict[str, list[str]] = field(default_factory=dict)  # option -> its choices
    paths: list[str] = field(default_factory=list)  # options whose value is a file or directory
    positional_paths: bool = False  # a positional argument is a file or directory


def _is_path(action: argparse.Action) -> bool:
    return bool(action.metavar and PATH_METAVAR.search(str(action.metavar)))


def contexts(prog: str, parser: argparse.ArgumentParser) -> list[Context]:
    """Every context of ``parser`` and its subparsers, depth first."""
    ctx = Context(prog)
    found = [ctx]
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            for verb, child in action.choices.items():
                child_ctx = f"{prog} {verb}"
                ctx.subcommands[verb] = child_ctx
                ctx.words.append(verb)
                found += contexts(child_ctx, child)
            continue
        if not action.option_strings:  # a positional
            if action.choices:
                ctx.words += [str(c) for c in action.choices]
            elif _is_path(action) or action.dest in ("paths", "path"):
                ctx.positional_paths = True
            continue
        ctx.words += action.option_strings
        if action.nargs != 0:
            ctx.valued += action.option_strings
            for option in action.option_strings:
                if action.choices:
                    ctx.choices[option] = [str(c) for c in action.choices]
                elif _is_path(action):
                    ctx.paths.append(option)
    return found


def _function_name(prog: str) -> str:
    return "_" + re.sub(r"\W", "_", prog) + "_complete"


def _bash_function(prog: str, parser: argparse.ArgumentParser) -> str:
    every = contexts(prog, parser)
    walk, values, offers = [], [], []
    for ctx in every:
        for verb, target in ctx.subcommands.items():
            walk.append(f'            "{ctx.name}|{verb}") ctx="{target}";;')
        if ctx.valued:
            walk.append("            " + "|".join(f'"{ctx.name}|{o}"' for o in ctx.valued) + ") skip=1;;")
        for option, choices in ctx.choices.items():
            values.append(f'        "{ctx.name}|{option}") COMPREPLY=($(compgen -W "{" ".join(choices)}" -- "$cur")); '
                          "return 0;;")
        if ctx.paths:
            values.append("        " + "|".join(f'"{ctx.name}|{o}"' for o in ctx.paths)
                          + ') COMPREPLY=($(compgen -f -- "$cur")); return 0;;')
        rest = [o for o in ctx.valued if o not in ctx.choices and o not in ctx.paths]
        if rest:
            values.append("        " + "|".join(f'"{ctx.name}|{o}"' for o in rest) + ") COMPREPLY=(); return 0;;")
        files = ' ; [[ "$cur" != -* ]] && COMPREPLY+=($(compgen -f -- "$cur"))' if ctx.positional_paths else ""
        offers.append(f'        "{ctx.name}") COMPREPLY=($(compgen -W "{" ".join(ctx.words)}" -- "$cur")){files};;')
    name = _function_name(prog)
    return "\n".join([
        f"{name}() {{",
        '    [ -n "${ZSH_VERSION:-}" ] && setopt localoptions ksharrays',
        f'    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="" ctx="{prog}" skip=0 i w',
        '    [ "$COMP_CWORD" -gt 0 ] && prev="${COMP_WORDS[COMP_CWORD-1]}"',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        w="${COMP_WORDS[i]}"',
        '        if [ "$skip" = 1 ]; then skip=0; continue; fi',
        '        case "$ctx|$w" in',
        *walk,
        "        esac",
        "    done",
        '    if [ "$skip" = 1 ]; then',
        '        case "$ctx|$prev" in',
        *values,
        "        esac",
        "    fi",
        '    case "$ctx" in',
        *offers,
        "    esac",
        "    return 0",
        "}",
        f"complete -F {name} {prog}",
    ])


def _parser_of(module: str) -> argparse.ArgumentParser:
    return importlib.import_module(module).build_parser()


def script(shell: str) -> str:
    """The completion script for ``shell`` (bash, or zsh through its bash compatibility)."""
    head = ["# shell completion for symphony, symphony-worker and symphony-tui (symphony completion "
            f"{shell})"]
    if shell == "zsh":
        head.append("autoload -U +X bashcompinit && bashcompinit")
    bodies = [_bash_function(prog, _parser_of(module)) for prog, module in PROGRAMS]
    return "\n".join(head) + "\n" + "\n\n".join(bodies) + "\n"
