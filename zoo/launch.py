"""``--nproc N`` for CLI subcommands: re-run the same command under torchrun on this machine."""
from __future__ import annotations

import subprocess
import sys

__all__ = ["relaunch"]


def relaunch(a, parser, command: str) -> int:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m zoo COMMAND NAME ...``
    with every option of ``a`` that differs from ``parser``'s default, except ``--nproc``."""
    args = [a.name]
    for act in parser._actions:
        if not act.option_strings or act.dest in ("help", "nproc"):
            continue
        val = getattr(a, act.dest, None)
        if val is None or val is False or val == act.default:
            continue
        flag = act.option_strings[-1]
        if val is True:
            args.append(flag)
        elif isinstance(val, list):
            for v in val:
                args += [flag, str(v)]
        else:
            args += [flag, str(val)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={a.nproc}",
           "-m", "zoo", command, *args]
    print("launching: " + " ".join(cmd), file=sys.stderr)
    return subprocess.call(cmd)
