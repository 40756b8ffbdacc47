"""SBOMs: rpm query parsing, purls, the license translation, and SPDX / CycloneDX documents checked by the real
validators (spdx-tools, cyclonedx-python-lib), from a real dnf installroot queried with the real rpm."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from mkimage import sbom
from mkimage.sbom import ImageSubject, RpmPackage

from conftest import CORE_MANDATORY, Repo

DIGEST = "sha256:" + "ab" * 32
SUBJECT = ImageSubject("registry.example:5000/team/base", "9.3", DIGEST, 1_700_000_000)
OS_RELEASE = {"ID": "rocky", "VERSION_ID": "9.3"}

# Real License tags of EL7/EL8/EL9 and Fedora packages (legacy short names and SPDX), and what they become.
LICENSES = [
    ("GPLv3+", "GPL-3.0-or-later"),  # bash (EL9)
    ("ASL 2.0", "Apache-2.0"),  # openssl 3 (EL9)
    ("zlib and Boost", "Zlib AND BSL-1.0"),  # zlib (EL9)
    ("GPL-2.0-or-later", "GPL-2.0-or-later"),  # Fedora >= 38
    ("LGPLv2+ and LGPLv2+ with exceptions and GPLv2+ and GPLv2+ with exceptions and BSD and Inner-Net and ISC and "
     "Public Domain and GFDL",  # glibc (EL9)
     "LicenseRef-LGPLv2-plus-6d868587 AND LicenseRef-LGPLv2-plus-with-exceptions-17ab3b43 AND GPL-2.0-or-later "
     "AND LicenseRef-GPLv2-plus-with-exceptions-2b5a13da AND LicenseRef-BSD AND LicenseRef-Inner-Net AND ISC AND "
     "LicenseRef-Public-Domain-f6960be1 AND LicenseRef-GFDL"),
    ("GPLv2+ and LGPLv2+ with exceptions", "GPL-2.0-or-later AND LicenseRef-LGPLv2-plus-with-exceptions-17ab3b43"),
    ("GPL+ or Artistic", "GPL-1.0-or-later OR LicenseRef-Artistic"),  # perl modules
    ("(GPLv2+ or LGPLv3+) and MIT", "(GPL-2.0-or-later OR LGPL-3.0-or-later) AND MIT"),
    ("MIT AND (LGPL-2.1-or-later OR BSD-3-Clause)", "MIT AND (LGPL-2.1-or-later OR BSD-3-Clause)"),
    ("GPL-3.0-or-later WITH GCC-exception-3.1", "GPL-3.0-or-later WITH GCC-exception-3.1"),  # libgcc (Fedora)
    ("GPLv3+ with exceptions", "LicenseRef-GPLv3-plus-with-exceptions-dc718985"),
    ("GPLv2 with Classpath-exception-2.0", "GPL-2.0-only WITH Classpath-exception-2.0"),
    ("gpl-2.0+ OR mit", "GPL-2.0-or-later OR MIT"),  # deprecated id, any case
    ("BSD with advertising", "LicenseRef-BSD-with-advertising-90faf63b"),
    ("OpenLDAP", "LicenseRef-OpenLDAP"),
    ("GPLv2+, LGPLv2+", "LicenseRef-GPLv2-plus-LGPLv2-plus-190c5414"),  # not an expression: one LicenseRef
    ("(MIT or ISC", "LicenseRef-MIT-or-ISC-9d8971ee"),
    ("MIT and", "LicenseRef-MIT-and-a688cc2b"),
]


def package(name: str = "bash", **fields: object) -> RpmPackage:
    values: dict = dict(version="5.1.8", release="9.el9", arch="x86_64", license="GPLv3+", vendor="Rocky Enterprise",
                        sourcerpm=f"{name}-5.1.8-9.el9.src.rpm", digest=("SHA256", "cd" * 32),
                        url="https://www.gnu.org/software/bash", summary="The GNU Bourne Again shell",
                        buildtime=1_690_000_000, provides=(name,), requires=())
    values.update(fields)
    return RpmPackage(name=name, **values)


def spdx_errors(document: dict, tmp_path: Path) -> list[str]:
    """What spdx-tools says about the document, after writing it the way mkimage does and parsing it back."""
    path = tmp_path / "sbom.spdx.json"
    sbom.write_sbom(path, document)
    return [message.validation_message for message in validate_full_spdx_document(parse_file(str(path)))]


def cyclonedx_errors(document: dict) -> object:
    return JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document))


# ---------------------------------------------------------------------------------------------- rpm query
def record(*, name: str = "bash", epoch: str = "(none)", vendor: str = "(none)", sha256: str = "ef" * 32,
           sha1: str = "(none)", md5: str = "(none)", provides: str = "bash\x1d/bin/sh\x1d",
           requires: str = "glibc\x1drpmlib(FileDigests)\x1d") -> str:
    scalars = [name, epoch, "5.1.8", "9.el9", "x86_64", vendor, "GPLv3+", "bash-5.1.8-9.el9.src.rpm", sha256, sha1,
               md5, "https://www.gnu.org/software/bash", "The GNU Bourne Again shell", "1690000000", "(none)"]
    return "\x1f".join([*scalars, provides, requires]) + "\x1e"


def test_query_argv_asks_rpm_for_every_field_with_control_separators() -> None:
    argv = sbom.query_argv(["rpm", "--root", "/r", "--dbpath", "/var/lib/rpm"])
    assert argv[:6] == ["rpm", "--root", "/r", "--dbpath", "/var/lib/rpm", "-qa"]
    assert argv[6] == "--qf" and argv[7] == sbom.RPM_QUERY_FORMAT
    assert sbom.RPM_QUERY_FORMAT.startswith("%{NAME}\x1f%{EPOCH}\x1f%{VERSION}\x1f%{RELEASE}\x1f%{ARCH}\x1f")
    assert sbom.RPM_QUERY_FORMAT.endswith("[%{PROVIDENAME}\x1d]\x1f[%{REQUIRENAME}\x1d]\x1e")


def test_query_argv_without_sha256header_for_old_rpm() -> None:
    fmt = sbom.query_argv(["rpm"], sha256_header=False)[-1]
    assert "SHA256HEADER" not in fmt and "%{SHA1HEADER}" in fmt
    assert fmt.count("\x1f") == sbom.RPM_QUERY_FORMAT.count("\x1f")


def test_parse_query_reads_fields_and_absent_values() -> None:
    [parsed] = sbom.parse_query(record())
    assert parsed == RpmPackage(
        name="bash", version="5.1.8", release="9.el9", arch="x86_64", epoch=None, vendor=None, license="GPLv3+",
        sourcerpm="bash-5.1.8-9.el9.src.rpm", digest=("SHA256", "ef" * 32), url="https://www.gnu.org/software/bash",
        summary="The GNU Bourne Again shell", buildtime=1690000000, packager=None, provides=("/bin/sh", "bash"),
        requires=("glibc", "rpmlib(FileDigests)"))
    assert parsed.evr == "5.1.8-9.el9" and parsed.nevra == "bash-5.1.8-9.el9.x86_64"


def test_parse_query_epoch_digest_fallbacks_order_and_gpg_pubkey() -> None:
    out = "".join([record(name="zsh", epoch="2", vendor="Red Hat, Inc.", sha256="(none)", sha1="12" * 20),
                   record(name="gpg-pubkey"), record(name="acl", sha256="(none)", md5="AB" * 16)])
    acl, zsh = sbom.parse_query(out)
    assert (acl.name, acl.digest) == ("acl", ("MD5", "ab" * 16))
    assert (zsh.epoch, zsh.evr, zsh.vendor, zsh.digest) == (2, "2:5.1.8-9.el9", "Red Hat, Inc.", ("SHA1", "12" * 20))


def test_parse_query_rejects_output_of_another_format() -> None:
    with pytest.raises(sbom.QueryFormatError, match="expected 17"):
        sbom.parse_query("bash-5.1.8-9.el9.x86_64\n")


# ---------------------------------------------------------------------------------------------- purls
@pytest.mark.parametrize(("fields", "os_release", "expected"), [
    ({}, OS_RELEASE, "pkg:rpm/rocky/bash@5.1.8-9.el9?arch=x86_64&distro=rocky-9.3"),
    ({"epoch": 1}, {"ID": "Fedora", "VERSION_ID": "40"},
     "pkg:rpm/fedora/bash@5.1.8-9.el9?arch=x86_64&distro=fedora-40&epoch=1"),
    ({"epoch": 0}, {}, "pkg:rpm/linux/bash@5.1.8-9.el9?arch=x86_64&distro=linux&epoch=0"),
    ({"name": "libstdc++", "version": "11.4.1+git2~rc1^20230605", "arch": "noarch"}, {"ID": "centos"},
     "pkg:rpm/centos/libstdc%2B%2B@11.4.1%2Bgit2~rc1%5E20230605-9.el9?arch=noarch&distro=centos"),
    ({"name": "a b/c%d@e?f#g&h=i"}, OS_RELEASE,
     "pkg:rpm/rocky/a%20b%2Fc%25d%40e%3Ff%23g%26h%3Di@5.1.8-9.el9?arch=x86_64&distro=rocky-9.3"),
])
def test_rpm_purl(fields: dict, os_release: dict, expected: str) -> None:
    built = package(**fields)
    purl = built.purl(os_release)
    assert purl == expected
    parsed = PackageURL.from_string(purl)  # the reference implementation reads back every component
    assert (parsed.type, parsed.name, parsed.version) == ("rpm", built.name, f"{built.version}-{built.release}")
    assert parsed.qualifiers.get("epoch") == (None if built.epoch is None else str(built.epoch))
    assert parsed.qualifiers["arch"] == built.arch


@pytest.mark.parametrize(("subject", "expected"), [
    (SUBJECT, f"pkg:oci/base@{DIGEST}?repository_url=registry.example:5000%2Fteam%2Fbase&tag=9.3"),
    (ImageSubject("centos72", "7.2.1511", DIGEST, 0), f"pkg:oci/centos72@{DIGEST}?tag=7.2.1511"),
    (ImageSubject("team/Base", "x", DIGEST, 0), f"pkg:oci/base@{DIGEST}?tag=x"),
    (ImageSubject("centos72", "7", None, 0), None),
])
def test_oci_purl(subject: ImageSubject, expected: str | None) -> None:
    assert subject.purl() == expected
    if expected:
        parsed = PackageURL.from_string(expected)
        assert parsed.version == DIGEST and parsed.qualifiers["tag"] == subject.tag


# ---------------------------------------------------------------------------------------------- licenses
@pytest.mark.parametrize(("rpm_license", "expected"), LICENSES)
def test_spdx_license(rpm_license: str, expected: str) -> None:
    expression, refs = sbom.spdx_license(rpm_license)
    assert expression == expected
    assert sorted(ref.license_id for ref in refs) == sorted(
        {token.strip("()") for token in expected.split() if token.startswith(("LicenseRef-", "(LicenseRef-"))})
    assert all(ref.text in rpm_license for ref in refs)


def test_spdx_license_absent_is_noassertion() -> None:
    assert sbom.spdx_license(None) == ("NOASSERTION", [])
    assert sbom.spdx_license("  ") == ("NOASSERTION", [])


def test_bundled_spdx_ids_are_accepted_by_both_validators() -> None:
    """spdx_ids.py must never hold an id either validator would reject (regenerate with scripts/update-spdx-ids.py)."""
    from importlib import resources

    from license_expression import get_spdx_licensing
    enum = set(json.loads(resources.files("cyclonedx.schema._res").joinpath("spdx.SNAPSHOT.schema.json")
                          .read_text())["enum"])
    known = {symbol.key for symbol in get_spdx_licensing().known_symbols.values()}
    ours = sbom.LICENSE_IDS | sbom.EXCEPTION_IDS | set(sbom.DEPRECATED_IDS.values()) | set(sbom.LEGACY_NAMES.values())
    assert ours <= enum and ours <= known
    assert {"MIT", "GPL-2.0-or-later", "Apache-2.0", "Zlib", "BSL-1.0"} <= sbom.LICENSE_IDS


def test_documents_with_every_license_of_the_table_are_valid(tmp_path: Path) -> None:
    packages = [package(f"pkg{index}", license=rpm_license) for index, (rpm_license, _) in enumerate(LICENSES)]
    spdx = sbom.spdx_document(packages, SUBJECT, OS_RELEASE)
    assert spdx_errors(spdx, tmp_path) == []
    assert cyclonedx_errors(sbom.cyclonedx_document(packages, SUBJECT, OS_RELEASE)) is None
    extracted = {info["licenseId"]: info["extractedText"] for info in spdx["hasExtractedLicensingInfos"]}
    assert extracted["LicenseRef-Public-Domain-f6960be1"] == "Public Domain"
    by_name = {entry["name"]: entry for entry in spdx["packages"]}
    assert by_name["pkg3"]["licenseDeclared"] == "GPL-2.0-or-later" and "licenseComments" not in by_name["pkg3"]
    assert by_name["pkg1"]["licenseComments"] == "RPM License tag: ASL 2.0"  # the original is kept when translated


# ---------------------------------------------------------------------------------------------- documents
def test_spdx_document_shape(tmp_path: Path) -> None:
    bash = package(requires=("glibc", "rpmlib(FileDigests)", "(foo if bar)"))
    glibc = package("glibc", epoch=2, vendor="Vendor (Labs)", provides=("glibc", "libc.so.6()(64bit)"),
                    digest=None, url="not a url")
    document = sbom.spdx_document([bash, glibc], SUBJECT, OS_RELEASE, tool="mkimage-9.9")
    assert spdx_errors(document, tmp_path) == []
    assert document["creationInfo"]["created"] == "2023-11-14T22:13:20Z"
    assert document["creationInfo"]["creators"] == ["Tool: mkimage-9.9"]
    assert document["documentDescribes"] == ["SPDXRef-Image"]
    image, bash_entry, glibc_entry = document["packages"]
    assert image["checksums"] == [{"algorithm": "SHA256", "checksumValue": "ab" * 32}]
    assert image["externalRefs"][0]["referenceLocator"] == SUBJECT.purl()
    assert bash_entry["versionInfo"] == "5.1.8-9.el9" and glibc_entry["versionInfo"] == "2:5.1.8-9.el9"
    assert bash_entry["supplier"] == "Organization: Rocky Enterprise"
    assert glibc_entry["supplier"] == "Organization: Vendor [Labs]"
    assert bash_entry["checksums"] == [{"algorithm": "SHA256", "checksumValue": "cd" * 32}]
    assert "checksums" not in glibc_entry and "homepage" not in glibc_entry
    assert bash_entry["sourceInfo"] == "built from the source RPM bash-5.1.8-9.el9.src.rpm"
    assert glibc_entry["externalRefs"][0]["referenceLocator"].endswith("&epoch=2")
    relations = {(r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"])
                 for r in document["relationships"]}
    assert relations == {("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image"),
                         ("SPDXRef-Image", "CONTAINS", bash_entry["SPDXID"]),
                         ("SPDXRef-Image", "CONTAINS", glibc_entry["SPDXID"]),
                         (bash_entry["SPDXID"], "DEPENDS_ON", glibc_entry["SPDXID"])}


def test_cyclonedx_document_shape() -> None:
    bash = package(requires=("glibc",))
    glibc = package("glibc", epoch=2, license="LGPLv2+ and MIT", provides=("glibc",))
    document = sbom.cyclonedx_document([bash, glibc], SUBJECT, OS_RELEASE)
    assert cyclonedx_errors(document) is None
    assert document["metadata"]["component"]["purl"] == SUBJECT.purl()
    bash_entry, glibc_entry = document["components"]
    assert bash_entry["licenses"] == [{"license": {"id": "GPL-3.0-or-later", "acknowledgement": "declared"}}]
    assert glibc_entry["licenses"] == [{"license": {"name": "LGPLv2+ and MIT", "acknowledgement": "declared"}}]
    assert glibc_entry["version"] == "2:5.1.8-9.el9" and glibc_entry["bom-ref"] == glibc.purl(OS_RELEASE)
    assert document["dependencies"] == [
        {"ref": "image", "dependsOn": sorted([bash.purl(OS_RELEASE), glibc.purl(OS_RELEASE)])},
        {"ref": bash.purl(OS_RELEASE), "dependsOn": [glibc.purl(OS_RELEASE)]},
        {"ref": glibc.purl(OS_RELEASE), "dependsOn": []},
    ]


@pytest.mark.parametrize("build", [sbom.spdx_document, sbom.cyclonedx_document])
def test_documents_are_deterministic_and_identified_by_content(build, tmp_path: Path) -> None:
    packages = [package(), package("glibc")]
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    sbom.write_sbom(first, build(packages, SUBJECT, OS_RELEASE))
    sbom.write_sbom(second, build(list(reversed(packages)), SUBJECT, OS_RELEASE))
    assert first.read_bytes() == second.read_bytes()
    assert first.read_text().endswith("}\n")
    identifier = "documentNamespace" if build is sbom.spdx_document else "serialNumber"
    other = build(packages[:1], SUBJECT, OS_RELEASE)
    assert other[identifier] != json.loads(first.read_text())[identifier]


def test_write_sbom_replaces_atomically_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "sbom.json"
    target.write_text("old")
    sbom.write_sbom(target, {"a": 1})
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sbom.json"]
    assert (target.stat().st_mode & 0o777) == 0o644
    with pytest.raises(TypeError):
        sbom.write_sbom(target, {"a": object()})
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sbom.json"]


# ---------------------------------------------------------------------------------------------- os-release
def test_read_os_release_falls_back_and_stays_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "usr/lib").mkdir(parents=True)
    assert sbom.read_os_release(root) == {}
    (root / "usr/lib/os-release").write_text('NAME="Rocky Linux"\nID="rocky"\nVERSION_ID=\'9.3\'\n# comment\nBAD\n')
    os.symlink("../../../../../../etc/os-release", root / "etc/os-release")  # would be the host's file outside
    assert sbom.read_os_release(root) == {"NAME": "Rocky Linux", "ID": "rocky", "VERSION_ID": "9.3"}
    os.unlink(root / "etc/os-release")
    os.symlink("/usr/lib/os-release", root / "etc/os-release")  # absolute: re-rooted
    assert sbom.read_os_release(root)["ID"] == "rocky"
    os.unlink(root / "etc/os-release")
    (root / "etc/os-release").write_text("ID=fedora\nVERSION_ID=40\n")
    assert sbom.distro_name(sbom.read_os_release(root)) == "fedora-40"


# ---------------------------------------------------------------------------------------------- real rpm
TRICKY_SPEC = """\
Name: libdemo++
Epoch: 3
Version: 2.0+g1~rc1
Release: 4.el9_2
Summary: SBOM test package: epoch, '+' and '~', a legacy license, a vendor with parentheses
License: GPLv2+ and BSD with advertising and (MIT or ASL 2.0)
Vendor: Demo Vendor (tests), Inc.
URL: https://example.invalid/libdemo
BuildArch: noarch
AutoReqProv: no
Requires: bash
Provides: libdemo

%description
SBOM test package.

%install
mkdir -p %{buildroot}/usr/lib
printf 'NAME="Demo"\\nID="demo"\\nVERSION_ID="1.4"\\n' > %{buildroot}/usr/lib/os-release

%files
%attr(0644,root,root) /usr/lib/os-release
"""


@pytest.fixture(scope="module")
def tricky_rpm(repo: Repo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    top = tmp_path_factory.mktemp("rpmbuild")
    spec = top / "libdemo.spec"
    spec.write_text(TRICKY_SPEC)
    subprocess.run(["rpmbuild", "-bb", "--nodeps", "--quiet", "--define", f"_topdir {top}",
                    "--define", f"_rpmdir {top}/out", "--define", "_build_name_fmt %%{NAME}.rpm",
                    "--define", "debug_package %{nil}", "--define", "__os_install_post %{nil}", str(spec)],
                   check=True, capture_output=True)
    return top / "out" / "libdemo++.rpm"


@pytest.fixture(scope="module")
def installroot(repo: Repo, tricky_rpm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """@Core of the test repository plus the tricky package, installed by the real dnf into /var/lib/rpm."""
    base = tmp_path_factory.mktemp("sbom-root")
    home, root = base / "home", base / "root"
    home.mkdir()
    (home / ".rpmmacros").write_text("%_dbpath /var/lib/rpm\n")
    subprocess.run(["dnf", "-q", "-c", str(repo.config), f"--installroot={root}", "--releasever=/",
                    "--setopt=install_weak_deps=False", "--setopt=tsflags=nodocs", "-y", "install", "@Core",
                    str(tricky_rpm)], check=True, capture_output=True, env={**os.environ, "HOME": str(home)})
    os.symlink("/etc/os-release", root / "etc/os-release")  # a loop inside the root; the host's file must not count
    return root


@pytest.mark.integration
def test_sbom_of_a_real_installroot_is_valid_and_complete(installroot: Path, tmp_path: Path) -> None:
    argv = sbom.query_argv(["rpm", "--root", str(installroot), "--dbpath", "/var/lib/rpm"])
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    packages = sbom.parse_query(out)
    os_release = sbom.read_os_release(installroot)
    assert os_release["ID"] == "demo"
    nevras = subprocess.run(["rpm", "--root", str(installroot), "--dbpath", "/var/lib/rpm", "-qa", "--qf",
                             "%{NAME} %|EPOCH?{%{EPOCH}:}|%{VERSION}-%{RELEASE}\\n"],
                            check=True, capture_output=True, text=True).stdout.splitlines()
    installed = dict(line.split(" ", 1) for line in nevras)
    assert set(installed) == {p.name for p in packages} >= {*CORE_MANDATORY, "libdemo++"}

    spdx = sbom.spdx_document(packages, SUBJECT, os_release)
    assert spdx_errors(spdx, tmp_path) == []
    cyclonedx = sbom.cyclonedx_document(packages, SUBJECT, os_release)
    assert cyclonedx_errors(cyclonedx) is None

    spdx_by_name = {entry["name"]: entry for entry in spdx["packages"][1:]}
    cdx_by_name = {entry["name"]: entry for entry in cyclonedx["components"]}
    for name, evr in installed.items():
        assert spdx_by_name[name]["versionInfo"] == evr == cdx_by_name[name]["version"]
        assert len(spdx_by_name[name]["checksums"][0]["checksumValue"]) == 64  # rpm's SHA256HEADER
    tricky = spdx_by_name["libdemo++"]
    purl = "pkg:rpm/demo/libdemo%2B%2B@2.0%2Bg1~rc1-4.el9_2?arch=noarch&distro=demo-1.4&epoch=3"
    assert tricky["externalRefs"][0]["referenceLocator"] == purl == cdx_by_name["libdemo++"]["purl"]
    assert tricky["versionInfo"] == "3:2.0+g1~rc1-4.el9_2"
    assert tricky["supplier"] == "Organization: Demo Vendor [tests], Inc."
    assert tricky["licenseDeclared"] == ("GPL-2.0-or-later AND LicenseRef-BSD-with-advertising-90faf63b AND "
                                         "(MIT OR Apache-2.0)")
    assert tricky["sourceInfo"] == "built from the source RPM libdemo++-2.0+g1~rc1-4.el9_2.src.rpm"
    ids = {entry["name"]: entry["SPDXID"] for entry in spdx["packages"]}
    depends = {(r["spdxElementId"], r["relatedSpdxElement"]) for r in spdx["relationships"]
               if r["relationshipType"] == "DEPENDS_ON"}
    assert (ids["libdemo++"], ids["bash"]) in depends and (ids["bash"], ids["glibc"]) in depends
    contained = {r["relatedSpdxElement"] for r in spdx["relationships"] if r["relationshipType"] == "CONTAINS"}
    assert contained == {ids[name] for name in installed}


def test_the_validators_reject_a_raw_legacy_license(tmp_path: Path) -> None:
    """The translation is needed, and the validators in these tests are live: an untranslated tag fails both."""
    spdx = sbom.spdx_document([package()], SUBJECT, OS_RELEASE)
    spdx["packages"][1]["licenseDeclared"] = "GPLv2+"
    assert any("GPLv2+" in error for error in spdx_errors(spdx, tmp_path))
    cyclonedx = sbom.cyclonedx_document([package()], SUBJECT, OS_RELEASE)
    cyclonedx["components"][0]["licenses"] = [{"license": {"id": "GPLv2+"}}]
    assert cyclonedx_errors(cyclonedx) is not None
