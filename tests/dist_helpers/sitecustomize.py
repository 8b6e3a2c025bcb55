"""Test helper, loaded by every Python process started with this folder on PYTHONPATH.

In a process torchrun started as rank > 0 (RANK set and not 0) it records every write under
SLMREC_AUDIT_ROOT (opening a file for writing, rename, remove, mkdir, ...) as a line of
SLMREC_AUDIT_REPORT/rank<R>-<pid>.writes, through Python's audit hooks, which see every such call
whichever library makes it from Python. rank<R>-<pid>.started shows that the audit ran.
"""

import os
import sys

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_CHANGES = {"os.rename", "os.remove", "os.mkdir", "os.rmdir", "os.truncate", "os.link", "os.symlink", "os.chmod",
            "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move"}


def _install(root: str, report: str, rank: str) -> None:
    root = os.path.realpath(root)
    stem = os.path.join(report, f"rank{rank}-{os.getpid()}")
    reporting = []  # the hook's own report writes are not audited

    def inside(path) -> bool:
        try:
            resolved = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return False
        return resolved == root or resolved.startswith(root + os.sep)

    def hook(event, args):
        if reporting:
            return
        if event == "open":
            path, mode, flags = args
            paths = [path] if (isinstance(mode, str) and set(mode) & set("wax+")) or flags & _WRITE_FLAGS else []
        elif event in _CHANGES:
            paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
        else:
            return
        touched = [os.fsdecode(p) for p in paths if isinstance(p, (str, bytes, os.PathLike)) and inside(p)]
        if touched:
            reporting.append(True)
            try:
                with open(stem + ".writes", "a") as f:
                    f.write(f"{event} {' '.join(touched)}\n")
            finally:
                reporting.pop()

    with open(stem + ".started", "w"):
        pass
    sys.addaudithook(hook)


if os.environ.get("SLMREC_AUDIT_ROOT") and os.environ.get("SLMREC_AUDIT_REPORT") and os.environ.get("RANK", "0") != "0":
    _install(os.environ["SLMREC_AUDIT_ROOT"], os.environ["SLMREC_AUDIT_REPORT"], os.environ["RANK"])
