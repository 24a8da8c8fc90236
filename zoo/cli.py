"""The ``zoo`` command (also ``python -m zoo``)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .version import __version__
from .factory import model_info
from .registry import list_models, registry


def _cmd_list(a) -> int:
    names = list_models(a.pattern or "*", pretrained=a.pretrained, kind=a.kind)
    reg = registry()
    if a.pretrained and not names:
        print("no hosted weights yet (see weights_manifest.json; `zoo info NAME` gives the authors' checkpoint)")
        return 0
    for n in names:
        if n in reg.variants:
            v = reg.variants[n]
            w = (reg.weights(n) or {}).get("status", "unreleased")
            print(f"{n:<40} variant   {v.arch:<20} {v.dataset:<11} {v.frames:>3}f {v.num_classes:>4} classes  weights: {w}")
        elif n in reg.ensembles:
            e = reg.ensembles[n]
            print(f"{n:<40} ensemble  {' + '.join(e.members)}")
        else:
            print(f"{n:<40} arch      family {reg.archs[n].family}")
    print(f"# {len(names)} name(s)", file=sys.stderr)
    return 0


def _cmd_info(a) -> int:
    info = model_info(a.name)
    if a.json:
        print(json.dumps(info, indent=1, default=str))
    else:
        from .hub import describe
        from .labels import label_info
        from .train.recipes import recipe_text

        print(describe(a.name))
        lab = label_info(a.name)
        if lab:
            what = f"{lab['list']} (zoo/labels/{lab['list']}.txt)" if lab.get("list") else "none bundled"
            print(f"Class names: {what}; order: {lab.get('order', '?')}; source: {lab.get('source', '?')}")
        print(recipe_text(a.name))
    return 0


def _cmd_report(a) -> int:
    import torch

    from .report import build_report, render

    if a.out and Path(a.out).exists() and not Path(a.out).is_dir():  # before the slow part
        raise ValueError(f"--out {a.out} exists and is not a folder (report writes complexity-*.{a.format} into a folder)")

    torch.set_num_threads(a.threads or os.cpu_count() or 1)

    if a.plot:
        from .plot import cmd_plot

        return cmd_plot(a)
    results = build_report(a.paper or None, progress=not a.quiet, archs=a.arch or None, frames=a.frames)
    text = render(results, a.format)
    if a.out:
        from .weights import atomic_write

        out = Path(a.out)
        suffix = "-".join(a.paper) if a.paper else "all"
        path = out / f"complexity-{suffix}.{a.format}"
        atomic_write(path, text)
        print(f"wrote {path}", file=sys.stderr)
    else:
        print(text)
    return 0


def _papers_help() -> str:
    try:  # --help and --version must work even when the registry or manifest is broken
        return ", ".join(sorted(registry().papers))
    except Exception:
        return "see `zoo list`"


def _fail(cmd: str, e: BaseException) -> int:
    """One line on stderr instead of a traceback; ZOO_DEBUG=1 gives the traceback."""
    msg = str(e).strip() or type(e).__name__
    if isinstance(e, KeyError) and msg.startswith(("'", '"')) and msg.endswith(("'", '"')):
        msg = msg[1:-1]  # KeyError quotes its message
    expected = isinstance(e, (KeyError, ValueError, RuntimeError, OSError))
    hint = "" if expected else f" ({type(e).__name__}; set ZOO_DEBUG=1 for the traceback)"
    print(f"zoo {cmd}: error: {' '.join(msg.split())}{hint}", file=sys.stderr)
    return 2 if expected else 1


def _quiet_broken_pipe() -> int:
    """The reader went away (``zoo list | head``): stop quietly, and keep the interpreter's final
    flush of stdout from raising again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141  # 128 + SIGPIPE, as a shell reports a command killed by a closed pipe


def main(argv=None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _quiet_broken_pipe()


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="zoo", description="Video action-recognition model zoo.")
    p.add_argument("--version", action="version", version=f"zoo {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("list", help="list registered names")
    s.add_argument("pattern", nargs="?", help="fnmatch pattern, e.g. 'gc_tsm_*'")
    s.add_argument("--pretrained", action="store_true", help="only names with hosted weights")
    s.add_argument("--kind", default="all", choices=["all", "variant", "ensemble", "arch"])
    s.set_defaults(fn=_cmd_list)

    s = sub.add_parser("info", help="the declarative entry of a name")
    s.add_argument("name")
    s.add_argument("--json", action="store_true", help="the full entry as JSON")
    s.set_defaults(fn=_cmd_info)

    s = sub.add_parser("report", help="paper vs measured params/FLOPs for every table row")
    s.add_argument("--paper", action="append", help="paper id (repeatable): " + _papers_help())
    s.add_argument("--arch", action="append", help="only rows of architectures matching this pattern (repeatable)")
    s.add_argument("--frames", type=int, help="only rows with this many frames")
    s.add_argument("--format", default="md", choices=["md", "csv", "json"])
    s.add_argument("--out", help="write into this directory instead of stdout")
    s.add_argument("--threads", type=int, default=0)
    s.add_argument("-q", "--quiet", action="store_true")
    s.add_argument("--plot", metavar="OUT.svg|png", help="draw claimed accuracy vs measured GFLOPs per dataset (zoo.plot)")
    s.add_argument("--dataset", action="append", help="--plot: only this dataset (repeatable), e.g. ssv1")
    s.add_argument("--results", nargs="+", help="--plot: zoo eval summary JSON files drawn beside the claims")
    s.add_argument("--flops-cache", help="--plot: JSON file keeping measured GFLOPs between runs")
    s.set_defaults(fn=_cmd_report)

    for mod in _EXTRA_COMMANDS:
        __import__(mod, fromlist=["add_commands"]).add_commands(sub)

    a = p.parse_args(argv)
    try:
        code = a.fn(a)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers
        return code
    except (KeyboardInterrupt, BrokenPipeError):
        raise
    except Exception as e:
        if os.environ.get("ZOO_DEBUG", "").strip() not in ("", "0"):
            raise
        return _fail(a.cmd, e)


# modules that add subcommands (each defines add_commands(subparsers))
_EXTRA_COMMANDS: list[str] = ["zoo.weights_cli", "zoo.bench", "zoo.predict_cli", "zoo.eval_cli", "zoo.train.cli"]

if __name__ == "__main__":
    sys.exit(main())
