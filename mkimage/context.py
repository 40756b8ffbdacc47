"""The build spec (what was asked, frozen, validated once) and the build context (state while building)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import sandbox
from .pkgmgr import InstallRequest, PackageManager
from .profile import Profile
from .result import BuildResult
from .run import BuildLog, run_captured, tool_env
from .ui import Reporter

SMOKE_DEFAULT = ("echo", "success")
SMOKE_EXPECTED = "success"
BUILD_ID_LABEL = "mkimage.build-id"


@dataclass(frozen=True)
class BuildSpec:
    name: str
    explicit_tag: str | None
    """-t, or the TAG of NAME:TAG; None means: detect the version from the rootfs."""
    config: Path
    package_manager: PackageManager
    releasever: str
    profile: Profile
    tmpdir: Path
    rootfs_in_memory: str = "auto"
    cache_dir: Path | None = None
    keep_rootfs: bool = False
    rootfs_only: bool = False
    smoke_test: bool = True
    smoke_cmd: tuple[str, ...] = SMOKE_DEFAULT
    allow_scriptlet_failures: bool = False
    sandbox: bool = True
    """Run the package manager and profile chroot commands under bwrap (--no-sandbox turns it off)."""

    @property
    def uses_docker(self) -> bool:
        return not self.rootfs_only


@dataclass
class BuildContext:
    spec: BuildSpec
    ui: Reporter
    log: BuildLog
    result: BuildResult
    workdir: Path | None = None
    image_id: str | None = None
    tagged: bool = False
    version: str | None = None
    _host_paths: list[str] | None = None

    @property
    def rootfs(self) -> Path:
        assert self.workdir is not None, "the rootfs stage has not run"
        return self.workdir / "rootfs"

    @property
    def tool_tmpdir(self) -> Path:
        """TMPDIR for the package manager and rpm: inside the work dir, so that what a killed dnf leaves
        (its scriptlet output file, say) goes with the rootfs instead of staying in the caller's $TMPDIR."""
        assert self.workdir is not None, "the rootfs stage has not run"
        return self.workdir / "tmp"

    @property
    def tool_env(self) -> dict[str, str]:
        return tool_env({"TMPDIR": str(self.tool_tmpdir)})

    @property
    def build_id(self) -> str:
        return self.result.build_id

    @property
    def profile(self) -> Profile:
        return self.spec.profile

    @property
    def smoke_container(self) -> str:
        return f"mkimage-smoke-{self.build_id}"

    def contained(self, argv: list[str]) -> list[str]:
        """The package manager's argv (or a host rpm's on the rootfs) in the sandbox, unless --no-sandbox."""
        if not self.spec.sandbox:
            return argv
        assert self.workdir is not None, "the rootfs stage has not run"
        if self._host_paths is None:
            self._host_paths = [*sandbox.config_paths(self.spec.config), *self._host_rpmdb()]
        return sandbox.package_manager_argv(argv, workdir=self.workdir, rootfs=self.rootfs,
                                            read_only=self._host_paths, top_level_links=sandbox.host_top_level_links())

    def _host_rpmdb(self) -> list[str]:
        result = run_captured(list(sandbox.HOST_RPMDB_ARGV), log=self.log, env=self.tool_env, timeout=60)
        db_path = result.stdout.strip()
        return [db_path] if result.ok and db_path.startswith("/") else []

    def contained_env(self, env: dict[str, str]) -> dict[str, str]:
        """env reduced to the sandbox's allow-list, unless --no-sandbox."""
        return sandbox.sandbox_env(env) if self.spec.sandbox else env

    def install_request(self) -> InstallRequest:
        return InstallRequest(
            config=self.spec.config, root=self.rootfs, releasever=self.spec.releasever,
            groups=self.profile.groups, packages=self.profile.packages, exclude=self.profile.exclude,
            keep_cache=self.spec.cache_dir is not None,
        )
