"""The search suite (tests/search) run unchanged against the Mongo store on the test double.

The suite's test functions are imported here, so pytest collects them again in this module, where
the ``data`` fixture and ``SearchDb`` are the Mongo ones: every case the SQLite compiler must pass,
MongoDB's filters must pass too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import tests.search.test_paging as paging_suite
import tests.search.test_search_params as params_suite
from tests.search.test_paging import (  # noqa: F401  (collected again here)
    test_cursor_from_another_sort_is_rejected,
    test_walk_all_pages_forward_and_back,
    test_writes_between_pages_neither_skip_nor_repeat,
)
from tests.search.test_search_params import (  # noqa: F401  (collected again here)
    test_bad_input_is_400_naming_the_parameter,
    test_compartment,
    test_count_clamped_with_warning,
    test_deleted_resources_do_not_match,
    test_has_with_include_iterate,
    test_includes,
    test_search,
    test_sort,
    test_sort_observations,
    test_system_search,
    test_total_and_count,
    test_unknown_parameter_ignored_when_lenient,
    test_update_replaces_index_rows,
)
from tests.search.test_value_set_modifiers import (  # noqa: F401  (collected again here)
    test_observation_status_and_thai_value_set,
    test_patient_gender,
    vsdb,
)
from tests.storage.mongo_search_db import MongoSearchDb


class _ClosingDb(MongoSearchDb):
    """A MongoSearchDb that the module fixture closes when the module is done."""

    opened: list[MongoSearchDb] = []

    def __init__(self) -> None:
        super().__init__()
        _ClosingDb.opened.append(self)


@pytest.fixture(autouse=True)
def _mongo_search_db(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Tests that build their own SearchDb get the Mongo one.
    monkeypatch.setattr(paging_suite, "SearchDb", _ClosingDb)
    monkeypatch.setattr(params_suite, "SearchDb", _ClosingDb)
    yield
    while _ClosingDb.opened:
        _ClosingDb.opened.pop().close()


@pytest.fixture(scope="module")
def data() -> Iterator[MongoSearchDb]:
    db = MongoSearchDb()
    params_suite._patients(db)  # type: ignore[arg-type]
    params_suite._observations(db)  # type: ignore[arg-type]
    yield db
    db.close()


@pytest.fixture
def db() -> MongoSearchDb:
    """The empty database the value-set tests fill (``vsdb`` builds on it)."""
    return _ClosingDb()
