"""The package installs with pip into a venv that sees Debian's python3-zmq
and python3-msgpack, offline, and works from there."""

from __future__ import annotations

import shutil
import subprocess
import sys

from conftest import SOURCE


def test_pip_installs_the_package_into_a_venv(tmp_path, host):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    source = tmp_path / "source"  # setuptools builds in the tree it is given: not the checkout
    shutil.copytree(SOURCE / "python", source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-index", "--no-deps", "--no-build-isolation",
                              "--quiet", str(source)], capture_output=True, text=True, cwd=tmp_path)
    assert install.returncode == 0, install.stderr
    check = subprocess.run([str(python), "-c", "import umi, pathlib, sys; "
                            "print(umi.__file__); print((pathlib.Path(umi.__file__).parent / 'py.typed').exists()); "
                            f"print(umi.Client({host.rpc!r}).run('noop').status)"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    location, typed, status = check.stdout.split()
    assert location.startswith(str(venv)) and typed == "True" and status == "ok"
    cli = subprocess.run([str(venv / "bin" / "umi-py"), "health", "--rpc", host.rpc], capture_output=True, text=True)
    assert cli.returncode == 0 and '"status": "serving"' in cli.stdout
