"""Run every example script in this directory, each in its own Python process.

    python examples/run_all.py            # all examples, one status line each
    python examples/run_all.py -v         # also show each example's output
    python examples/run_all.py nap square # only these examples

Exits with status 1 if any example fails (non-zero exit or timeout). Examples that import
numba are skipped when numba is not installed (`pip install numba`, or
`pip install -e ".[test]"`), and those that use rayling.data when pyarrow is not
(`pip install -e ".[data]"`).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIMEOUT_S = 120


def example_scripts() -> list[Path]:
    return sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name)


# module: what a script says when it needs it
OPTIONAL_MODULES = {"numba": ("import numba", "from numba import"), "pyarrow": ("ray.data.",)}


def needs_missing_module(script: Path) -> str | None:
    text = script.read_text()
    for module, markers in OPTIONAL_MODULES.items():
        uses = any(marker in text for marker in markers)
        if uses and importlib.util.find_spec(module) is None:
            return module
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="example names (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show each example's output")
    args = parser.parse_args()

    scripts = example_scripts()
    if args.names:
        wanted = {n.removesuffix(".py") for n in args.names}
        unknown = wanted - {s.stem for s in scripts}
        if unknown:
            parser.error(f"no such example(s): {', '.join(sorted(unknown))}")
        scripts = [s for s in scripts if s.stem in wanted]

    failed, skipped = [], []
    for script in scripts:
        missing = needs_missing_module(script)
        if missing:
            print(f"SKIP  {script.name} ({missing} is not installed)", flush=True)
            skipped.append(script.name)
            continue
        start = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                                  timeout=TIMEOUT_S)
            ok, status = proc.returncode == 0, f"exit {proc.returncode}"
            out, err = proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as e:
            ok, status = False, f"timed out after {TIMEOUT_S} s"
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout
            err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        elapsed = time.monotonic() - start
        print(f"{'ok   ' if ok else 'FAIL '} {script.name} ({elapsed:.1f} s"
              f"{'' if ok else ', ' + status})", flush=True)
        if args.verbose or not ok:
            for label, text in (("stdout", out), ("stderr", err)):
                if text:
                    print(f"----- {script.name} {label} -----")
                    print(text.rstrip())
        if not ok:
            failed.append(script.name)

    ran = len(scripts) - len(skipped)
    print(f"\n{ran - len(failed)} passed, {len(failed)} failed, {len(skipped)} skipped")
    if failed:
        print("failed: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
