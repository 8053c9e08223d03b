"""Importing a Meilisearch V6 dump through real processes: a `miroir-proxy` process over six
devnodes (RG=2, RF=2, S=8), dumps built in the test from the documented format with their
entries in an unhelpful order (documents before their index's metadata, the top-level
`metadata.json` last).

What is checked is what a user sees through the proxy (counts, primary keys, settings,
filters, key values) and what each node holds when asked directly: every document on
exactly RF x RG nodes, and after a failed import no index left on any node.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from miroir_proxy.cli.devcluster import ClusterSpec, DevCluster
from miroir_proxy.cli.processes import NodeProcess, poll_until
from miroir_proxy.operations.dumpimport import IN_FLIGHT_BATCHES

from .clikit import miroir
from .dumpcheck import read_v6_dump
from .dumpkit import DumpIndex, key, write_dump

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MASTER_KEY = "dump-import-master-key-0123"
NODE_KEY = "dump-import-node-key-0123"
HEADERS = {"Authorization": f"Bearer {MASTER_KEY}"}
RF, RG = 2, 2
OPERATION_DEADLINE_S = 400.0
GENRES = ("drama", "comedy", "horror", "noir", "western")
MOVIE_SETTINGS: dict[str, Any] = {
    "displayedAttributes": ["*"],
    "searchableAttributes": ["title", "overview"],
    "filterableAttributes": ["genre", "year"],
    "sortableAttributes": ["year"],
    "rankingRules": ["words", "typo", "proximity", "attribute", "sort", "exactness"],
    "stopWords": ["the"],
    "synonyms": {"film": ["movie"]},
    "distinctAttribute": None,
    "searchCutoffMs": None,
    "localizedAttributes": None,
    "typoTolerance": {"enabled": True, "minWordSizeForTypos": {"oneTypo": 4, "twoTypos": 9}},
    "pagination": {"maxTotalHits": 20000},
    "aFutureSetting": {"ignored": True},
}
SEARCH_KEY = key("6062abda-a5aa-4414-ac91-ecd7944c0f8d", ["search"], ["movies"], "search")
ADMIN_KEY = key("c3b3d6a8-3c1f-4f14-8b4f-0c7a0f7e3a11", ["*"], ["*"], "admin")


def movie(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "title": f"film number {i}",
        "overview": "the story of " + ("a detective" if i % 3 else "a cowboy"),
        "genre": GENRES[i % len(GENRES)],
        "year": 1950 + i % 70,
    }


def book(i: int) -> dict[str, Any]:
    return {"book_id": f"978-{i:07d}", "pages": 100 + i % 400, "tags": ["paper", f"t{i % 7}"]}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    root = tmp_path_factory.mktemp("dumpin")
    spec = ClusterSpec(
        nodes=6,
        replica_groups=RG,
        replication_factor=RF,
        shards=8,
        port=0,
        master_key=MASTER_KEY,
        node_master_key=NODE_KEY,
        data_dir=root / "cluster",
        proxy_settings={
            "health": {"interval_ms": 200, "timeout_ms": 1_000, "unhealthy_after": 3},
            "coordination": {
                "peer_heartbeat_ms": 200,
                "lease_ttl_ms": 2_000,
                "lease_renew_ms": 600,
                "job_claim_ttl_ms": 2_000,
            },
            "operations": {
                "dump_spool_dir": str(root / "spool"),
                "dump_chunk_documents": 2_500,
                "copy_page_size": 500,
                # Slow enough that the restart test catches an import in the middle.
                "copy_docs_per_s": 2_000,
            },
        },
    )
    cluster = DevCluster(spec)
    cluster.start()
    yield cluster
    cluster.stop()


def api(fleet: DevCluster, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {**HEADERS, **kwargs.pop("headers", {})}
    return requests.request(method, fleet.url + path, headers=headers, timeout=30, **kwargs)


def ok(response: requests.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    return response.json()


def node_get(node: NodeProcess, path: str, **params: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {NODE_KEY}"}
    return requests.get(node.url + path, headers=headers, params=params, timeout=30)


def upload(fleet: DevCluster, dump: Path) -> dict[str, Any]:
    with dump.open("rb") as body:
        response = api(
            fleet,
            "POST",
            "/_miroir/dumps/import",
            data=body,
            headers={"Content-Type": "application/gzip"},
        )
    answer: dict[str, Any] = ok(response, 202)
    return answer


def finished(fleet: DevCluster, op_id: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def done() -> bool:
        seen.update(ok(api(fleet, "GET", f"/_miroir/operations/{op_id}")))
        return seen["state"] != "running"

    poll_until(done, OPERATION_DEADLINE_S, what=f"operation {op_id} ends")
    return seen


def node_ids(node: NodeProcess, uid: str, pk: str) -> list[Any]:
    """Every primary key `node` holds for `uid`, read from the node itself."""
    found: list[Any] = []
    while True:
        page = node_get(
            node, f"/indexes/{uid}/documents", offset=len(found), limit=5_000, fields=pk
        )
        assert page.status_code == 200, page.text
        results = page.json()["results"]
        found.extend(document[pk] for document in results)
        if len(results) < 5_000:
            return found


def test_a_v6_dump_imports_indexes_settings_documents_and_keys(
    fleet: DevCluster, tmp_path: Path
) -> None:
    movies, books = 8_000, 4_500
    dump = write_dump(
        tmp_path / "20250204-102231331.dump",
        [
            DumpIndex("movies", "id", (movie(i) for i in range(movies)), MOVIE_SETTINGS),
            # No primary key in the metadata: inferred from the first document, as
            # Meilisearch does on its first addition.
            DumpIndex(
                "books", None, (book(i) for i in range(books)), {"sortableAttributes": ["pages"]}
            ),
        ],
        [SEARCH_KEY, ADMIN_KEY],
    )
    started = upload(fleet, dump)
    assert sorted(started["indexes"]) == ["books", "movies"]
    assert started["documents"] == movies + books
    operation = finished(fleet, started["operation"])
    assert operation["state"] == "succeeded", (operation["error"], operation["progress"])
    assert operation["kind"] == "dump-import"
    assert operation["progress"]["done"] == movies + books
    assert operation["progress"]["unit"] == "documents"
    spool = Path(fleet.spec.proxy_settings["operations"]["dump_spool_dir"])
    assert list(spool.glob("*.dump")) == [], "the finished import's file stays in the spool"

    indexes = {i["uid"]: i for i in ok(api(fleet, "GET", "/indexes"))["results"]}
    assert indexes["movies"]["primaryKey"] == "id"
    assert indexes["books"]["primaryKey"] == "book_id"
    for uid, count in (("movies", movies), ("books", books)):
        stats = ok(api(fleet, "GET", f"/indexes/{uid}/stats"))
        assert stats["numberOfDocuments"] == count

    settings = ok(api(fleet, "GET", "/indexes/movies/settings"))
    for name, value in MOVIE_SETTINGS.items():
        if name == "aFutureSetting":
            assert name not in settings
        elif value is not None and name != "typoTolerance":
            assert settings[name] == value, name
    assert settings["typoTolerance"]["minWordSizeForTypos"] == {"oneTypo": 4, "twoTypos": 9}
    assert ok(api(fleet, "GET", "/indexes/books/settings"))["sortableAttributes"] == ["pages"]

    hits = ok(
        api(
            fleet,
            "POST",
            "/indexes/movies/search",
            json={"filter": 'genre = "noir" AND year >= 2000', "limit": 0},
        )
    )
    expected = sum(1 for i in range(movies) if i % 5 == 3 and 1950 + i % 70 >= 2000)
    assert hits["estimatedTotalHits"] == expected
    first = ok(api(fleet, "POST", "/indexes/books/search", json={"sort": ["pages:asc"]}))
    assert first["hits"][0]["pages"] == 100

    for uid, pk, count in (("movies", "id", movies), ("books", "book_id", books)):
        copies = Counter(doc_id for node in fleet.nodes for doc_id in node_ids(node, uid, pk))
        assert len(copies) == count
        assert set(copies.values()) == {RF * RG}, Counter(copies.values())

    for dumped in (SEARCH_KEY, ADMIN_KEY):
        value = hmac.new(MASTER_KEY.encode(), dumped["uid"].encode(), hashlib.sha256).hexdigest()
        shown = ok(api(fleet, "GET", f"/keys/{dumped['uid']}"))
        assert (shown["key"], shown["name"], shown["actions"]) == (
            value,
            dumped["name"],
            dumped["actions"],
        )
    search_value = hmac.new(MASTER_KEY.encode(), SEARCH_KEY["uid"].encode(), hashlib.sha256)
    searched = requests.post(
        f"{fleet.url}/indexes/movies/search",
        headers={"Authorization": f"Bearer {search_value.hexdigest()}"},
        json={"q": "film", "limit": 1},
        timeout=30,
    )
    assert searched.status_code == 200, searched.text
    assert searched.json()["estimatedTotalHits"] == movies


def received_copies(fleet: DevCluster, uid: str) -> int:
    """Documents the nodes' addition tasks of `uid` received, summed over every node."""
    total = 0
    for node in fleet.nodes:
        page = node_get(node, "/tasks", indexUids=uid, types="documentAdditionOrUpdate", limit=1000)
        assert page.status_code == 200, page.text
        total += sum(task["details"]["receivedDocuments"] for task in page.json()["results"])
    return total


def test_a_restarted_pod_resumes_its_chunks_from_their_cursors(
    fleet: DevCluster, tmp_path: Path
) -> None:
    count, uid = 20_000, "resumed"
    dump = write_dump(
        tmp_path / "resumed.dump", [DumpIndex(uid, "id", (movie(i) for i in range(count)))]
    )
    op_id = upload(fleet, dump)["operation"]
    progress: dict[str, Any] = {}

    def midway() -> bool:
        progress.update(ok(api(fleet, "GET", f"/_miroir/operations/{op_id}"))["progress"])
        return int(progress.get("done", 0)) >= 6_000

    poll_until(midway, OPERATION_DEADLINE_S, what="the import is midway")
    assert progress["done"] < count, "the import ended before the pod could be killed"
    fleet.proxy.kill()
    fleet.proxy.start()
    fleet.proxy.wait_ready()
    operation = finished(fleet, op_id)
    assert operation["state"] == "succeeded", operation["error"]
    assert operation["progress"]["done"] == count
    copies = Counter(doc_id for node in fleet.nodes for doc_id in node_ids(node, uid, "id"))
    assert len(copies) == count
    assert set(copies.values()) == {RF * RG}
    # From their cursors: at most the batches in flight (per running chunk, two chunks at
    # a time) were sent twice; a chunk started over would resend thousands.
    resent = received_copies(fleet, uid) - count * RF * RG
    assert 0 <= resent <= 2 * (IN_FLIGHT_BATCHES + 1) * 500 * RF * RG, resent


def _nowhere(fleet: DevCluster, *uids: str) -> None:
    for uid in uids:
        assert api(fleet, "GET", f"/indexes/{uid}").status_code == 404
        for node in fleet.nodes:
            assert node_get(node, f"/indexes/{uid}").status_code == 404, (node.url, uid)


def test_a_document_without_a_valid_primary_key_fails_and_leaves_no_index(
    fleet: DevCluster, tmp_path: Path
) -> None:
    bad = [movie(i) for i in range(6_000)]
    del bad[5_200]["id"]  # in the third chunk: earlier chunks were written already
    dump = write_dump(
        tmp_path / "bad.dump",
        [DumpIndex("films_bad", "id", bad), DumpIndex("other_bad", "id", [movie(1)])],
    )
    operation = finished(fleet, upload(fleet, dump)["operation"])
    assert operation["state"] == "failed", operation
    error = operation["error"]
    assert error["code"] == "missing_document_id", error
    assert "films_bad" in error["message"]
    assert set(error) == {"message", "code", "type", "link"}
    _nowhere(fleet, "films_bad", "other_bad")


def test_a_line_that_is_not_a_json_object_fails_naming_it(
    fleet: DevCluster, tmp_path: Path
) -> None:
    lines = b"".join(orjson.dumps(movie(i)) + b"\n" for i in range(900))
    lines += b'{"id": 900, "title": "cut\n' + b"".join(
        orjson.dumps(movie(i)) + b"\n" for i in range(901, 1_200)
    )
    dump = write_dump(tmp_path / "garbled.dump", [DumpIndex("garbled", "id", lines)])
    operation = finished(fleet, upload(fleet, dump)["operation"])
    assert operation["state"] == "failed", operation
    assert operation["error"]["code"] == "miroir_invalid_dump", operation["error"]
    assert "line 901 is not JSON" in operation["error"]["message"], operation["error"]
    _nowhere(fleet, "garbled")


def test_an_index_uid_the_nodes_refuse_fails_with_their_error(
    fleet: DevCluster, tmp_path: Path
) -> None:
    dump = write_dump(
        tmp_path / "baduid.dump",
        [DumpIndex("fine_uid", "id", [movie(1)]), DumpIndex("not a uid!", "id", [movie(2)])],
    )
    operation = finished(fleet, upload(fleet, dump)["operation"])
    assert operation["state"] == "failed", operation
    assert operation["error"]["code"] == "invalid_index_uid", operation["error"]
    assert "not a uid!" in operation["error"]["message"]
    _nowhere(fleet, "fine_uid")


def test_a_canceled_import_deletes_what_it_created(fleet: DevCluster, tmp_path: Path) -> None:
    uid = "canceled_import"
    dump = write_dump(
        tmp_path / "cancel.dump", [DumpIndex(uid, "id", (movie(i) for i in range(20_000)))]
    )
    op_id = upload(fleet, dump)["operation"]

    def copying() -> bool:
        view = ok(api(fleet, "GET", f"/_miroir/operations/{op_id}"))
        return int(view["progress"].get("done", 0)) > 0

    poll_until(copying, OPERATION_DEADLINE_S, what="documents are being imported")
    ok(api(fleet, "POST", f"/_miroir/operations/{op_id}/cancel"), 202)
    operation = finished(fleet, op_id)
    assert operation["state"] == "canceled", operation
    _nowhere(fleet, uid)


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "version"])
def test_a_bad_archive_fails_with_invalid_dump_and_creates_nothing(
    fleet: DevCluster, tmp_path: Path, damage: str
) -> None:
    uid = f"damaged_{damage}"
    indexes = [DumpIndex(uid, "id", [movie(i) for i in range(300)])]
    dump = write_dump(
        tmp_path / "damaged.dump", indexes, version="V7" if damage == "version" else "V6"
    )
    data = bytearray(dump.read_bytes())
    if damage == "truncated":
        data = data[: len(data) * 2 // 3]
    elif damage == "corrupt":
        data[len(data) // 2] ^= 0x5A
    dump.write_bytes(bytes(data))
    operation = finished(fleet, upload(fleet, dump)["operation"])
    assert operation["state"] == "failed", operation
    assert operation["error"]["code"] == "miroir_invalid_dump", operation["error"]
    if damage == "version":
        assert "`V7`" in operation["error"]["message"]
    _nowhere(fleet, uid)


def test_the_route_refuses_other_content_types_and_needs_the_admin_key(
    fleet: DevCluster,
) -> None:
    refused = api(
        fleet,
        "POST",
        "/_miroir/dumps/import",
        data=b"{}",
        headers={"Content-Type": "application/json"},
    )
    assert refused.status_code == 415
    assert refused.json()["code"] == "invalid_content_type"
    anonymous = requests.post(
        fleet.url + "/_miroir/dumps/import",
        data=b"x",
        headers={"Content-Type": "application/gzip"},
        timeout=30,
    )
    assert anonymous.status_code == 401


def test_the_cli_imports_a_dump_and_follows_its_progress(fleet: DevCluster, tmp_path: Path) -> None:
    dump = write_dump(
        tmp_path / "cli.dump", [DumpIndex("cli_movies", "id", (movie(i) for i in range(3_000)))]
    )
    env = {"MIROIR_URL": fleet.url, "MIROIR_ADMIN_KEY": MASTER_KEY, "PATH": "/usr/bin:/bin"}
    ran = miroir("dump", "import", str(dump), env=env)
    assert ran.code == 0, ran
    assert "dump-import: documents" in ran.stderr, ran.stderr
    assert "3000/3000 documents" in ran.stdout + ran.stderr, ran
    assert "dump-import, succeeded" in ran.stdout, ran.stdout
    stats = ok(api(fleet, "GET", "/indexes/cli_movies/stats"))
    assert stats["numberOfDocuments"] == 3_000

    missing = miroir("dump", "import", str(tmp_path / "nope.dump"), env=env)
    assert missing.code == 2
    assert "no such file" in missing.stderr

    # And back out: the cluster as one V6 dump, downloaded where asked.
    target = tmp_path / "out.dump"
    exported = miroir("dump", "export", "-o", str(target), "--json", env=env)
    assert exported.code == 0, exported
    answer = exported.json()
    assert answer["file"] == str(target) and answer["bytes"] == target.stat().st_size
    dumped = read_v6_dump(target.read_bytes())
    assert len(dumped.indexes["cli_movies"].documents or []) == 3_000
    assert not list(tmp_path.glob("*.part"))
