"""The build spec (what was asked, frozen, validated once) and the build context (state while building)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from . import sandbox
from .arch import Arch, arch_path, host, package_manager_flags
from .deliver import Delivery
from .engine import Engine
from .oci import Image, Output, Published
from .publish import RegistryOptions
from .installer import InstallRequest, PackageManager
from .installer.config import ConfigAnswer
from .installer.rpm import INSTALL_DBPATH, make_empty_database
from .profile import Profile
from .result import BuildResult
from .run import BuildLog, tool_env
from .sbom import SbomRequest
from .ui import Reporter

SMOKE_DEFAULT = ("echo", "success")
SMOKE_EXPECTED = "success"
BUILD_ID_LABEL = "mkimage.build-id"


@dataclass(frozen=True)
class ArchTarget:
    """One architecture asked for, with the package manager's reading of the config for it ($basearch, $arch)."""

    arch: Arch
    config_answer: ConfigAnswer


@dataclass(frozen=True)
class BuildSpec:
    name: str
    explicit_tag: str | None
    """-t, or the TAG of NAME:TAG; None means: detect the version from the rootfs."""
    config: Path
    package_manager: PackageManager
    releasever: str
    """--releasever as given: a version, or '/' (detect it from this host)."""
    config_answer: ConfigAnswer
    """The package manager's own reading of the config (repositories, variables, cache), asked in preflight."""
    profile: Profile
    tmpdir: Path
    rootfs_in_memory: str = "auto"
    cache_dir: Path | None = None
    keep_rootfs: bool = False
    rootfs_only: bool = False
    smoke_test: bool = True
    smoke_cmd: tuple[str, ...] = SMOKE_DEFAULT
    allow_scriptlet_failures: bool = False
    allow_rpmdb_mismatch: bool = False
    source_date_epoch: int | None = None
    """SOURCE_DATE_EPOCH as given; with --reproducible and none given, the build derives one."""
    reproducible: bool = False
    skip_unchanged: bool = False
    sboms: tuple[SbomRequest, ...] = ()
    engine: Engine | None = None
    """The container engine that imports, tests and tags the image; None with --rootfs-only or --engine none."""
    extra_tags: tuple[str, ...] = ()
    """--extra-tag: more tags for the same image, set only after the smoke test."""
    keep_replaced: bool = False
    sandbox: bool = True
    """Run the package manager and profile chroot commands under bwrap (--no-sandbox turns it off)."""
    outputs: tuple[Output, ...] = ()
    push: bool = False
    registry: RegistryOptions | None = None
    """How to reach the registry with --push (auth file, certificates, TLS verification)."""
    arch: Arch = field(default_factory=host)
    """The architecture this spec builds: one of `targets`."""
    targets: tuple[ArchTarget, ...] = ()
    """Every architecture asked for (--arch), in order; empty: this host's alone."""

    @property
    def multi_arch(self) -> bool:
        return len(self.targets) > 1

    def for_arch(self, target: ArchTarget) -> BuildSpec:
        """The spec of one architecture's build: its config answer; when there are several architectures, its own
        SBOM files and its own --cache-dir (DIR/ARCH: the architectures install side by side, each holding its
        cache's lock)."""
        if not self.multi_arch:
            return replace(self, arch=target.arch, config_answer=target.config_answer)
        sboms = tuple(replace(wanted, path=arch_path(wanted.path, target.arch)) for wanted in self.sboms)
        cache_dir = self.cache_dir / target.arch.name if self.cache_dir is not None else None
        return replace(self, arch=target.arch, config_answer=target.config_answer, sboms=sboms, cache_dir=cache_dir)

    @property
    def uses_engine(self) -> bool:
        return self.engine is not None

    @property
    def exports(self) -> bool:
        """An image leaves the rootfs: into an engine, an --output, or a registry."""
        return self.uses_engine or bool(self.outputs) or self.push


@dataclass
class BuildContext:
    spec: BuildSpec
    ui: Reporter
    log: BuildLog
    result: BuildResult
    workdir: Path | None = None
    image_id: str | None = None
    tagged: bool = False
    completed: bool = False
    epoch: int | None = None
    cache_lock: int | None = None
    """The --cache-dir's lock, held from the inputs stage to the end of the install."""
    cache_mount: Path | None = None
    oci_image: Image | None = None
    """The image mkimage wrote itself (for --output, --push, and a reproducible build's load)."""
    published: Published | None = None
    """What --output writes and --push pushes: the image, or an index of every architecture's image."""
    push_archive: Path | None = None
    """The reproducible build's SOURCE_DATE_EPOCH (given, or derived from the repositories); None otherwise."""
    """Every stage ran: with --rootfs-only the tree is the product, kept only then."""
    version: str | None = None
    arch_contexts: list[BuildContext] = field(default_factory=list, repr=False, compare=False)
    """A multi-architecture build's one context per architecture (mkimage.multiarch makes them); empty in a
    build of one architecture, which is its own."""
    whole: BuildContext | None = field(default=None, repr=False, compare=False)
    """The multi-architecture build this context is one architecture of (it shares its delivery)."""
    delivery: Delivery = field(default_factory=Delivery)
    """What the build staged, published and tagged, so that a late failure can put it back (deliver.py)."""
    _host_release_db: Path | None = None

    def __post_init__(self) -> None:
        if self.epoch is None:
            self.epoch = self.spec.source_date_epoch

    @property
    def per_arch(self) -> list[BuildContext]:
        """The context of each architecture's build: this one alone when there is one architecture."""
        return self.arch_contexts or [self]

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
    def tool_home(self) -> Path:
        """HOME for the package manager and rpm: its .rpmmacros pins the database to INSTALL_DBPATH in the
        rootfs, whatever this host's rpm would choose (Debian's: ~/.rpmdb)."""
        return self.workdir_path("home")

    @property
    def package_cache(self) -> Path:
        """The package manager's cache in the rootfs: the config's cachedir as the package manager resolves it."""
        return self.spec.config_answer.cache_in(self.rootfs)

    def workdir_path(self, name: str) -> Path:
        """A path in the build's work dir, beside the rootfs (removed with it)."""
        assert self.workdir is not None, "the rootfs stage has not run"
        return self.workdir / name

    @property
    def tool_env(self) -> dict[str, str]:
        extra = {"TMPDIR": str(self.tool_tmpdir), "HOME": str(self.tool_home)}
        if self.epoch is not None:  # rpm >= 4.18 takes its install times from it
            extra["SOURCE_DATE_EPOCH"] = str(self.epoch)
        return tool_env(extra)

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

    def contained(self, argv: list[str]) -> list[str]:
        """The package manager's argv (or a host rpm's on the rootfs) in the sandbox, unless --no-sandbox."""
        if not self.spec.sandbox:
            return argv
        assert self.workdir is not None, "the rootfs stage has not run"
        return sandbox.package_manager_argv(argv, workdir=self.workdir, rootfs=self.rootfs,
                                            read_only=self.spec.config_answer.host_paths(),
                                            top_level_links=sandbox.host_top_level_links(),
                                            mounted_at=self._host_release_view())

    def _host_release_view(self) -> dict[str, str]:
        """With --releasever=/ on a host that has no release package, dnf looks for one in the host's database:
        the sandbox shows it an empty one (made once, in the work dir), so that a host with no database at all
        behaves like one whose database holds no release package.  Nothing of the host's database is shown."""
        if self.releasever != "/":
            return {}
        if self._host_release_db is None:
            made = make_empty_database(self.workdir_path("host-rpmdb"), log=self.log, env=self.tool_env)
            if made is None:
                return {}
            self._host_release_db = made
        return {INSTALL_DBPATH: str(self._host_release_db)}

    @property
    def releasever(self) -> str | None:
        """What --releasever the package manager gets: the version given or detected in preflight; '/' in the
        sandbox when there is none (dnf then detects none, as on a host without a release package); without the
        sandbox, no flag (dnf finds none in the empty installroot)."""
        detected = self.spec.config_answer.releasever
        if detected:
            return detected
        return "/" if self.spec.sandbox else None

    def contained_env(self, env: dict[str, str]) -> dict[str, str]:
        """env reduced to the sandbox's allow-list, unless --no-sandbox."""
        return sandbox.sandbox_env(env) if self.spec.sandbox else env

    def install_request(self) -> InstallRequest:
        return InstallRequest(
            config=self.spec.config, root=self.rootfs, releasever=self.releasever,
            groups=self.profile.groups, packages=self.profile.packages, exclude=self.profile.exclude,
            keep_cache=self.spec.cache_dir is not None, arch_flags=package_manager_flags(self.spec.arch),
        )
