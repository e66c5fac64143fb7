"""Process-wide startup steps repeat safely: two apps in one process both work."""

from __future__ import annotations

import gc
import logging
import resource
from collections.abc import Callable

from fastapi.testclient import TestClient

from {{ cookiecutter.project_slug }} import startup
from {{ cookiecutter.project_slug }}.logs import RedactTokens
from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.settings import Settings

from conftest import TokenFactory

LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")


def redacting_filters() -> dict[str, int]:
    """How many token filters each logger uvicorn writes to carries."""
    return {
        name: sum(isinstance(f, RedactTokens) for f in logging.getLogger(name).filters)
        for name in LOGGERS
    }


def test_building_two_apps_installs_each_log_filter_once(
    settings_factory: Callable[..., Settings],
) -> None:
    """A second `create_app()` leaves one token filter per logger, not two."""
    create_app(settings_factory())
    create_app(settings_factory())
    assert redacting_filters() == dict.fromkeys(LOGGERS, 1)


def test_only_the_first_start_in_a_process_freezes_the_heap() -> None:
    """`freeze_startup_objects` freezes once; a later call leaves the collector alone."""
    startup.freeze_startup_objects()
    frozen = gc.get_freeze_count()
    tracked = [[] for _ in range(1000)]  # lists: objects the collector tracks
    assert startup.freeze_startup_objects() is False
    # Frozen objects may still be freed by reference counting: the count never grows.
    assert gc.get_freeze_count() <= frozen
    del tracked


def test_young_collections_are_spaced_out_but_never_more_often() -> None:
    """The young threshold is raised to `YOUNG_GC_THRESHOLD`; one set higher is kept."""
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        older = gc.get_threshold()[1:]  # as this Python keeps them
        startup.collect_young_objects_less_often()
        assert gc.get_threshold() == (startup.YOUNG_GC_THRESHOLD, *older)
        gc.set_threshold(4 * startup.YOUNG_GC_THRESHOLD, 10, 10)
        startup.collect_young_objects_less_often()
        assert gc.get_threshold() == (4 * startup.YOUNG_GC_THRESHOLD, *older)
    finally:
        gc.set_threshold(*before)


def test_two_apps_in_one_process_serve_with_their_own_settings(
    settings_factory: Callable[..., Settings], make_token: TokenFactory
) -> None:
    """Two apps, one after the other and then side by side, each start, serve and stop."""
    headers = {"Authorization": f"Bearer {make_token(publish=['room:*'])}"}
    body = {"data": "x" * 500}

    def publish(client: TestClient) -> int:
        response = client.post("/channels/room:1/events", json=body, headers=headers)
        return int(response.status_code)

    with TestClient(create_app(settings_factory(max_message_bytes=200))) as first:
        assert first.get("/readyz").status_code == 200
        assert publish(first) == 413
    frozen = gc.get_freeze_count()
    with (
        TestClient(create_app(settings_factory())) as second,
        TestClient(create_app(settings_factory(max_message_bytes=200))) as third,
    ):
        assert (publish(second), publish(third)) == (202, 413)
    assert gc.get_freeze_count() <= frozen
    assert redacting_filters() == dict.fromkeys(LOGGERS, 1)


def test_the_soft_open_files_limit_is_raised_to_the_hard_one() -> None:
    """Every connection is a socket: the soft limit goes up to what the hard one allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        lower = min(soft, 512)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lower, hard))
        assert startup.allow_open_files(100) is None
        raised = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if hard == resource.RLIM_INFINITY:
            assert raised >= 100 + startup.SPARE_FILES
        else:
            assert raised == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_hard_limit_too_low_for_max_connections_is_one_warning() -> None:
    """Beyond what the hard limit allows, startup names the setting and the fix."""
    warning = startup.allow_open_files(2**40)
    assert warning is not None
    assert "MAX_CONNECTIONS=1,099,511,627,776" in warning
    assert "ulimit -Hn" in warning
