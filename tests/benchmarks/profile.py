"""py-spy on the live workers during a scenario's measured window, and what it found.

`run.py --profile DIR` samples every worker (py-spy record, raw collapsed stacks, without pausing
the workers) while wrk measures, writes `DIR/<scenario>.txt` (the stacks of all workers, for
flamegraph.pl or speedscope) and prints where the samples went: by the frame that was running
(self), and by the idp or library function they passed through (inclusive). Sampling costs the
workers CPU, so a profiled run is never appended to the history.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

RATE = 500  # samples per second per worker
TOP = 25


def py_spy() -> str | None:
    """The py-spy executable beside this Python (an unactivated venv), on PATH, or None."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@dataclass
class Profiler:
    """Start with `start(pids)` before the window, `stop()` after it."""

    folder: Path
    scenario: str
    duration: float
    _processes: list[tuple[Path, subprocess.Popen[bytes]]] | None = None

    def start(self, pids: list[int]) -> None:
        executable = py_spy()
        if executable is None:
            raise RuntimeError("py-spy is not installed (pip install -e '.[test]')")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._processes = []
        for pid in pids:
            out = self.folder / f".{self.scenario}-{pid}.txt"
            command = [
                executable,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(RATE),
                "--duration",
                str(int(self.duration + 1)),
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(out),
            ]
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self._processes.append((out, process))

    def stop(self) -> Path:
        """Wait for the samplers; merge their stacks into one file and return its path."""
        merged = Counter[str]()
        for out, process in self._processes or []:
            _, stderr = process.communicate(timeout=self.duration + 30)
            if process.returncode != 0 or not out.exists():
                raise RuntimeError(f"py-spy failed: {stderr.decode(errors='replace')[-500:]}")
            merged.update(read_collapsed(out))
            out.unlink()
        path = self.folder / f"{self.scenario}.txt"
        path.write_text("".join(f"{stack} {count}\n" for stack, count in merged.items()))
        return path


def read_collapsed(path: Path) -> Counter[str]:
    """Stacks ('frame;frame;...') and their sample counts from a collapsed-stack file."""
    stacks = Counter[str]()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return stacks


def summary(path: Path, top: int = TOP) -> str:
    """Self and inclusive shares of the samples in one scenario's collapsed stacks."""
    stacks = read_collapsed(path)
    total = sum(stacks.values()) or 1
    own = Counter[str]()
    inclusive = Counter[str]()
    for stack, count in stacks.items():
        frames = [_short(frame) for frame in stack.split(";")]
        if not frames:
            continue
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{path.stem}: {total} samples ({path})", "  self:"]
    lines += [f"    {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines.append("  inclusive (idp, and the libraries' entry points):")
    chosen = [(f, n) for f, n in inclusive.most_common() if _interesting(f)][:top]
    lines += [f"    {100 * n / total:5.1f}%  {frame}" for frame, n in chosen]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """'function (path/to/module.py:line)' without the line and the site-packages prefix."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


def _interesting(frame: str) -> bool:
    if "idp/" in frame:
        return True
    libraries = ("authlib/", "joserfc/", "sqlalchemy/", "psycopg/", "flask_limiter/", "redis/")
    return any(library in frame for library in libraries) and "__" not in frame.split(" ")[0]
