"""Build (or reuse) one venv per interop stack under .cache/interop/<stack>.

    python tests/interop/build_venvs.py [stack ...]        # all stacks by default

A venv is rebuilt only when its install line, pyproject.toml or the Python version changed (a
stamp file records them), so repeated `make test` runs reuse them; pip's own cache makes a rebuild
cheap. The checkout is installed editable, so code changes need no rebuild. Exits non-zero when a
stack cannot be installed, naming it (its pip output is in .cache/interop/<stack>.log).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from stacks import STACKS, Stack, pip_args  # noqa: E402

CACHE = ROOT / ".cache" / "interop"


def venv_dir(name: str) -> Path:
    stack = STACKS.get(name)
    return CACHE / ((stack.venv if stack and stack.venv else name).replace("+", "_"))


def python_of(name: str) -> Path:
    return venv_dir(name) / "bin" / "python"


def stamp_of(stack: Stack) -> str:
    h = hashlib.sha256()
    h.update(stack.install.encode())
    h.update((ROOT / "pyproject.toml").read_bytes())
    h.update(sys.version.encode())
    return h.hexdigest()


def is_built(stack: Stack) -> bool:
    if stack.venv:
        return is_built(STACKS[stack.venv])
    stamp = venv_dir(stack.name) / ".stamp"
    return stamp.exists() and stamp.read_text() == stamp_of(stack) and python_of(stack.name).exists()


def build(stack: Stack) -> tuple[str, bool]:
    if is_built(stack):
        return stack.name, True
    target = venv_dir(stack.name)
    log = CACHE / f"{target.name}.log"
    shutil.rmtree(target, ignore_errors=True)
    with open(log, "w") as out:
        steps = [[sys.executable, "-m", "venv", str(target)],
                 [str(python_of(stack.name)), "-m", "pip", "install", "-q", *pip_args(stack, str(ROOT))]]
        for cmd in steps:
            out.write("$ " + " ".join(cmd) + "\n")
            out.flush()
            if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT).returncode != 0:
                return stack.name, False
    (target / ".stamp").write_text(stamp_of(stack))
    return stack.name, True


def main(argv: list[str]) -> int:
    names = argv or [n for n, s in STACKS.items() if not s.venv]  # stacks with their own venv
    unknown = [n for n in names if n not in STACKS]
    if unknown:
        print(f"unknown stacks: {unknown}; known: {list(STACKS)}", file=sys.stderr)
        return 2
    CACHE.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(build, [STACKS[n] for n in names]))
    failed = [n for n, ok in results if not ok]
    for n in failed:
        print(f"interop stack {n}: install failed, see {CACHE / (venv_dir(n).name + '.log')}", file=sys.stderr)
    print(f"interop venvs ready: {len(results) - len(failed)}/{len(results)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
