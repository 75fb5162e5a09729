"""The benchmark of issue 5: idp under gunicorn with production settings, loaded by wrk.

    .venv/bin/python tests/benchmarks/run.py [--database sqlite] [--scenarios hello,login]
                                             [--duration 8] [--enforce] [--json out.json]

Needs wrk, and PostgreSQL on 127.0.0.1 unless --database sqlite; Redis is used when it answers.
Prints a Markdown table and appends a line to tests/benchmarks/history.jsonl.
"""

import sys
from pathlib import Path

# Run as a script, this folder would be first on sys.path: put the project root there instead,
# so that `tests.benchmarks.*` and `idp` import and our module names shadow nothing.
sys.path[0] = str(Path(__file__).resolve().parents[2])

from tests.benchmarks.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
