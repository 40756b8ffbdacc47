"""The core pipeline end to end: real dnf and rpm into a real installroot, a real docker daemon."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from conftest import (
    CORE_MANDATORY, DEMO_VERSION, ROOT, Builder, Repo, docker_out, host_mounts_mentioning, image_config, image_id,
    image_layer, mkimage, remove_image_refs, run_in_image, smoke_containers,
)
from hostview import fresh_host
from test_profile import SCRIPT_REMOVALS

pytestmark = pytest.mark.integration

DEFAULT_NAME = "mkimage-test/default"
VARS_FILE = Path("/etc/dnf/vars/mkimagetestvar")


@pytest.fixture(scope="module")
def default_build(repo: Repo, docker_daemon: None, tmp_path_factory: pytest.TempPathFactory):
    """One build as people type it, plus -p and -g, shared by the checks below, on this machine as a fresh one
    sees it (no rpm database, no vars) but for a yum var as Amazon Linux has one (in an overlay of /etc: the
    host's /etc is never written)."""
    tmpdir = tmp_path_factory.mktemp("default-tmp")
    report = tmpdir.parent / "default-report.json"
    scratch = tmp_path_factory.mktemp("default-hostview")
    wrapper = fresh_host(scratch, [f"{VARS_FILE}=demo-value\n"], [f"{VARS_FILE}=640"])
    run = mkimage("-y", str(repo.config), "--tmpdir", str(tmpdir), "-p", "demo-hello", "-g", "Core", "-g", "extras",
                  "--report", str(report), DEFAULT_NAME, wrapper=wrapper)
    yield run, json.loads(report.read_text()) if report.exists() else {}, tmpdir
    remove_image_refs(DEFAULT_NAME)


@pytest.fixture(scope="module")
def default_layer(default_build):
    run, _, _ = default_build
    assert run.returncode == 0, run.stderr
    return image_layer(f"{DEFAULT_NAME}:{DEMO_VERSION}",
                       read=["etc/sysconfig/network", "var/lib/demo-post/ran", "etc/dnf/vars/mkimagetestvar"])


def test_stdout_is_only_the_reference(default_build) -> None:
    run, report, tmpdir = default_build
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{DEFAULT_NAME}:{DEMO_VERSION}\n"
    assert "Error" not in run.stderr
    assert report["status"] == "success" and report["exit_code"] == 0
    assert report["reference"] == f"{DEFAULT_NAME}:{DEMO_VERSION}"
    assert report["image_id"] == image_id(f"{DEFAULT_NAME}:{DEMO_VERSION}")
    assert list(tmpdir.iterdir()) == [], "rootfs and log removed after a successful build"


def test_plain_progress_lines_without_a_tty(default_build) -> None:
    run, _, _ = default_build
    for stage in ("rootfs", "devices", "install", "profile", "export", "smoke", "tag", "cleanup"):
        assert f"mkimage[{stage}]" in run.stderr
    assert "summary image: mkimage-test/default:1.4.2" in run.stderr
    assert "\x1b[" not in run.stderr, "no terminal escapes in a log"


def test_only_mandatory_members_and_one_transaction(default_build) -> None:
    _, report, _ = default_build
    names = {p.rsplit("-", 2)[0] for p in report["packages"]}
    assert names == {*CORE_MANDATORY, "demo-extra", "demo-hello"}
    assert report["package_count"] == len(names)


def test_device_nodes_in_the_imported_layer(default_layer) -> None:
    from test_devices import EXPECTED
    assert stat.S_IMODE(default_layer["dev"].mode) == 0o755
    for name, (kind, major, minor, mode) in EXPECTED.items():
        member = default_layer[f"dev/{name}"]
        assert member.mode & 0o7777 == mode, name
        if kind == "c":
            assert member.type == tarfile.CHRTYPE and (member.devmajor, member.devminor) == (major, minor), name
        else:
            assert member.type == tarfile.FIFOTYPE, name


def test_numeric_owners_and_root_mode(default_layer) -> None:
    assert all(m.uname == "" and m.gname == "" for m in default_layer.members.values())
    assert all(m.uid == 0 for m in default_layer.members.values())
    assert default_layer[""].mode & 0o7777 == 0o755, "/ of the image is 0755, not mktemp's 0700"


def test_minimised_as_the_script(default_layer) -> None:
    for pattern in SCRIPT_REMOVALS:
        if pattern.endswith("/*"):
            assert default_layer.under(pattern[:-2]) == [], pattern
        else:
            real = pattern.replace("/sbin/", "/usr/sbin/")
            assert real not in default_layer, pattern
    assert default_layer.text("etc/sysconfig/network") == "NETWORKING=yes\nHOSTNAME=localhost.localdomain\n"


def test_post_scriptlet_ran_and_yum_vars_copied(default_layer) -> None:
    assert default_layer.text("var/lib/demo-post/ran").strip() == "ran"
    assert default_layer.text("etc/dnf/vars/mkimagetestvar") == "demo-value\n"
    assert default_layer["etc/dnf/vars/mkimagetestvar"].mode & 0o7777 == 0o640


def test_image_runs_and_has_bash_as_cmd(default_build) -> None:
    _, report, _ = default_build
    reference = f"{DEFAULT_NAME}:{DEMO_VERSION}"
    assert image_config(reference)["Cmd"] == ["/bin/bash"]
    assert run_in_image(reference, "hello").stdout == "hello from demo\n"
    assert run_in_image(reference, "/bin/sh", "-c", "echo $((6*7))").stdout == "42\n"
    assert smoke_containers(report["build_id"]) == []


def test_explicit_tag_and_name_tag(build: Builder) -> None:
    run = build("-t", "nightly", name="mkimage-test/tagged")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "mkimage-test/tagged:nightly\n"
    run = build(name="mkimage-test/tagged:pinned")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "mkimage-test/tagged:pinned\n"
    assert image_id("mkimage-test/tagged:nightly") and image_id("mkimage-test/tagged:pinned")


def test_no_version_found_warns_and_uses_the_name(build: Builder, tmp_path: Path) -> None:
    profile = tmp_path / "no-release.toml"
    profile.write_text('[files]\nremove = ["/etc/redhat-release", "/etc/system-release", "/etc/demo-release"]\n')
    run = build("--profile", str(profile), name="mkimage-test/noversion")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "mkimage-test/noversion:noversion\n"
    assert "warning: cannot detect the OS version" in run.stderr


def test_rootfs_only_builds_the_tree_and_no_image(build: Builder) -> None:
    run = build("--rootfs-only", name="mkimage-test/treeonly")
    assert run.returncode == 0, run.stderr
    rootfs = Path(run.stdout.strip())
    try:
        assert rootfs.parent.parent == build.tmpdir and (rootfs / "usr/bin/bash").is_file()
        assert stat.S_ISCHR(os.lstat(rootfs / "dev/null").st_mode)
        assert image_id("mkimage-test/treeonly:1.4.2") is None
    finally:
        shutil.rmtree(rootfs.parent)


def test_a_failed_rootfs_only_build_keeps_nothing(build: Builder) -> None:
    run = build("--rootfs-only", "-p", "no-such-package", name="mkimage-test/treeonly-fails")
    assert run.returncode == 3, run.stderr
    assert run.stdout == "" and build.leftovers() == []


def test_keep_rootfs(build: Builder, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    run = build("--keep-rootfs", "--report", str(report), name="mkimage-test/kept")
    assert run.returncode == 0, run.stderr
    data = json.loads(report.read_text())
    try:
        assert data["rootfs_kept"] and not data["rootfs_in_memory"]
        assert Path(data["rootfs"], "etc/demo-release").is_file()
        assert f"rootfs kept at {data['rootfs']}" in run.stderr
        assert run.stdout == "mkimage-test/kept:1.4.2\n"
    finally:
        shutil.rmtree(Path(data["rootfs"]).parent)


# -------------------------------------------------------------------------------------- failures
def assert_nothing_left(build: Builder, report: dict) -> None:
    assert build.leftovers() == [], "no rootfs or temp dir left"
    labelled = docker_out("image", "ls", "-q", "--filter", f"label=mkimage.build-id={report['build_id']}").split()
    assert labelled == [], "no image of the failed build left"
    assert smoke_containers(report["build_id"]) == []
    assert host_mounts_mentioning(str(build.tmpdir)) == []


def failed(build: Builder, tmp_path: Path, *args: str, name: str = "mkimage-test/fails", config: Path | None = None):
    report = tmp_path / "failed.json"
    run = build("--report", str(report), *args, name=name, config=config)
    return run, json.loads(report.read_text()) if report.exists() else None


@pytest.mark.parametrize("args, fragments", [
    (["-p", "no-such-package"], ["dnf install failed", "No match for argument: no-such-package"]),
    (["-g", "no-such-group"], ["a group is unknown", "Module or Group 'no-such-group' is not available."]),
])
def test_unknown_package_or_group(build: Builder, tmp_path: Path, args, fragments) -> None:
    run, report = failed(build, tmp_path, *args)
    assert run.returncode == 3, run.stderr
    assert run.stdout == ""
    error = run.stderr[run.stderr.index("Error: "):]
    assert error.splitlines()[0].startswith("Error: dnf install failed with exit code 1")
    for fragment in fragments:
        assert fragment in error
    log = Path(report["log_file"])
    assert f"full log: {log}" in error and "no-such" in log.read_text()
    assert log.parent == build.tmpdir
    assert report["status"] == "failed" and report["error_kind"] == "install-failed"
    assert_nothing_left(build, report)


def test_unreachable_repository(repo: Repo, build: Builder, tmp_path: Path) -> None:
    config = tmp_path / "broken.conf"
    config.write_text(repo.config.read_text().replace(f"file://{repo.root}/repo", "file:///nonexistent/repo"))
    run, report = failed(build, tmp_path, config=config)
    assert run.returncode == 3, run.stderr
    error = run.stderr[run.stderr.index("Error: "):]
    assert error.splitlines()[0] == "Error: dnf makecache failed with exit code 1: a repository cannot be reached"
    assert "Failed to download metadata for repo 'mkimage-demo'" in error
    assert_nothing_left(build, report)


def test_failing_post_scriptlet_fails_the_build(build: Builder, tmp_path: Path) -> None:
    run, report = failed(build, tmp_path, "-p", "demo-failpost")
    assert run.returncode == 3, run.stderr
    assert "Error: 1 package scriptlet(s) failed although the package manager exited 0" in run.stderr
    assert "%post of demo-failpost-1.0-1.noarch" in run.stderr and "--allow-scriptlet-failures" in run.stderr
    assert report["scriptlet_failures"] == ["%post of demo-failpost-1.0-1.noarch"]
    assert_nothing_left(build, report)


def test_failing_post_scriptlet_accepted_on_request(build: Builder, tmp_path: Path) -> None:
    report_path = tmp_path / "r.json"
    run = build("-p", "demo-failpost", "--allow-scriptlet-failures", "--report", str(report_path),
                name="mkimage-test/failpost")
    assert run.returncode == 0, run.stderr
    assert "warning: " in run.stderr and "demo-failpost" in run.stderr
    assert "summary scriptlet failed:" in run.stderr
    report = json.loads(report_path.read_text())
    assert "demo-failpost" in report["scriptlet_failures"][0]


def test_failed_smoke_test_never_replaces_the_good_image(build: Builder, tmp_path: Path) -> None:
    good = build(name="mkimage-test/atomic")
    assert good.returncode == 0, good.stderr
    good_id = image_id("mkimage-test/atomic:1.4.2")
    run, report = failed(build, tmp_path, "--smoke-cmd", "false", name="mkimage-test/atomic")
    assert run.returncode == 6, run.stderr
    assert "smoke test 'false' failed" in run.stderr and "was not tagged" in run.stderr
    assert image_id("mkimage-test/atomic:1.4.2") == good_id
    assert report["image_id"] and image_id(report["image_id"]) is None, "the untagged image was removed"
    assert_nothing_left(build, report)


def test_export_failure(build: Builder, tmp_path: Path) -> None:
    """docker import failing can't be caused for real without breaking the daemon: a wrapper fails it."""
    wrapper_dir = tmp_path / "bin"
    wrapper_dir.mkdir()
    real_docker = shutil.which("docker")
    wrapper = wrapper_dir / "docker"
    wrapper.write_text(f'#!/bin/sh\nif [ "$1" = import ]; then cat >/dev/null; echo "import refused" >&2; exit 1; fi\n'
                       f'exec {real_docker} "$@"\n')
    wrapper.chmod(0o755)
    report_path = tmp_path / "r.json"
    env = {**os.environ, "PATH": f"{wrapper_dir}:{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "mkimage", "-y", str(build.repo.config), "--tmpdir",
                           str(build.tmpdir), "--report", str(report_path), "mkimage-test/exportfail"],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 5, proc.stderr
    assert "Error: docker import failed with exit code 1" in proc.stderr and "import refused" in proc.stderr
    assert_nothing_left(build, json.loads(report_path.read_text()))


def test_rich_output_on_a_terminal(build: Builder) -> None:
    """With a TTY on stderr the output is rich (spinner, check marks, a table); stdout stays the reference."""
    import pty
    parent, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "mkimage", "-y", str(build.repo.config), "--tmpdir",
                             str(build.tmpdir), "mkimage-test/tty"], stdout=subprocess.PIPE, stderr=child,
                            stdin=subprocess.DEVNULL, cwd=ROOT)
    build.created.append("mkimage-test/tty")
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(parent, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    stdout, _ = proc.communicate(timeout=300)
    os.close(parent)
    screen = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, screen
    assert stdout == b"mkimage-test/tty:1.4.2\n"
    assert "✓ Installing packages" in screen and "mkimage summary" in screen


def processes_rooted_under(directory: Path) -> list[int]:
    """Processes whose root (chroot) or cwd lies under directory: a scriptlet still running, say."""
    found = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        for link in ("root", "cwd"):
            try:
                if os.readlink(proc_dir / link).startswith(str(directory)):
                    found.append(int(proc_dir.name))
            except OSError:
                continue
    return found


def wait_for_slow_post(proc: subprocess.Popen, tmpdir: Path) -> None:
    """Until demo-slow's %post has started in the rootfs (seen through mkimage's own mount namespace)."""
    seen_from_mkimage = Path(f"/proc/{proc.pid}/root") / str(tmpdir).lstrip("/")
    deadline = time.monotonic() + 120
    while not list(seen_from_mkimage.glob("mkimage-*/rootfs/var/lib/demo-slow/started")):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the slow %post never started"
        time.sleep(0.05)


@pytest.mark.parametrize("signum, memory, code", [
    (signal.SIGTERM, "never", 143),
    (signal.SIGTERM, "auto", 143),
    (signal.SIGINT, "auto", 130),
])
def test_interrupted_in_the_middle_of_an_install(build: Builder, tmp_path: Path, signum, memory, code) -> None:
    """dnf defers signals during a transaction and scriptlets ignore SIGINT: the whole group must go.
    What the killed dnf leaves (its scriptlet output file) must not stay in the caller's $TMPDIR either."""
    report_path = tmp_path / "r.json"
    callers_tmp = tmp_path / "callers-tmp"
    callers_tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "mkimage", "-y", str(build.repo.config), "--tmpdir",
                             str(build.tmpdir), "--rootfs-in-memory", memory, "-p", "demo-slow", "--report",
                             str(report_path), "mkimage-test/interrupted"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            cwd=ROOT, env={**os.environ, "TMPDIR": str(callers_tmp)})
    wait_for_slow_post(proc, build.tmpdir)
    assert processes_rooted_under(build.tmpdir), "the scriptlet is running"
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)  # the %post would sleep 600 s if it were left running
    assert proc.returncode == code, stderr
    assert stdout == ""
    assert f"Error: interrupted by {signal.Signals(signum).name}; the build was cleaned up" in stderr
    report = json.loads(report_path.read_text())
    assert report["status"] == "interrupted" and report["exit_code"] == code
    assert f"full log: {report['log_file']}" in stderr and Path(report["log_file"]).parent == build.tmpdir
    assert processes_rooted_under(build.tmpdir) == [], "no scriptlet or dnf left running"
    assert_nothing_left(build, report)
    assert list(callers_tmp.iterdir()) == []


def test_interrupted_during_the_smoke_test(build: Builder, tmp_path: Path) -> None:
    """A killed `docker run --rm` client leaves its container running: cleanup removes it, and the image."""
    report_path = tmp_path / "r.json"
    smoke_cmd = f"sleep {600 + os.getpid() % 1000}"  # this build's own: the docker daemon may be shared
    proc = subprocess.Popen([sys.executable, "-m", "mkimage", "-y", str(build.repo.config), "--tmpdir",
                             str(build.tmpdir), "--smoke-cmd", smoke_cmd, "--report", str(report_path),
                             "mkimage-test/smokeint"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            cwd=ROOT)
    deadline = time.monotonic() + 120
    while not smoke_containers(command=smoke_cmd):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the smoke container never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert image_id("mkimage-test/smokeint:1.4.2") is None
    assert_nothing_left(build, json.loads(report_path.read_text()))


def test_modes_do_not_depend_on_the_callers_umask(build: Builder, tmp_path: Path) -> None:
    """Directories mkimage makes itself (the yum vars' parents, the cache mount point) are 0755."""
    (tmp_path / "scratch").mkdir()
    wrapper = fresh_host(tmp_path / "scratch", [f"{VARS_FILE}=demo-value\n"], [f"{VARS_FILE}=640"])
    proc = subprocess.run([*wrapper, sys.executable, "-m", "mkimage", "-y", str(build.repo.config), "--tmpdir",
                           str(build.tmpdir), "--cache-dir", str(tmp_path / "cache"), "mkimage-test/umask"],
                          capture_output=True, text=True, cwd=ROOT, preexec_fn=lambda: os.umask(0o077))
    build.created.append("mkimage-test/umask")
    assert proc.returncode == 0, proc.stderr
    layer = image_layer("mkimage-test/umask:1.4.2")
    for directory in ("etc", "etc/dnf", "etc/dnf/vars", "var/cache", "var/cache/dnf"):
        assert layer[directory].mode & 0o7777 == 0o755, directory
    as_nobody = subprocess.run(["docker", "run", "--rm", "--user", "65534", "mkimage-test/umask:1.4.2",
                                "ls", "/etc/dnf/vars", "/var/cache/dnf"], capture_output=True, text=True)
    assert as_nobody.returncode == 0 and "mkimagetestvar" in as_nobody.stdout, as_nobody.stderr
