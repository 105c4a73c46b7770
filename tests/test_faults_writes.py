"""What a kill or a power loss leaves of the library's writes: file modes under the umask, the fsync calls a
power loss needs, killed writers' leftovers removed (and live writers' kept), the kill points themselves, and
metrics.jsonl after a torn append."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from desra_jax import files
from desra_jax.data.image_io import write_image
from desra_jax.files import parse_kill_at, write_bytes_atomic, writer_tag
from desra_jax.models import directory
from desra_jax.models.directory import load_model, remove_stale_partials, save_model
from desra_jax.training.metric_writer import read_metrics
from tests.conftest import photo_crop
from tests.faults import leftovers, run_killed, run_to_end


@pytest.fixture
def umask():
    """Sets the process umask for one test: ``umask(0o077)``; the previous one comes back afterwards."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    write_bytes_atomic(tmp_path / "new.json", b"{}")
    write_image(tmp_path / "image.png", photo_crop("coffee", (4, 4))[0])
    write_bytes_atomic(tmp_path / "new.json", b"[]")  # replacing a file: a new file, a new mode
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {"new.json": mode, "image.png": mode}


@pytest.fixture(scope="module")
def tiny_model():
    """A one-block RRDBNet and its initial params: ``(module, params)``."""
    from desra_jax.models.rrdbnet import RRDBNet

    model = RRDBNet(scale=2, num_feat=4, num_block=1, num_grow_ch=2)
    return model, model.init(jax.random.key(0), np.zeros((1, 8, 8, 3), np.float32))["params"]


def test_a_saved_model_follows_the_umask(tmp_path, umask, tiny_model):
    umask(0o027)
    path = save_model(tmp_path / "model", *tiny_model)
    modes = {os.stat(os.path.join(d, n)).st_mode & 0o777 for d, ds, fs in os.walk(path) for n in fs}
    folders = {os.stat(d).st_mode & 0o777 for d, _, _ in os.walk(path)}
    assert (modes, folders) == ({0o640}, {0o750})


@pytest.fixture
def synced(monkeypatch):
    """Records what each os.fsync call synced: the file's or the folder's path."""
    paths = []
    real_fsync = os.fsync

    def recording_fsync(handle):
        paths.append(os.readlink(f"/proc/self/fd/{handle}"))
        real_fsync(handle)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return paths


def test_the_file_is_synced_before_the_rename_and_its_folder_after(tmp_path, synced, monkeypatch):
    real_replace, order = os.replace, []
    monkeypatch.setattr(os, "replace", lambda a, b: (order.append(("replace", len(synced))), real_replace(a, b)))

    write_bytes_atomic(tmp_path / "out" / "deeper" / "a.json", b"{}")

    # the folders made, each in its parent; the file before the rename; the folder the rename was in, after it
    assert synced[:2] == [str(tmp_path), str(tmp_path / "out")] and order == [("replace", 3)]
    assert os.path.basename(synced[2]).startswith(".a.json.") and synced[3:] == [str(tmp_path / "out" / "deeper")]
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match=r"not a folder \(a file is there\): '.*file'"):
        write_bytes_atomic(tmp_path / "file" / "sub" / "a.json", b"{}")


def test_a_saved_model_is_synced_file_by_file_and_then_its_parent(tmp_path, synced, tiny_model):
    model, params = tiny_model
    path = save_model(tmp_path / "model", model, params)
    (staging,) = {p for p in synced if os.path.basename(p).startswith(".model.partial-")}
    files = {os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs}
    folders = {os.path.relpath(d, path) for d, _, _ in os.walk(path)}
    assert len(files) > 3 and "model.json" in files
    # every file and folder of the model while still staged, then the parent that the staging was renamed in
    assert sorted(os.path.relpath(p, staging) for p in synced[:-1]) == sorted(files | folders)
    assert synced[-1] == str(tmp_path)


def test_a_full_disk_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch):
    write_bytes_atomic(tmp_path / "a.json", b"old")

    def full(handle):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"No space left on device: '.*a\.json'"):
        write_bytes_atomic(tmp_path / "a.json", b"new")
    assert (tmp_path / "a.json").read_bytes() == b"old" and leftovers(tmp_path) == []


def dead_writer() -> str:
    """The ``<pid>-<host>`` tag of a process on this machine that has exited (and was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return f"{child.pid}-{writer_tag().split('-')[1]}"


def test_the_first_write_into_a_folder_removes_killed_writers_temporaries_only(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_swept", set())
    names = {
        "dead": f".a.png.{dead_writer()}-0badc0de.tmp",
        "live": f".b.png.{writer_tag()}-0badc0de.tmp",  # this process: a write still under way
        "other machine": f".c.png.{os.getpid()}-ffffffff-0badc0de.tmp",
        "user's own": ".notes.tmp",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")

    write_bytes_atomic(tmp_path / "summary.json", b"{}")

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [names["live"], names["other machine"], names["user's own"], "summary.json"])


def test_stale_partials_of_killed_writers_are_removed_and_a_moved_aside_model_comes_back(tmp_path):
    killed = f".model.partial-{dead_writer()}-00000000"
    other_machine = f".model.partial-{os.getpid()}-ffffffff-00000000"
    for name in (killed, ".model.partial-0123456789ab", other_machine, ".other.partial-0123456789ab"):
        (tmp_path / name).mkdir()
    old = tmp_path / f".model.partial-{dead_writer()}-11111111.old"
    old.mkdir()
    (old / "model.json").write_text("{}")

    removed = remove_stale_partials(tmp_path / "model")

    assert sorted(os.path.basename(p) for p in removed) == sorted([killed, ".model.partial-0123456789ab"])
    assert sorted(os.listdir(tmp_path)) == sorted(["model", other_machine, ".other.partial-0123456789ab"])
    assert (tmp_path / "model" / "model.json").read_text() == "{}"  # the model moved aside, back in place
    remove_stale_partials(tmp_path / "model", only_dead_writers=False)  # the only writer, e.g. a resumed job
    assert sorted(os.listdir(tmp_path)) == [".other.partial-0123456789ab", "model"]


def test_save_model_clears_a_killed_save_before_its_own(tmp_path, tiny_model):
    model, params = tiny_model
    (tmp_path / f".model.partial-{dead_writer()}-00000000" / "variables").mkdir(parents=True)
    save_model(tmp_path / "model", model, params)
    assert os.listdir(tmp_path) == ["model"]
    jax.tree.map(np.testing.assert_array_equal, load_model(tmp_path / "model")[1]["params"], params)


def test_kill_at_values():
    assert parse_kill_at("write:a.png") == ("write:a.png", 1)
    assert parse_kill_at("write:eval_*.json@3") == ("write:eval_*.json", 3)
    for bad in ("save_model:model@0", "write:a@b.png"):
        with pytest.raises(ValueError, match="expected 'point' or 'point@N' with N >= 1"):
            parse_kill_at(bad)


WRITE_FIVE = """
import sys
from desra_jax.files import write_bytes_atomic
for step in range(1, 6):
    write_bytes_atomic(f"{sys.argv[1]}/eval_{step:07d}.json", b"{}")
"""


def test_a_kill_point_fires_at_the_nth_match_and_nowhere_else(tmp_path):
    run_killed([sys.executable, "-c", WRITE_FIVE, tmp_path], "write:eval_*.json@3")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "eval_0000001.json", "eval_0000002.json"]
    assert len(leftovers(tmp_path)) == 1  # the third file's temporary: complete, never renamed
    run_to_end([sys.executable, "-c", WRITE_FIVE, tmp_path], env={"DESRA_JAX_KILL_AT": "write:summary.json"})
    assert len(list(tmp_path.iterdir())) == 5 and leftovers(tmp_path) == []


def test_read_metrics_leaves_out_a_torn_last_line_and_names_a_broken_one(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [{"step": 1, "phase": "train", "l1": 0.5}, {"step": 2, "phase": "train", "l1": 0.25}]
    whole = "".join(json.dumps(r) + "\n" for r in records)
    path.write_text(whole + '{"step": 3, "pha')  # a power loss during the third append
    assert read_metrics(path) == records
    path.write_text(whole + "\x00" * 16)  # or the file grew but its data never reached the disk
    assert read_metrics(path) == records
    path.write_text('{"step": 1, "pha\n' + whole)
    with pytest.raises(ValueError, match=r"metrics\.jsonl:1: not a JSON record"):
        read_metrics(path)


def test_a_resumed_writer_rewrites_the_file_atomically(tmp_path, monkeypatch):
    from desra_jax.training.metric_writer import MetricWriter

    writer = MetricWriter(str(tmp_path), "train")
    for step in (1, 2, 3):
        writer.write(step, {"l1": 1.0 / step})
    writer.sync()
    writer.close()
    calls = []
    monkeypatch.setattr("desra_jax.training.metric_writer.write_bytes_atomic",
                        lambda path, data: (calls.append(path), write_bytes_atomic(path, data)))
    MetricWriter(str(tmp_path), "train", resume_step=2).close()
    assert calls == [str(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2]


def test_an_interrupt_between_the_two_renames_puts_the_previous_model_back(tmp_path, monkeypatch, tiny_model):
    model, params = tiny_model
    save_model(tmp_path / "model", model, params)

    def interrupted_after_moving_aside(name):
        if name == "save_model:model:moved_aside":
            raise KeyboardInterrupt

    monkeypatch.setattr(directory, "kill_point", interrupted_after_moving_aside)
    with pytest.raises(KeyboardInterrupt):
        save_model(tmp_path / "model", model, jax.tree.map(lambda p: p + 1, params), overwrite=True)
    assert os.listdir(tmp_path) == ["model"]
    jax.tree.map(np.testing.assert_array_equal, load_model(tmp_path / "model")[1]["params"], params)
