import pytest

from .helpers import hub_fixture


@pytest.fixture(params=[False, True], ids=["regular", "lfs"])
def lfs(request):
    return request.param


@pytest.fixture
def hub(monkeypatch, tmp_path, request):
    yield from hub_fixture(monkeypatch, tmp_path, request)
