import pytest

from mkimage.reference import fallback_tag, name_problem, split_reference, tag_problem, version_from_release


@pytest.mark.parametrize("name", [
    "centos72", "centos", "library/centos", "registry.example.com/team/base", "localhost:5000/base",
    "a_b", "a__b", "a-b", "a---b", "a.b", "x" * 200,
])
def test_valid_names(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize("name, fragment", [
    ("CentOS", "use lowercase"),
    ("cent os", "invalid image name"),
    ("base;rm -rf /", "invalid image name"),
    ("$(reboot)", "invalid image name"),
    ("a/../b", "invalid image name"),
    ("-lead", "invalid image name"),
    ("trail-", "invalid image name"),
    ("a@sha256:abcd", "digest"),
    ("", "empty"),
    ("x" * 256, "longer than 255"),
])
def test_invalid_names(name: str, fragment: str) -> None:
    problem = name_problem(name)
    assert problem is not None and fragment in problem


@pytest.mark.parametrize("tag, ok", [
    ("7.2.1511", True), ("latest", True), ("v1_2-3", True), ("A" * 128, True),
    (".hidden", False), ("-x", False), ("a" * 129, False), ("has space", False), ("a:b", False),
])
def test_tags(tag: str, ok: bool) -> None:
    assert (tag_problem(tag) is None) is ok


@pytest.mark.parametrize("reference, name, tag", [
    ("centos72", "centos72", None),
    ("centos72:7", "centos72", "7"),
    ("localhost:5000/base", "localhost:5000/base", None),
    ("localhost:5000/base:1.0", "localhost:5000/base", "1.0"),
])
def test_split_reference(reference: str, name: str, tag: str | None) -> None:
    ref = split_reference(reference)
    assert (ref.name, ref.tag) == (name, tag)


@pytest.mark.parametrize("text, version", [
    ("CentOS Linux release 7.2.1511 (Core)", "7.2.1511"),
    ("CentOS release 6.10 (Final)\n", "6.10"),
    ("Red Hat Enterprise Linux release 9.4 (Plow)", "9.4"),
    ("Amazon Linux release 2 (Karoo)", "2"),
    ("Fedora release 40 (Forty)", "40"),
    ("Rolling release (no number)", None),
])
def test_version_from_release(text: str, version: str | None) -> None:
    assert version_from_release(text) == version


def test_fallback_tag_is_a_valid_tag() -> None:
    assert fallback_tag("centos72") == "centos72"
    assert fallback_tag("registry:5000/team/base") == "base"
