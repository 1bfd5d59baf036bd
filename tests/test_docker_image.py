"""The simlab node image on a real Docker engine: the offline base, the build, its cache, the CLI.

Skips (with the reason) when no engine can be reached; `.ci/setup --test` tries to start one.
The base image is made once (debootstrap, minutes) and reused from the engine after that.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from simlab.runtime.docker_engine import DockerUnavailable, engine
from simlab.runtime.docker_image import (
    DEFAULT_BASE,
    LABEL_KIND,
    NODE_REPOSITORY,
    ImageError,
    build_image,
    ensure_image,
    make_base_image,
)

try:
    CLIENT = engine()
except DockerUnavailable as exc:
    pytest.skip(f"no Docker engine: {exc}", allow_module_level=True)

pytestmark = pytest.mark.xdist_group("docker")
"""One worker builds the images (with the runtime's tests): no two builds of the same thing."""

BASE_TIMEOUT = 900  # debootstrap plus import, when the engine has no base image yet
BUILD_TIMEOUT = 900  # dependency wheels and the first image build on the vfs driver


def _run(image: str, *cmd: str) -> str:
    out = CLIENT.containers.run(image, list(cmd), remove=True, network_mode="none")
    return out.decode()


@pytest.fixture(scope="session")
def base_image() -> str:
    """simlab-base:bookworm: the engine's own when it has one, else made with debootstrap."""
    if not any(DEFAULT_BASE in img.tags for img in CLIENT.images.list()):
        try:
            make_base_image(CLIENT)
        except ImageError as exc:  # not root, no debootstrap
            pytest.skip(f"cannot make the base image: {exc}")
    return DEFAULT_BASE


@pytest.fixture(scope="session")
def node_image(base_image: str) -> str:
    return ensure_image(CLIENT, base=base_image)


@pytest.mark.timeout(BASE_TIMEOUT)
def test_base_image_has_python_311(base_image: str) -> None:
    assert _run(base_image, "python3", "--version").startswith("Python 3.11")
    assert make_base_image(CLIENT, tag=base_image) == base_image  # exists: nothing to do


@pytest.mark.timeout(BASE_TIMEOUT + BUILD_TIMEOUT)
def test_node_image_runs_a_node_entrypoint(node_image: str) -> None:
    assert node_image.startswith(f"{NODE_REPOSITORY}:")
    image = CLIENT.images.get(node_image)
    assert image.labels[LABEL_KIND] == "node"
    assert image.id == CLIENT.images.get(f"{NODE_REPOSITORY}:latest").id
    # one container (each is a full copy of the image on the vfs storage driver)
    out = _run(
        node_image,
        "sh",
        "-c",
        "python -m simlab.nodes.pacs --help && "
        "python -c 'import simlab.nodes.ris, fake_modalities, pynetdicom; print(\"imports ok\")'",
    )
    assert "--config" in out
    assert "imports ok" in out


@pytest.mark.timeout(BASE_TIMEOUT + BUILD_TIMEOUT)
def test_second_build_is_a_cache_hit(node_image: str, base_image: str) -> None:
    before = {img.id for img in CLIENT.images.list(all=True)}
    again = build_image(CLIENT, base=base_image)
    assert again.cached
    assert again.tag == node_image
    assert {img.id for img in CLIENT.images.list(all=True)} == before  # nothing was built


@pytest.mark.timeout(120)
def test_unknown_base_is_a_clear_error() -> None:
    with pytest.raises(ImageError, match=r"simlab-no-such-base:0 not found.*simlab image base"):
        ensure_image(CLIENT, base="simlab-no-such-base:0")


@pytest.mark.timeout(120)
def test_cli_unknown_base_exits_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "simlab.cli.main", "image", "build", "--base", "nope-base:0"],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 2
    assert "nope-base:0 not found" in done.stderr


@pytest.mark.timeout(BASE_TIMEOUT + BUILD_TIMEOUT)
def test_cli_build_json_and_list(node_image: str) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "simlab.cli.main", "image", "build", "--json"],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["tag"] == node_image
    assert result["cached"] is True
    assert 0 <= result["seconds"] <= time.monotonic() - started
    assert result["base"] == DEFAULT_BASE

    listed = subprocess.run(
        [sys.executable, "-m", "simlab.cli.main", "image", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert listed.returncode == 0, listed.stderr
    kinds = {tag: img["kind"] for img in json.loads(listed.stdout) for tag in img["tags"]}
    assert kinds[node_image] == "node"
    assert kinds[DEFAULT_BASE] == "base"


@pytest.mark.timeout(60)
def test_base_from_a_directory_without_python_is_refused(tmp_path) -> None:
    with pytest.raises(ImageError, match="no usr/bin/python3"):
        make_base_image(CLIENT, tag="simlab-test-not-made:0", rootfs=tmp_path)
