"""A real Docker engine against token auth: ``docker login``/push/pull/``logout`` for an admin
and a normal user, refused pulls, robot tokens as the ``docker login`` password."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from authn_support import ADMIN, ADMIN_PASSWORD, Lading
from support.dockerd import DockerEngine
from support.images import image_exists

pytestmark = pytest.mark.docker

USER, OUTSIDER, PASSWORD = "dk-user", "dk-outsider", "docker-user-pw-1"


class Docker:
    def __init__(self, engine: DockerEngine, authn: Lading, base: str) -> None:
        self.engine = engine
        self.authn = authn
        self.base = base

    def ref(self, repo: str, tag: str = "v1") -> str:
        return f"{self.authn.host_port}/{repo}:{tag}"

    def login(self, user: str, password: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "login", self.authn.host_port, "-u", user, "--password-stdin"],
            input=password + "\n", env=self.engine.env(), capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip

    def logout(self) -> None:
        self.engine.run("logout", self.authn.host_port)

    def push(self, repo: str, tag: str = "v1") -> subprocess.CompletedProcess[str]:
        self.engine.run("tag", self.base, self.ref(repo, tag))
        try:
            return self.engine.run("push", self.ref(repo, tag), check=False, timeout=300)
        finally:
            self.forget(repo, tag)

    def pull(self, repo: str, tag: str = "v1") -> subprocess.CompletedProcess[str]:
        try:
            return self.engine.run("pull", self.ref(repo, tag), check=False, timeout=300)
        finally:
            self.forget(repo, tag)

    def forget(self, repo: str, tag: str = "v1") -> None:
        if image_exists(self.engine, self.ref(repo, tag)):
            self.engine.run("image", "rm", self.ref(repo, tag))


def ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{result.args}: {result.stdout[-2000:]}{result.stderr[-2000:]}"


def refused(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 0, f"{result.args} succeeded: {result.stdout[-2000:]}"
    text = (result.stdout + result.stderr).lower()
    assert any(w in text for w in ("denied", "unauthorized", "authentication required")), text


@pytest.fixture(scope="module")
def docker(docker_engine: DockerEngine, docker_base_image: str, authn: Lading) -> Iterator[Docker]:
    authn.add_user(USER, PASSWORD)
    authn.add_user(OUTSIDER, PASSWORD)
    authn.grant("user", USER, "dk/*", "pull,push")
    client = Docker(docker_engine, authn, docker_base_image)
    yield client
    client.engine.run("logout", authn.host_port, check=False)


def test_admin_login_push_pull_logout(docker: Docker) -> None:
    ok(docker.login(ADMIN, ADMIN_PASSWORD))
    ok(docker.push("dkpriv/app"))
    ok(docker.pull("dkpriv/app"))
    docker.logout()
    refused(docker.pull("dkpriv/app"))  # anonymous now
    refused(docker.push("dkpriv/app", "anon"))
    assert docker.authn.tags("dkpriv/app") == ["v1"]


def test_user_login_push_pull_and_refusals(docker: Docker) -> None:
    assert docker.login(USER, "not-the-password").returncode != 0
    ok(docker.login(USER, PASSWORD))
    ok(docker.push("dk/app"))
    ok(docker.pull("dk/app"))
    if not docker.authn.tags("dkpriv/app"):  # when run without the admin test
        admin = docker.authn.admin_token("repository:dkpriv/app:pull,push")
        docker.authn.push_small_image(admin, "dkpriv/app", "v1", 21)
    refused(docker.pull("dkpriv/app"))
    refused(docker.push("dkpriv/app", "user"))
    docker.logout()
    ok(docker.login(OUTSIDER, PASSWORD))
    refused(docker.pull("dk/app"))
    refused(docker.push("dk/app", "outsider"))
    docker.logout()
    assert docker.authn.tags("dk/app") == ["v1"]
    assert docker.authn.tags("dkpriv/app") == ["v1"]


def test_robot_token_as_login_password(docker: Docker) -> None:
    authn = docker.authn
    secret = authn.robot(USER, "ci", "dk/ci/*:pull,push")
    ok(docker.login(f"{USER}+ci", secret))
    ok(docker.push("dk/ci/app"))
    ok(docker.pull("dk/ci/app"))
    refused(docker.push("dk/app", "robot"))  # the owner may, the robot's scope does not
    assert authn.tags("dk/ci/app") == ["v1"]
    assert "robot" not in authn.tags("dk/app")

    authn.cli("robot", "revoke", f"{USER}+ci")
    refused(docker.push("dk/ci/app", "revoked"))
    refused(docker.pull("dk/ci/app"))
    docker.logout()
    assert docker.login(f"{USER}+ci", secret).returncode != 0
    assert authn.tags("dk/ci/app") == ["v1"]

    expired = authn.expired_robot(USER, "old", "dk/*", "pull,push")
    assert docker.login(f"{USER}+old", expired).returncode != 0
    # The CLI refuses expiries that would never expire or be born expired.
    for days in ("0", "-1"):
        assert authn.cli_status("robot", "create", USER, f"bad{days}", "--scope", "dk/*:pull",
                                f"--expires-days={days}") != 0  # fmt: skip
    assert f"{USER}+bad0" not in authn.cli("robot", "ls")
