import pytest

from miroir_proxy.core.errors import MiroirError
from miroir_proxy.state.taskquery import parse


def test_defaults() -> None:
    q = parse({}, action="list")
    assert (q.limit, q.from_uid, q.reverse, q.has_filters) == (20, None, False, False)


def test_star_means_any() -> None:
    q = parse({"statuses": "*", "indexUids": "a,*"}, action="list")
    assert q.statuses is None and q.index_uids is None


def test_date_only_after_bound_moves_to_next_day() -> None:
    q = parse({"afterEnqueuedAt": "2026-01-01", "beforeFinishedAt": "2026-01-01"}, action="list")
    assert q.dates == (
        ("enqueuedAt", ">", "2026-01-02T00:00:00.000000Z"),
        ("finishedAt", "<", "2026-01-01T00:00:00.000000Z"),
    )


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"statuses": "done"}, "invalid_task_statuses"),
        ({"types": "nope"}, "invalid_task_types"),
        ({"uids": "a"}, "invalid_task_uids"),
        ({"limit": "-1"}, "invalid_task_limit"),
        ({"from": "x"}, "invalid_task_from"),
        ({"reverse": "yes"}, "invalid_task_reverse"),
        ({"afterStartedAt": "yesterday"}, "invalid_task_after_started_at"),
        ({"colour": "red"}, "bad_request"),
    ],
)
def test_bad_parameters(params: dict[str, str], code: str) -> None:
    with pytest.raises(MiroirError) as e:
        parse(params, action="list")
    assert e.value.code == code
    assert e.value.status == 400


def test_cancel_and_delete_need_a_filter() -> None:
    for action in ("cancel", "delete"):
        with pytest.raises(MiroirError) as e:
            parse({}, action=action)  # type: ignore[arg-type]
        assert e.value.code == "missing_task_filters"
        assert f"tasks to {action} are missing" in e.value.message
    with pytest.raises(MiroirError):
        parse({"limit": "1"}, action="delete")
