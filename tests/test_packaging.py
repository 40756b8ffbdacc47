"""The built-in profiles ship inside the wheel (profiles/ is mapped to the package mkimage.profiles)."""

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT


def test_wheel_ships_the_profiles(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob("mkimage-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for profile in ("minimal", "hardened", "none", "slim"):
        assert f"mkimage/profiles/{profile}.toml" in names
    assert "mkimage/profiles/examples/security-team.toml" in names
    assert "mkimage/cli.py" in names and "mkimage/__main__.py" in names
