"""Tag lists and the catalog: lexical order, ``n``/``last`` pagination, ``Link``, limits."""

from __future__ import annotations

import httpx
import pytest
from support.server import RegistryServer
from v2client import (
    Image,
    expect_error,
    next_link,
    push_blob,
    push_image,
    push_manifest,
    unique,
    walk_pages,
)

PAGE_CAP = 10_000
# Deliberately not in push order, with case and punctuation that sort by code point.
TAGS = ["v2", "A", "latest", "v10", "1.0", "_x", "v1", "b-1", "b.1", "b_1", "Z9"]


@pytest.fixture
def tagged(client: httpx.Client, repo: str) -> Image:
    image = push_image(client, repo, TAGS[0], seed=60)
    for tag in TAGS[1:]:
        push_manifest(client, repo, tag, image.manifest)
    return image


def test_tags_in_lexical_order(client: httpx.Client, repo: str, tagged: Image) -> None:
    response = client.get(f"/v2/{repo}/tags/list")
    assert response.status_code == 200, response.text
    assert response.json() == {"name": repo, "tags": sorted(TAGS)}
    assert "Link" not in response.headers


@pytest.mark.parametrize("n", [1, 2, 3, 5, len(TAGS) - 1])
def test_tags_pagination_walk(client: httpx.Client, repo: str, tagged: Image, n: int) -> None:
    pages = walk_pages(client, f"/v2/{repo}/tags/list?n={n}", "tags")
    assert [tag for page in pages for tag in page] == sorted(TAGS)
    assert all(len(page) == n for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= n


def test_tags_link_format(client: httpx.Client, repo: str, tagged: Image) -> None:
    response = client.get(f"/v2/{repo}/tags/list", params={"n": 2})
    assert response.json()["tags"] == sorted(TAGS)[:2]
    link = next_link(response)
    assert link is not None
    url = httpx.URL(link)
    assert url.path == f"/v2/{repo}/tags/list"
    assert url.params["n"] == "2"
    assert url.params["last"] == sorted(TAGS)[1]


def test_tags_exact_page_has_no_link(client: httpx.Client, repo: str, tagged: Image) -> None:
    response = client.get(f"/v2/{repo}/tags/list", params={"n": len(TAGS)})
    assert response.json()["tags"] == sorted(TAGS)
    assert next_link(response) is None
    response = client.get(f"/v2/{repo}/tags/list", params={"n": PAGE_CAP})
    assert response.json()["tags"] == sorted(TAGS)
    assert next_link(response) is None


def test_tags_last_without_n(client: httpx.Client, repo: str, tagged: Image) -> None:
    ordered = sorted(TAGS)
    response = client.get(f"/v2/{repo}/tags/list", params={"last": ordered[3]})
    assert response.status_code == 200
    assert response.json()["tags"] == ordered[4:]
    # ``last`` need not be an existing tag.
    response = client.get(f"/v2/{repo}/tags/list", params={"last": "b"})
    assert response.json()["tags"] == [t for t in ordered if t > "b"]
    response = client.get(f"/v2/{repo}/tags/list", params={"last": "zzz"})
    assert response.json()["tags"] == []


def test_tags_n_zero(client: httpx.Client, repo: str, tagged: Image) -> None:
    response = client.get(f"/v2/{repo}/tags/list", params={"n": 0})
    assert response.status_code == 200, response.text
    assert response.json()["tags"] == []
    assert "Link" not in response.headers


@pytest.mark.parametrize("n", [str(PAGE_CAP + 1), "99999999999999999999999"])
def test_tags_n_over_cap(client: httpx.Client, repo: str, tagged: Image, n: str) -> None:
    response = client.get(f"/v2/{repo}/tags/list", params={"n": n})
    expect_error(response, 400, "PAGINATION_NUMBER_INVALID")


@pytest.mark.parametrize("n", ["abc", "-1", "1.5", "0x10", " 5"])
def test_tags_n_not_a_number(client: httpx.Client, repo: str, tagged: Image, n: str) -> None:
    response = client.get(f"/v2/{repo}/tags/list", params={"n": n})
    expect_error(response, 400, "PAGINATION_NUMBER_INVALID")


def test_tags_of_unknown_repository(client: httpx.Client) -> None:
    response = client.get(f"/v2/{unique('api/unknown')}/tags/list")
    expect_error(response, 404, "NAME_UNKNOWN")


def test_tags_of_invalid_name(client: httpx.Client) -> None:
    expect_error(client.get("/v2/No/tags/list"), 400, "NAME_INVALID")


def test_tags_of_repository_without_manifests(client: httpx.Client, repo: str) -> None:
    push_blob(client, repo, b"a blob but no manifest")
    response = client.get(f"/v2/{repo}/tags/list")
    # Either answer is defensible; what matters is no 5xx and a well-formed body.
    if response.status_code == 200:
        assert response.json()["tags"] in ([], None)
    else:
        expect_error(response, 404, "NAME_UNKNOWN")


@pytest.fixture
def catalog_repos(client: httpx.Client) -> list[str]:
    prefix = unique("api/catalog")
    names = [f"{prefix}/{suffix}" for suffix in ("b", "a", "c/d", "c", "a-b", "a.b", "a_b")]
    for index, name in enumerate(names):
        push_image(client, name, "v1", seed=70 + index, layer_count=1)
    return names


def test_catalog_walk_with_small_pages(
    client: httpx.Client, catalog_repos: list[str], api_server: RegistryServer
) -> None:
    prefix = catalog_repos[0].rsplit("/", 1)[0]
    # Start just before our prefix and walk 2 at a time until we leave it.
    url: str | None = f"/v2/_catalog?n=2&last={prefix}"
    seen: list[str] = []
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200, response.text
        page = response.json()["repositories"]
        assert len(page) <= 2
        seen.extend(page)
        if not page or not page[-1].startswith(prefix + "/"):
            break
        url = next_link(response)
    ours = [name for name in seen if name.startswith(prefix + "/")]
    assert ours == sorted(catalog_repos)


def test_catalog_full_walk_is_sorted_and_complete(
    client: httpx.Client, catalog_repos: list[str]
) -> None:
    pages = walk_pages(client, "/v2/_catalog?n=7", "repositories")
    everything = [name for page in pages for name in page]
    assert everything == sorted(set(everything))
    assert set(catalog_repos) <= set(everything)
    unpaged = client.get("/v2/_catalog").json()["repositories"]
    # Tests run one at a time: the unpaged list is the same set, in the same order.
    assert unpaged == everything


def test_catalog_n_zero(client: httpx.Client, catalog_repos: list[str]) -> None:
    response = client.get("/v2/_catalog", params={"n": 0})
    assert response.status_code == 200, response.text
    assert response.json()["repositories"] == []
    assert "Link" not in response.headers


@pytest.mark.parametrize("n", [str(PAGE_CAP + 1), "abc", "-3"])
def test_catalog_bad_n(client: httpx.Client, n: str) -> None:
    expect_error(client.get("/v2/_catalog", params={"n": n}), 400, "PAGINATION_NUMBER_INVALID")


def test_catalog_link(client: httpx.Client, catalog_repos: list[str]) -> None:
    response = client.get("/v2/_catalog", params={"n": 1})
    assert len(response.json()["repositories"]) == 1
    link = next_link(response)
    assert link is not None
    url = httpx.URL(link)
    assert url.path == "/v2/_catalog"
    assert url.params["n"] == "1"
    assert url.params["last"] == response.json()["repositories"][0]


def test_catalog_forgets_repositories_without_manifests(client: httpx.Client) -> None:
    name = unique("api/catalog-gone")
    image = push_image(client, name, "v1", seed=80, layer_count=1)
    listed = client.get("/v2/_catalog", params={"n": 1, "last": name[:-1]}).json()
    assert listed["repositories"] == [name]
    assert client.delete(f"/v2/{name}/manifests/{image.manifest.digest}").status_code == 202
    after = client.get("/v2/_catalog", params={"n": 1, "last": name[:-1]}).json()
    assert after["repositories"] != [name]
