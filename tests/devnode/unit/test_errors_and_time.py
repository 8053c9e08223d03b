import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest

from miroir_devnode.errors import ERROR_CODES, MeiliError
from miroir_devnode.timeutil import iso_duration, parse_rfc3339, rfc3339

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "meili_error_codes.tsv"


@pytest.mark.skipif(not SHARED.exists(), reason="shared/ is not checked out beside the repo")
def test_error_table_matches_meilisearch_code_list() -> None:
    with SHARED.open() as f:
        rows = {
            r["code"]: (int(r["http_status"]), r["type"]) for r in csv.DictReader(f, delimiter="\t")
        }
    assert rows == ERROR_CODES


def test_error_object_shape() -> None:
    err = MeiliError("index_not_found", "Index `movies` not found.")
    assert err.status == 404
    assert err.to_dict() == {
        "message": "Index `movies` not found.",
        "code": "index_not_found",
        "type": "invalid_request",
        "link": "https://docs.meilisearch.com/errors#index_not_found",
    }


def test_unknown_error_code_is_a_bug() -> None:
    with pytest.raises(KeyError):
        MeiliError("no_such_code", "x")


def test_timestamps_always_have_fraction_and_z() -> None:
    moment = datetime(2024, 8, 8, 17, 5, 55, tzinfo=UTC)
    assert rfc3339(moment) == "2024-08-08T17:05:55.000000Z"
    assert parse_rfc3339("2024-08-08T17:05:55.791772Z") == moment.replace(microsecond=791772)
    with pytest.raises(ValueError, match="2024-08-08T17:05:55"):
        parse_rfc3339("2024-08-08T17:05:55")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.00933, "PT0.009330S"), (1.0, "PT1S"), (90061.5, "P1DT3661.500000S"), (0, "PT0S")],
)
def test_iso_durations(seconds: float, text: str) -> None:
    assert iso_duration(seconds) == text
