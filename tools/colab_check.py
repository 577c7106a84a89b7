#!/usr/bin/env python
"""A Colab-like install check: the wheel alone, in a clean venv, runs chapter 2.

Usage (``make colab-check``; not part of ``make test``)::

    python tools/colab_check.py [--python python3] [--work _build/colab-check]
                                [--notebook notebooks/02_chipping.ipynb]

Steps, each timed:

1. build the sarslide wheel from this checkout (``pip wheel --no-deps``);
2. create a clean virtual environment (no system site-packages, no ``.[dev]`` extras);
3. install the wheel into it with ``-c constraints.txt`` (torch from this machine's
   pins) plus only what executing a notebook needs: ``nbclient`` and ``ipykernel``;
4. execute the chapter there with nbclient on the demo profile, with a cold data cache,
   as a fresh Colab runtime would (its first cell sees sarslide installed and skips the
   ``pip install``).

The executed notebook is written to ``<work>/executed.ipynb``. Exit status: 0 when every
step passed, 1 when one failed (its output is printed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNNER_DEPS = ("nbclient>=0.10", "ipykernel>=6.29")
EXECUTE = """
import sys, time
import nbformat
from nbclient import NotebookClient
src, dst, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3])
nb = nbformat.read(src, as_version=4)
start = time.perf_counter()
NotebookClient(nb, timeout=timeout, kernel_name="python3",
               resources={"metadata": {"path": sys.argv[4]}}).execute()
nbformat.write(nb, dst)
print(f"executed {src} in {time.perf_counter() - start:.1f} s")
"""


def step(name: str, cmd: list[str], times: dict[str, float], **kw) -> None:
    """Run one timed step; exit with its output when it fails."""
    print(f"--> {name}: {' '.join(map(str, cmd))[:200]}", flush=True)
    start = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    times[name] = time.perf_counter() - start
    if run.returncode != 0:
        print(run.stdout[-4000:], run.stderr[-4000:], sep="\n")
        print(f"colab-check FAILED at '{name}' (exit {run.returncode})")
        sys.exit(1)
    tail = (run.stdout.strip().splitlines() or [""])[-1]
    print(f"    {times[name]:.1f} s  {tail[:160]}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--python", default="python3", help="interpreter for the clean venv"
    )
    parser.add_argument("--work", type=Path, default=ROOT / "_build" / "colab-check")
    parser.add_argument(
        "--notebook", type=Path, default=ROOT / "notebooks" / "02_chipping.ipynb"
    )
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument(
        "--reuse-venv",
        action="store_true",
        help="keep the clean venv of an earlier run; reinstall only the wheel",
    )
    args = parser.parse_args(argv)
    if not args.notebook.is_file():
        parser.error(f"no such notebook: {args.notebook}")
    if shutil.which(args.python) is None and not Path(args.python).is_file():
        parser.error(f"--python {args.python!r} is not an interpreter on PATH")
    work = args.work.resolve()
    venv, data = work / "venv", work / "data"
    py = venv / "bin" / "python"
    reuse = args.reuse_venv and py.is_file()
    for old in (work / "dist", data) if reuse else (work,):
        shutil.rmtree(
            old, ignore_errors=True
        )  # a cold data cache, like a fresh runtime
    (work / "dist").mkdir(parents=True)
    runner = work / "execute.py"
    runner.write_text(EXECUTE)
    times: dict[str, float] = {}
    quiet = ["--quiet", "--disable-pip-version-check"]

    step(
        "build wheel",
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            *quiet,
            "--no-deps",
            "--wheel-dir",
            str(work / "dist"),
            str(ROOT),
        ],
        times,
    )
    wheel = next((work / "dist").glob("sarslide-*.whl"))
    pip_install = [str(py), "-m", "pip", "install", *quiet]
    constraints = ["-c", str(ROOT / "constraints.txt")]
    if reuse:
        reinstall = [*pip_install, "--no-deps", "--force-reinstall", str(wheel)]
        step("reinstall wheel", reinstall, times)
        # dependencies added since the venv was made (the others are already satisfied)
        step("update dependencies", [*pip_install, *constraints, str(wheel)], times)
    else:
        step("create clean venv", [args.python, "-m", "venv", str(venv)], times)
        step(
            "install wheel",
            [*pip_install, *constraints, str(wheel), *RUNNER_DEPS],
            times,
        )
    step(
        "register kernel",
        [str(py), "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"],
        times,
    )
    # The clean venv must not see this checkout's package or its dev extras.
    step(
        "check isolation",
        [
            str(py),
            "-c",
            "import sarslide, importlib.util as u; "
            "assert 'site-packages' in sarslide.__file__, sarslide.__file__; "
            "assert u.find_spec('jupyter_book') is None; "
            "assert u.find_spec('pytest') is None; print(sarslide.__file__)",
        ],
        times,
        cwd=work,
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SARSLIDE_", "MPLBACKEND", "VIRTUAL_ENV", "PYTHONPATH"))
    }
    env.update(
        SARSLIDE_PROFILE="demo",
        SARSLIDE_DATA_DIR=str(data),
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    )
    step(
        f"execute {args.notebook.name}",
        [
            str(py),
            str(runner),
            str(args.notebook.resolve()),
            str(work / "executed.ipynb"),
            str(args.timeout),
            str(work),
        ],
        times,
        env=env,
        cwd=work,
    )
    total = sum(times.values())
    print(
        "colab-check passed: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in times.items())
        + f"; total {total:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
