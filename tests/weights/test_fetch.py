"""Faults around fetching: dead and silent endpoints, the cache's links, mirrors, concurrent and killed downloads."""
import multiprocessing
import os
import signal
import sys
import time

import pytest

from zoo import weights as W
from zoo import weights_cli

from ..hubserver import closed_port, silent_endpoint
from .helpers import NAME, REPO, _host, _tiny_file


def _real_sleep(monkeypatch):
    """Undo the fixture's no-op backoff so that a hidden retry would show up in the elapsed time."""
    import huggingface_hub.file_download as fd
    import huggingface_hub.utils._http as http

    monkeypatch.setattr(http, "time", time)
    monkeypatch.setattr(fd, "time", time)


def test_default_timeout_is_10_seconds(monkeypatch):
    monkeypatch.delenv(W.ENV_TIMEOUT, raising=False)
    assert W.hub_timeout() == 10
    monkeypatch.setenv(W.ENV_TIMEOUT, "soon")
    with pytest.raises(W.WeightsError, match="ZOO_HUB_TIMEOUT='soon' is not a number"):
        W.hub_timeout()


def test_silent_endpoint_fails_within_the_timeout(hub, monkeypatch, tmp_path):
    _host(monkeypatch, hub, _tiny_file(tmp_path))
    _real_sleep(monkeypatch)
    monkeypatch.setenv(W.ENV_TIMEOUT, "0.5")
    with silent_endpoint() as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        t0 = time.monotonic()
        with pytest.raises(W.WeightsError) as e:
            W.resolve(NAME)
        elapsed = time.monotonic() - t0
    msg = str(e.value)
    assert elapsed < 4, elapsed                     # one request at the limit, no retries (was 395 s)
    assert "could not be reached" in msg and "0.5 s per request" in msg
    assert "HF_HUB_OFFLINE=1" in msg and W.ENV_DIR in msg and "\n" not in msg


def test_closed_port_fails_in_seconds(hub, monkeypatch, tmp_path):
    _host(monkeypatch, hub, _tiny_file(tmp_path))
    _real_sleep(monkeypatch)
    monkeypatch.setenv("HF_ENDPOINT", closed_port())
    t0 = time.monotonic()
    with pytest.raises(W.WeightsError, match="could not be reached.*HF_HUB_OFFLINE=1"):
        W.resolve(NAME)
    assert time.monotonic() - t0 < 3                # was 27 s of retries


def test_purge_never_follows_a_link_out_of_the_cache(hub, monkeypatch, tmp_path):
    data = _tiny_file(tmp_path)
    _host(monkeypatch, hub, data)
    link = W.resolve(NAME)
    user = tmp_path / "my_precious.safetensors"
    user.write_bytes(b"the user's own file, not the hosted one")
    os.remove(link)
    os.symlink(user, link)                          # a snapshot link that points out of the cache
    with pytest.raises(W.WeightsError, match="does not match.*outside the cache"):
        W.resolve(NAME)
    assert user.read_bytes().startswith(b"the user's own file")
    os.remove(link) if os.path.lexists(link) else None
    os.symlink(user, link)
    rows = weights_cli.verify([NAME], purge=True)
    assert user.exists() and rows[0][2].startswith("CORRUPT")
    assert open(W.resolve(NAME), "rb").read() == data      # the next call downloads a verified copy


def test_broken_mirror_folder_does_not_block_the_cache(hub, monkeypatch, tmp_path):
    data = _tiny_file(tmp_path)
    _host(monkeypatch, hub, data)
    cached = W.resolve(NAME)
    broken, single = tmp_path / "broken", tmp_path / "single"
    (broken / NAME).mkdir(parents=True)
    (broken / NAME / W.FILENAME).write_bytes(b"\0" * 100)        # wrong bytes
    single.mkdir()
    (single / W.FILENAME).write_bytes(b"not safetensors at all")   # unreadable header
    monkeypatch.setenv(W.ENV_DIR, os.pathsep.join([str(single), str(broken)]))
    with pytest.warns(UserWarning, match="skipping .*broken"):
        assert W.resolve(NAME) == cached
    with pytest.raises(W.WeightsError, match="does not match"):    # an explicit weights_dir stays strict
        W.resolve(NAME, weights_dir=broken)


def _download_to(barrier, to):
    barrier.wait()
    sys.exit(weights_cli.main(["download", NAME, "--to", str(to)]))


def test_concurrent_downloads_to_one_mirror_all_succeed(hub, monkeypatch, tmp_path):
    import torch
    from safetensors.torch import save_file

    f = tmp_path / "big.safetensors"
    save_file({"w": torch.zeros(2 << 20)}, str(f), metadata={"name": NAME, "arch": "tsn_r18"})   # 8 MB
    data = f.read_bytes()
    _host(monkeypatch, hub, data)
    W.resolve(NAME)                                 # in the cache: the processes race on the mirror copy
    ctx = multiprocessing.get_context("fork")
    n = 4
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=_download_to, args=(barrier, tmp_path / "mirror")) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * n
    assert (tmp_path / "mirror" / NAME / W.FILENAME).read_bytes() == data
    assert os.listdir(tmp_path / "mirror" / NAME) == [W.FILENAME]      # no temporary left behind


def _resolve_in_child():
    W.resolve(NAME)


def test_killed_download_is_reported_purged_and_replaced(hub, monkeypatch, tmp_path, capsys):
    data = _tiny_file(tmp_path)
    _host(monkeypatch, hub, data)
    hub.faults[W.FILENAME] = "stall"
    child = multiprocessing.get_context("fork").Process(target=_resolve_in_child)
    child.start()
    assert hub.stalled.wait(30)
    time.sleep(0.2)                                 # let the child write what it received
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    left = W.incomplete_files([REPO])
    assert left and all(p.endswith(".incomplete") for p in left)
    rows = weights_cli.verify([NAME])
    assert any(r[1] == left[0] and r[2].startswith("INCOMPLETE") for r in rows)
    assert weights_cli.main(["verify", NAME]) == 1
    hub.faults.clear()
    assert open(W.resolve(NAME), "rb").read() == data      # the next download replaces it
    capsys.readouterr()
    assert weights_cli.main(["verify", NAME, "--purge"]) == 1
    assert "(removed)" in capsys.readouterr().out
    assert W.incomplete_files([REPO]) == [] and os.path.isfile(W.resolve(NAME))
    assert weights_cli.main(["verify", NAME]) == 0


def test_verify_unknown_name_fails(capsys):
    assert weights_cli.main(["verify", "tsm_r5_nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo verify: error: unknown model") and err.count("\n") == 1
