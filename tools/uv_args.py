"""Print `uv pip install` options for the package sources pip is configured with here (find-links, constraint).

uv reads neither pip.conf nor PIP_* variables; a machine that keeps wheels on disk (a CPU build of torch, say)
or caps versions in a constraint file says so to pip, and the Makefile passes it on to uv with this."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

OPTIONS = {"find-links": "--find-links", "constraint": "--constraint"}


def pip_settings() -> dict[str, list[str]]:
    """pip's configured values per option (all scopes and PIP_* environment variables), in pip's order."""
    try:
        text = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                              timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        text = ""
    out: dict[str, list[str]] = {k: [] for k in OPTIONS}
    for line in text.splitlines():
        m = re.match(r"^[^.]*\.([a-z-]+)='(.*)'$", line.strip())
        if m and m.group(1) in out:
            out[m.group(1)] += m.group(2).split()
    for key in OPTIONS:
        out[key] += os.environ.get("PIP_" + key.upper().replace("-", "_"), "").split()
    return out


def uv_args(settings: dict[str, list[str]]) -> list[str]:
    args: list[str] = []
    for key, flag in OPTIONS.items():
        for value in dict.fromkeys(settings.get(key, [])):  # unique, in order
            path = value[len("file://"):] if value.startswith("file://") else value
            if "://" in value or os.path.exists(path):  # pip skips a missing local path; uv would fail on it
                args += [flag, value]
    return args


if __name__ == "__main__":
    print(shlex.join(uv_args(pip_settings())))
