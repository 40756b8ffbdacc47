"""The build spec (what was asked, frozen, validated once) and the build context (state while building)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .engine import Engine
from .pkgmgr import InstallRequest, PackageManager
from .profile import Profile
from .result import BuildResult
from .run import BuildLog, tool_env
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
    engine: Engine | None = None
    """The container engine that imports, tests and tags the image; None: no image (--rootfs-only)."""
    extra_tags: tuple[str, ...] = ()
    """--extra-tag: more tags for the same image, set only after the smoke test."""
    keep_replaced: bool = False

    @property
    def uses_engine(self) -> bool:
        return self.engine is not None


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
    def engine(self) -> Engine:
        assert self.spec.engine is not None, "this build has no container engine"
        return self.spec.engine

    @property
    def references(self) -> list[str]:
        """NAME:TAG, then NAME:EXTRA for each --extra-tag, without repeats."""
        extras = [f"{self.spec.name}:{tag}" for tag in self.spec.extra_tags]
        return list(dict.fromkeys([self.result.reference, *extras]))

    @property
    def smoke_container(self) -> str:
        return f"mkimage-smoke-{self.build_id}"

    def install_request(self) -> InstallRequest:
        return InstallRequest(
            config=self.spec.config, root=self.rootfs, releasever=self.spec.releasever,
            groups=self.profile.groups, packages=self.profile.packages, exclude=self.profile.exclude,
            keep_cache=self.spec.cache_dir is not None,
        )
