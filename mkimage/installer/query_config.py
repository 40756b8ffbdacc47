"""Asks the package manager how it reads a config: run by the package manager's own interpreter, never imported.

mkimage runs this file with the interpreter named in the package manager's `#!` line (Debian's dnf:
/usr/bin/python3; EL8's: /usr/libexec/platform-python; EL7's yum: /usr/bin/python, Python 2), so that the dnf or
yum module that will run the build answers: which repositories are enabled, their URLs and key files with every
variable substituted, the cache directory, the release version it detects.  It prints one JSON document on stdout.
It reads only: no metadata is fetched, nothing is written, the host's rpm database is opened only to detect the
release version and only when it holds a database (a host without one behaves like one whose database holds no
release package).

Python 2.7 and 3 (EL7's yum), hence no annotations or f-strings.
Usage: python query_config.py dnf|yum CONFIG RELEASEVER|/ INSTALLROOT HOST_DBPATH [FORCEARCH]
(FORCEARCH: the architecture of a foreign build, as `dnf --forcearch` takes it; '' or absent: this host's.)
"""

import json
import logging
import os
import shutil
import sys
import tempfile

DB_FILES = ("rpmdb.sqlite", "Packages.db", "Packages")
REPO_PATH_OPTIONS = ("sslcacert", "sslclientcert", "sslclientkey")


class Collector(logging.Handler):
    """Keeps what dnf says about options it does not know, or values it rejects."""

    def __init__(self):
        logging.Handler.__init__(self, logging.DEBUG)
        self.unknown = []
        self.invalid = []

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Unknown configuration option: "):
            self.unknown.append(message[len("Unknown configuration option: "):])
        elif message.startswith("Invalid configuration value: "):
            self.invalid.append(message[len("Invalid configuration value: "):])


def host_has_database(dbpath):
    return any(os.path.isfile(os.path.join(dbpath, name)) for name in DB_FILES)


def detect_on_a_copy(host_dbpath, detect):
    """detect() with rpm pointed at a private copy of the host's database: a sqlite database in WAL mode cannot
    be opened on the read-only mount this runs on, and the host's files are never opened for writing.  The copy
    goes to /dev/shm (the sandbox's own) and is removed."""
    import rpm
    scratch = tempfile.mkdtemp(prefix="mkimage-hostdb-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    try:
        copy = os.path.join(scratch, "rpmdb")
        shutil.copytree(host_dbpath, copy, symlinks=True)
        rpm.addMacro("_dbpath", copy)
        return detect()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def as_list(value):
    """A list option as dnf (libdnf's VectorString) or yum 3 (a list) holds it; a lone string is one item
    (str or Python 2's unicode: both have strip)."""
    if not value:
        return []
    if hasattr(value, "strip"):
        return [str(value)]
    return [str(item) for item in value if item]


def as_text(value):
    return str(value) if value else ""


def repo_document(repo):
    """One repository as dnf's RepoConf or yum 3's YumRepository holds it (the same attribute names)."""
    return {
        "id": repo.id,
        "enabled": bool(repo.enabled),
        "baseurl": as_list(repo.baseurl),
        "mirrorlist": as_text(repo.mirrorlist),
        "metalink": as_text(getattr(repo, "metalink", "")),
        "gpgcheck": bool(repo.gpgcheck),
        "gpgkey": as_list(repo.gpgkey),
        "paths": [as_text(getattr(repo, option, "")) for option in REPO_PATH_OPTIONS
                  if as_text(getattr(repo, option, ""))],
        "file": as_text(getattr(repo, "repofile", "")),
    }


# --------------------------------------------------------------------------------------------------- dnf
def force_arch(conf, forcearch):
    """As `--forcearch=ARCH` does it (dnf.cli's option parser sets ignorearch and arch, Conf's arch setter the
    $arch and $basearch substitutions)."""
    import dnf.conf

    conf._set_value("ignorearch", True, dnf.conf.PRIO_COMMANDLINE)
    conf.arch = forcearch


def dnf_answer(config, releasever, installroot, host_dbpath, forcearch=""):
    import dnf
    import dnf.conf
    import dnf.rpm
    import libdnf.conf

    collector = Collector()
    logger = logging.getLogger("dnf")
    logger.addHandler(collector)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False

    # As dnf.cli.cli.Cli._read_conf_file does it, step for step, for `-c CONFIG --installroot=ROOT`.
    conf = dnf.conf.Conf()
    conf._set_value("config_file_path", config, dnf.conf.PRIO_COMMANDLINE)
    conf._set_value("installroot", installroot, dnf.conf.PRIO_COMMANDLINE)
    if forcearch:  # Conf._configure_from_options, before the config is read
        force_arch(conf, forcearch)
    conf.read(priority=dnf.conf.PRIO_MAINCONFIG)
    from_root = conf._search_inside_installroot("reposdir")
    conf.substitutions.update_from_etc(from_root, varsdir=conf._get_value("varsdir"))
    if forcearch:  # dnf.cli.Cli.configure sets it again once the config is read
        conf.arch = forcearch
    if releasever == "/":
        releasever = None
        if host_has_database(host_dbpath):
            releasever = detect_on_a_copy(host_dbpath, lambda: dnf.rpm.detect_releasever("/"))
    if releasever:
        conf.releasever = releasever
    cachedir = libdnf.conf.ConfigParser.substitute(conf._get_value("cachedir"), conf.substitutions)

    base = dnf.Base(conf)
    base.read_all_repos()
    repos = [repo_document(repo) for repo in sorted(base.repos.values(), key=lambda item: item.id)]
    return {
        "package_manager": "dnf",
        "version": dnf.const.VERSION,
        "releasever": conf.releasever,
        "basearch": conf.substitutions.get("basearch"),
        "arch": conf.substitutions.get("arch"),
        "cachedir": cachedir,
        "reposdir": as_list(conf._get_value("reposdir")),
        "varsdir": as_list(conf._get_value("varsdir")),
        "gpgcheck": bool(conf.gpgcheck),
        "repos": repos,
        "unknown_options": collector.unknown,
        "invalid_values": collector.invalid,
    }


# --------------------------------------------------------------------------------------------------- yum 3
def yum_answer(config, releasever, installroot, host_dbpath, forcearch=""):
    import yum

    base = yum.YumBase()
    base.preconf.fn = config
    base.preconf.root = installroot
    base.preconf.init_plugins = False
    base.preconf.debuglevel = 0
    base.preconf.errorlevel = 0
    if releasever == "/":
        releasever = None
        if host_has_database(host_dbpath):
            import yum.config
            startup = yum.config.readStartupConfig(config, "/")
            releasever = detect_on_a_copy(host_dbpath, lambda: yum.config._getsysver("/", startup.distroverpkg))
    if releasever:
        base.preconf.releasever = releasever
    conf = base.conf
    cachedir = conf.cachedir
    if installroot != "/" and cachedir.startswith(installroot):
        cachedir = "/" + cachedir[len(installroot):].lstrip("/")
    repos = [repo_document(repo) for repo in sorted(base.repos.repos.values(), key=lambda item: item.id)]
    return {
        "package_manager": "yum",
        "version": getattr(yum, "__version__", ""),
        "releasever": conf.yumvar.get("releasever"),
        "basearch": conf.yumvar.get("basearch"),
        "arch": conf.yumvar.get("arch"),
        "cachedir": cachedir,
        "reposdir": as_list(conf.reposdir),
        "varsdir": as_list(getattr(conf, "yumvarsdir", ["/etc/yum/vars"])),
        "gpgcheck": bool(conf.gpgcheck),
        "repos": repos,
        "unknown_options": [],
        "invalid_values": [],
    }


def main(argv):
    manager, config, releasever, installroot, host_dbpath = argv[1:6]
    forcearch = argv[6] if len(argv) > 6 else ""
    answer = yum_answer if manager == "yum" else dnf_answer
    try:
        document = answer(config, releasever, installroot, host_dbpath, forcearch)
    except Exception as err:  # dnf's own sentence (ConfigError, a repo file it cannot parse) is the answer
        document = {"error": str(err) or err.__class__.__name__}
    sys.stdout.write(json.dumps(document))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
