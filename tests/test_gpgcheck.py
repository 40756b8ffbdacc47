"""GPG checks: a signed copy of the test repository (keys made here with gpg, packages signed with rpmsign), built
through mkimage with real dnf and rpm; the yum 3 lines, which cannot run here, are covered by unit tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import Builder, Repo, require
from mkimage import gpgcheck
from mkimage.gpgcheck import BAD, NO_KEY, NOT_SIGNED, WRONG_KEY, GpgFailure
from mkimage.installer.config import ConfigAnswer
from mkimage.installer.config import Repo as RepoAnswer
from signing import SIGNING_TOOLS, copy_packages, export_key, gnupg_home, index, make_key, sign

UNSIGNED = "demo-hello-1.0-1.noarch.rpm"
OTHER_KEY = "demo-extra-1.0-1.noarch.rpm"
TAMPERED = "demo-default-1.0-1.noarch.rpm"
REPO_NAME = "mkimage demo repository"


@dataclass(frozen=True)
class SignedRepo:
    root: Path
    key_id: str
    """The repository's key (8 hex digits, lower case), the one gpgkey= lists."""
    other_key_id: str
    """The key OTHER_KEY is signed with, which no gpgkey= lists."""

    @property
    def config(self) -> Path:
        return self.root / "yum.conf"

    @property
    def packages(self) -> Path:
        return self.root / "repo"

    def write_config(self, name: str, main: str = "", repo: str = "") -> Path:
        """A variant of the config: extra lines for [main] and for the repository section."""
        text = self.config.read_text().replace("[main]\n", f"[main]\n{main}", 1)
        path = self.root / name
        path.write_text(text.replace("enabled=1\n", f"enabled=1\n{repo}", 1) if repo else text)
        return path


def tamper(rpm: Path) -> None:
    """Flip a byte of the payload after signing (before createrepo, so the repository's checksum matches)."""
    data = bytearray(rpm.read_bytes())
    data[-20] ^= 0xFF
    rpm.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def signed_repo(repo: Repo, tmp_path_factory: pytest.TempPathFactory) -> SignedRepo:
    """A copy of the test repository: everything signed with key A, except UNSIGNED (not signed), OTHER_KEY
    (signed with key B) and TAMPERED (signed with A, then altered); the config has gpgcheck=1, gpgkey=A."""
    missing = [tool for tool in SIGNING_TOOLS if shutil.which(tool) is None]
    require(not missing, f"missing tools: {', '.join(missing)}")
    root = tmp_path_factory.mktemp("signed-repo")
    with gnupg_home(root / "gnupg") as gnupg:
        key_id, other_key_id = make_key(gnupg, "mkimage-key-a"), make_key(gnupg, "mkimage-key-b")
        rpms = copy_packages(repo.root, root / "repo")
        shutil.copy(repo.root / "comps.xml", root / "comps.xml")
        (root / "yum.repos.d").mkdir()
        sign(gnupg, "mkimage-key-a", [rpm for rpm in rpms if rpm.name not in (UNSIGNED, OTHER_KEY)])
        sign(gnupg, "mkimage-key-b", [root / "repo" / OTHER_KEY])
        tamper(root / "repo" / TAMPERED)
        export_key(gnupg, "mkimage-key-a", root / "KEY-A.asc")
        index(root / "repo", root / "comps.xml", gnupg)
    config = repo.config.read_text().replace(str(repo.root), str(root)).replace("gpgcheck=0", "gpgcheck=1")
    (root / "yum.conf").write_text(config + f"gpgkey={(root / 'KEY-A.asc').as_uri()}\n")
    return SignedRepo(root, key_id, other_key_id)


# -------------------------------------------------------------------------------- real dnf, through mkimage
def test_signed_packages_with_their_key_build(build: Builder, signed_repo: SignedRepo) -> None:
    run = build("--rootfs-only", "-p", "demo-secrets", name="mkimage-test-gpg/ok", config=signed_repo.config)
    assert run.returncode == 0, run.stderr
    shutil.rmtree(Path(run.stdout.strip()).parent)
    packages = json.loads(build.report_paths[-1].read_text())["packages"]
    assert "demo-secrets-1.0-1.noarch" in packages
    assert any(name.startswith(f"gpg-pubkey-{signed_repo.key_id}-") for name in packages), packages


@pytest.mark.parametrize("package, expected", [
    ("demo-hello", f"Error: GPG check failed: {UNSIGNED} is not signed"),
    ("demo-default", f"Error: GPG check failed: {TAMPERED}: bad signature or digest (Payload SHA256 "),
])
def test_a_failing_package_is_named_with_its_reason(build: Builder, signed_repo: SignedRepo, package: str,
                                                    expected: str) -> None:
    run = build("-p", package, name="mkimage-test-gpg/fail", config=signed_repo.config)
    assert run.returncode == 3, run.stderr
    assert run.error_line.startswith(expected), run.stderr
    assert build.leftovers() == []


def test_a_package_signed_by_another_key_names_that_key(build: Builder, signed_repo: SignedRepo) -> None:
    run = build("-p", "demo-extra", name="mkimage-test-gpg/fail", config=signed_repo.config)
    assert run.returncode == 3, run.stderr
    assert run.error_line == (f"Error: GPG check failed: {OTHER_KEY}: public key 0x{signed_repo.other_key_id.upper()}"
                              " is not imported (the repository's gpgkey does not list it)"), run.stderr
    assert (f"hint: import the key that signed it (0x{signed_repo.other_key_id.upper()}): add its public key's URL"
            f" to the repository's gpgkey= (now: {(signed_repo.root / 'KEY-A.asc').as_uri()})\n") in run.stderr
    assert build.leftovers() == []


def test_every_failing_package_is_in_the_one_line(build: Builder, signed_repo: SignedRepo) -> None:
    run = build("-p", "demo-hello", "-p", "demo-extra", "-p", "demo-default",
                name="mkimage-test-gpg/fail", config=signed_repo.config)
    assert run.returncode == 3, run.stderr
    line = run.error_line
    assert f"{UNSIGNED} is not signed" in line and f"{TAMPERED}: bad signature" in line
    assert f"{OTHER_KEY}: public key 0x{signed_repo.other_key_id.upper()} is not imported" in line
    hints = [text.strip() for text in run.stderr.splitlines() if text.strip().startswith("hint: ")]
    assert len(hints) == 3  # unsigned, tampered, import the key
    assert build.leftovers() == []


def test_a_repository_without_gpgkey(build: Builder, signed_repo: SignedRepo) -> None:
    config = signed_repo.write_config("nokey.conf")
    config.write_text("".join(line for line in config.read_text().splitlines(True) if not line.startswith("gpgkey")))
    run = build(name="mkimage-test-gpg/fail", config=config)
    assert run.returncode == 3, run.stderr
    assert run.error_line == ("Error: GPG check failed: repository mkimage-demo has gpgcheck=1 but no gpgkey=, "
                              "and no key is imported"), run.stderr
    assert build.leftovers() == []


def test_an_unreadable_gpgkey(build: Builder, signed_repo: SignedRepo) -> None:
    config = signed_repo.write_config("missing.conf")
    config.write_text(config.read_text().replace("KEY-A.asc", "MISSING.asc"))
    run = build(name="mkimage-test-gpg/fail", config=config)
    assert run.returncode == 3, run.stderr
    assert run.error_line.startswith("Error: GPG check failed: a repository's gpgkey cannot be read: Curl error"), \
        run.stderr
    assert "MISSING.asc" in run.error_line
    assert build.leftovers() == []


def test_localpkg_gpgcheck_checks_a_local_rpm(build: Builder, signed_repo: SignedRepo) -> None:
    config = signed_repo.write_config("local.conf", main="localpkg_gpgcheck=1\n")
    run = build("-p", str(signed_repo.packages / UNSIGNED), name="mkimage-test-gpg/fail",
                config=config)
    assert run.returncode == 3, run.stderr
    assert run.error_line == f"Error: GPG check failed: {UNSIGNED} is not signed", run.stderr
    assert build.leftovers() == []


def test_keys_already_imported_but_not_for_this_package(signed_repo: SignedRepo, tmp_path: Path) -> None:
    """A second dnf run into a root where the repository's key is already imported: dnf's other wording.  (A
    mkimage build installs in one transaction into a fresh root, so this is dnf run directly.)"""
    root = tmp_path / "root"
    home = tmp_path / "home"
    home.mkdir()
    (home / ".rpmmacros").write_text("%_dbpath /var/lib/rpm\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "LC_ALL": "C"}
    dnf = ["dnf", "-c", str(signed_repo.config), f"--installroot={root}", "--releasever=/", "-y", "install"]
    first = subprocess.run([*dnf, "setup"], capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    second = subprocess.run([*dnf, "demo-extra"], capture_output=True, text=True, env=env)
    assert second.returncode == 1
    lines = (second.stdout + second.stderr).splitlines()
    assert any("are already installed but they are not correct for this package" in line for line in lines)
    key_url = (signed_repo.root / "KEY-A.asc").as_uri()
    assert gpgcheck.parse_failures(lines) == [GpgFailure(OTHER_KEY, WRONG_KEY, (key_url,))]
    inspected = gpgcheck.inspect(gpgcheck.parse_failures(lines)[0], signed_repo.packages / OTHER_KEY,
                                 lambda path: subprocess.run(gpgcheck.rpmkeys_argv(root, path), capture_output=True,
                                                             text=True, env=env).stdout)
    assert inspected.key_id == signed_repo.other_key_id
    assert inspected.describe() == (f"{OTHER_KEY}: public key 0x{signed_repo.other_key_id.upper()} is not imported "
                                   "(the repository's gpgkey does not list it)")


# ------------------------------------------------------------------------------------ parsing, without dnf
# dnf 4.14's lines, as printed here by the integration tests above (verified).
DNF_OUTPUT = """\
Downloading Packages:
Importing GPG key 0x2DBE8E69:
 Userid     : "mkimage-key-a <mkimage-key-a@mkimage.invalid>"
 From       : /srv/repo/KEY-A.asc
Key imported successfully
Problem opening package demo-default-1.0-1.noarch.rpm
Public key for demo-extra-1.0-1.noarch.rpm is not installed. Failing package is: demo-extra-1.0-1.noarch
 GPG Keys are configured as: file:///srv/repo/KEY-A.asc
Package demo-hello-1.0-1.noarch.rpm is not signed
Error: GPG check FAILED
""".splitlines()

# yum 3.4.3 (EL7) cannot run here.  Its sigCheckPkg has the same four sentences as dnf's (read in yum's source);
# it stops at the first failing package, without "GPG check FAILED", and puts the failing package and the keys
# on lines of their own after blank lines (_prov_key_data); librpm prints the NOKEY warning while yum reads the
# header.  The text below is built from that source and from EL7 output as widely quoted (reasoned, not run).
YUM3_NOT_IMPORTED = """\
warning: /var/cache/yum/x86_64/7/base/packages/demo-extra-1.0-1.noarch.rpm: Header V4 RSA/SHA512 Signature, \
key ID 40c0b422: NOKEY
Public key for demo-extra-1.0-1.noarch.rpm is not installed
Retrieving key from file:///etc/pki/rpm-gpg/RPM-GPG-KEY-demo
Importing GPG key 0x2DBE8E69:
 Userid     : "mkimage-key-a <mkimage-key-a@mkimage.invalid>"
 Package    : demo-release-1.0-1.noarch (@base)
 From       : /etc/pki/rpm-gpg/RPM-GPG-KEY-demo


Public key for demo-extra-1.0-1.noarch.rpm is not installed


 Failing package is: demo-extra-1.0-1.noarch
 GPG Keys are configured as: file:///etc/pki/rpm-gpg/RPM-GPG-KEY-demo
""".splitlines()

YUM3_WRONG_KEYS = """\
warning: /var/cache/yum/x86_64/7/base/packages/demo-extra-1.0-1.noarch.rpm: Header V4 RSA/SHA512 Signature, \
key ID 40c0b422: NOKEY
Public key for demo-extra-1.0-1.noarch.rpm is not installed


The GPG keys listed for the "Demo - Base" repository are already installed but they are not correct for this package.
Check that the correct key URLs are configured for this repository.


 Failing package is: demo-extra-1.0-1.noarch
 GPG Keys are configured as: file:///etc/pki/rpm-gpg/RPM-GPG-KEY-demo
""".splitlines()

# rpmkeys 4.18 --checksig --verbose on the tampered package (verified here).
RPMKEYS_TAMPERED = """\
/srv/repo/demo-default-1.0-1.noarch.rpm:
    Header V4 RSA/SHA512 Signature, key ID 2dbe8e69: OK
    Header SHA256 digest: OK
    Header SHA1 digest: OK
    Payload SHA256 ALT digest: BAD (Expected a9e4 != e13f)
    Payload SHA256 digest: BAD (Expected 060c != e13f)
    RSA signature: NOTFOUND
    MD5 digest: BAD (Expected 180b != edb9)
"""


def test_dnf_lines() -> None:
    assert gpgcheck.parse_failures(DNF_OUTPUT) == [
        GpgFailure(TAMPERED, BAD),
        GpgFailure(OTHER_KEY, NO_KEY, ("file:///srv/repo/KEY-A.asc",)),
        GpgFailure(UNSIGNED, NOT_SIGNED),
    ]


@pytest.mark.parametrize("lines", [YUM3_NOT_IMPORTED, YUM3_WRONG_KEYS])
def test_yum3_lines_name_the_package_and_its_key(lines: list[str]) -> None:
    failures = gpgcheck.parse_failures(lines)
    assert len(failures) == 1
    assert failures[0].file == OTHER_KEY and failures[0].reason in (NO_KEY, WRONG_KEY)
    assert failures[0].key_id == "40c0b422"
    assert failures[0].repo_keys == ("file:///etc/pki/rpm-gpg/RPM-GPG-KEY-demo",)
    assert gpgcheck.describe(failures).message == (
        f"GPG check failed: {OTHER_KEY}: public key 0x40C0B422 is not imported (the repository's gpgkey does not "
        "list it)")


def test_yum3_unsigned() -> None:
    failures = gpgcheck.parse_failures(["", "", f"Package {UNSIGNED} is not signed"])
    assert gpgcheck.describe(failures).message == f"GPG check failed: {UNSIGNED} is not signed"


def test_rpmkeys_output() -> None:
    assert gpgcheck.parse_rpmkeys(RPMKEYS_TAMPERED) == (
        "2dbe8e69", ("Payload SHA256 ALT digest", "Payload SHA256 digest", "MD5 digest"))
    assert gpgcheck.parse_rpmkeys("x.rpm:\n    Header V4 RSA/SHA512 Signature, key ID 40c0b422: NOKEY\n") == (
        "40c0b422", ())


def test_a_key_without_gpgkey_points_at_local_packages_too() -> None:
    """dnf's bare 'Public key ... is not installed': a repository without gpgkey=, or a local .rpm."""
    failure = GpgFailure(OTHER_KEY, NO_KEY, key_id="40c0b422")
    explanation = gpgcheck.describe([failure])
    assert explanation.message == (f"GPG check failed: {OTHER_KEY}: public key 0x40C0B422 is not imported "
                                   "(no gpgkey= lists a key for it)")
    assert "localpkg_gpgcheck" in explanation.hints[-1]


def test_inspect_asks_rpmkeys_only_about_signed_packages(tmp_path: Path) -> None:
    asked: list[Path] = []

    def checksig(path: Path) -> str:
        asked.append(path)
        return RPMKEYS_TAMPERED

    rpm = tmp_path / TAMPERED
    assert gpgcheck.inspect(GpgFailure(UNSIGNED, NOT_SIGNED), rpm, checksig) == GpgFailure(UNSIGNED, NOT_SIGNED)
    assert gpgcheck.inspect(GpgFailure(TAMPERED, BAD), None, checksig) == GpgFailure(TAMPERED, BAD)
    assert asked == []
    assert gpgcheck.inspect(GpgFailure(TAMPERED, BAD), rpm, checksig).bad[1] == "Payload SHA256 digest"


def test_other_failures_are_not_gpg_failures(tmp_path: Path) -> None:
    answer = ConfigAnswer(config=tmp_path / "yum.conf", package_manager="dnf", releasever="9", basearch="x86_64",
                          cachedir="/var/cache/dnf",
                          repos=(RepoAnswer("r", True, baseurl=("file:///nonexistent",), gpgkey=("file:///k.asc",)),))
    lines = ["No match for argument: vim", "Error: Unable to find a match: vim"]
    assert gpgcheck.explain(lines, answer=answer, cache=tmp_path, checksig=lambda path: "") is None
    fetch = ["Curl error (37): Couldn't read a file:// file for file:///k.asc [Couldn't open file /k.asc]"]
    explained = gpgcheck.explain(fetch, answer=answer, cache=tmp_path, checksig=lambda path: "")
    assert explained is not None and explained.message.endswith(fetch[0])


def test_find_file_does_not_follow_symlinks(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / UNSIGNED).write_bytes(b"")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "link").symlink_to(tmp_path / "elsewhere")
    assert gpgcheck.find_file(UNSIGNED, [tmp_path / "cache"]) is None
    assert gpgcheck.find_file(UNSIGNED, [tmp_path / "nonexistent", tmp_path]) == tmp_path / "elsewhere" / UNSIGNED
