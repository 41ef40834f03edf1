"""bpjax.checkpoint: verified round trips, damaged checkpoints, safe rotation, failed saves.

Damage is made by editing the files orbax wrote (a flipped bit, a truncated or missing file, an
edited record). A full disk is simulated twice: by a failing rename of orbax's temporary
directory (always runs), and by a real, tiny tmpfs (runs only where `mount` is permitted).
"""

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

import bpjax
from bpjax import checkpoint
from bpjax.checkpoint import CheckpointError, DamagedCheckpointError
from tests.helpers import tiered


def tree_equal(a, b) -> bool:
    """Same structure and bit-identical leaves of the same dtype."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.asarray(x).dtype == np.asarray(y).dtype
        and np.asarray(x).tobytes() == np.asarray(y).tobytes()
        for x, y in zip(la, lb, strict=True)
    )


def run_state(seed: int) -> dict:
    """Arrays as a training run checkpoints them: params, Adam state, a PRNG key, snapshots."""
    params = bpjax.init_params(jax.random.key(seed), (784, 16, 10))
    opt = optax.adam(1e-3)
    opt_state = opt.update(params, opt.init(params), params)[1]  # non-trivial moments and count
    return {
        "params": params,
        "opt_state": opt_state,
        "key": checkpoint.key_to_data(jax.random.key(seed + 100)),
        "snapshots": checkpoint.stack([params] * (seed % 3 + 1)),
    }


def like_fn(record):
    """The arrays' shapes depend on the record (the number of snapshots so far)."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), run_state(record["seed"]))


def record_for(step: int) -> dict:
    return {"step": step, "seed": step, "cost": 0.1 + 0.2 * step, "config": {"sizes": [784, 16]}}


def save_steps(directory: Path, steps, keep=None) -> None:
    with checkpoint.open_manager(directory, keep=keep) as c:
        for step in steps:
            assert c.save(step, run_state(step), record_for(step)) == []


def listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def largest_array_file(step_dir: Path) -> Path:
    files = [p for p in (step_dir / "arrays").rglob("*") if p.is_file() and "/d/" in str(p)]
    return max(files, key=lambda p: p.stat().st_size)


# --- round trip -------------------------------------------------------------------------------


def test_a_round_trip_is_bit_identical_and_the_record_exact(tmp_path):
    save_steps(tmp_path, [5])
    found = checkpoint.latest_intact(tmp_path, like_fn)
    assert found.step == 5 and found.warnings == []
    assert found.record == record_for(5)  # floats exact
    assert tree_equal(found.arrays, run_state(5))
    assert jax.random.key_data(checkpoint.data_to_key(found.arrays["key"])).tolist() == (
        jax.random.key_data(jax.random.key(105)).tolist()
    )
    assert tree_equal(checkpoint.unstack(found.arrays["snapshots"]), [run_state(5)["params"]] * 3)


@pytest.mark.parametrize(
    "dtype", tiered(["float32", "float64", "int32", "uint32", "int8", "bool"], ["float32", "bool"])
)
def test_every_dtype_round_trips_through_the_checksums(tmp_path, x64, dtype):
    arrays = {"a": (np.arange(12).reshape(3, 4) % 5).astype(dtype), "scalar": np.array(7, dtype)}
    checkpoint.save(tmp_path, 0, arrays, {"dtype": dtype})
    found = checkpoint.latest_intact(tmp_path, lambda record: arrays)
    assert found.record == {"dtype": dtype} and tree_equal(found.arrays, arrays)


def test_no_directory_or_no_checkpoint_is_none(tmp_path):
    assert checkpoint.latest_intact(tmp_path / "nowhere", like_fn) is None
    (tmp_path / "empty").mkdir()
    assert checkpoint.latest_intact(tmp_path / "empty", like_fn) is None


def test_saving_over_an_intact_step_is_refused(tmp_path):
    save_steps(tmp_path, [1])
    with pytest.raises(ValueError, match="checkpoint 1 already exists"):
        checkpoint.save(tmp_path, 1, run_state(1), record_for(1))


def test_arrays_unlike_what_the_program_expects_are_an_error_not_damage(tmp_path):
    save_steps(tmp_path, [1, 2])

    def wrong(record):
        like = like_fn(record)
        return {**like, "key": jax.ShapeDtypeStruct((3,), np.uint32)}

    with pytest.raises(CheckpointError) as caught:
        checkpoint.latest_intact(tmp_path, wrong)
    message = str(caught.value)
    assert not isinstance(caught.value, DamagedCheckpointError)
    assert "checkpoint 2" in message and "array key is (2,) uint32 on disk, (3,) uint32" in message


# --- damage -------------------------------------------------------------------------------------


def flip_a_bit(step_dir: Path) -> None:
    path = largest_array_file(step_dir)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def truncate(step_dir: Path) -> None:
    path = largest_array_file(step_dir)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def edit_record(step_dir: Path) -> None:
    path = step_dir / "record" / "metadata"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "cost": record["cost"] + 1e-12}))  # still valid JSON


def edit_checksum_list(step_dir: Path) -> None:
    path = step_dir / "integrity" / "metadata"
    integrity = json.loads(path.read_text())
    name = next(iter(integrity["arrays"]))
    integrity["arrays"][name]["sha256"] = "0" * 64
    path.write_text(json.dumps(integrity))


def remove(*parts):
    def damage(step_dir: Path) -> None:
        path = step_dir.joinpath(*parts)
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return damage


DAMAGE = {
    "a flipped bit in an array file": (flip_a_bit, "array "),
    "a truncated array file": (truncate, "array"),
    "a deleted array file": (lambda d: largest_array_file(d).unlink(), "array"),
    "a deleted array metadata file": (remove("arrays", "_METADATA"), "array"),
    "a deleted ocdbt manifest": (remove("arrays", "manifest.ocdbt"), "array"),
    "a deleted arrays item": (remove("arrays"), "array"),
    "an edited JSON record": (edit_record, "JSON record checksum mismatch"),
    "a garbled JSON record": (lambda d: (d / "record" / "metadata").write_text("{no"), "record"),
    "a deleted JSON record": (remove("record", "metadata"), "record"),
    "an edited checksum list": (edit_checksum_list, "checksum list does not match"),
    "a deleted checksum list": (remove("integrity"), "record"),
}


@pytest.fixture(scope="module")
def three_steps(tmp_path_factory) -> Path:
    """Steps 1, 2, 3 saved once for the module; tests damage copies of it."""
    directory = tmp_path_factory.mktemp("three_steps")
    save_steps(directory, [1, 2, 3])
    return directory


@pytest.mark.parametrize("damage, reason", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_latest_falls_back_to_the_previous_one_with_one_warning(
    tmp_path, capfd, three_steps, damage, reason
):
    shutil.copytree(three_steps, tmp_path, dirs_exist_ok=True)
    damage(tmp_path / "3")
    before = listing(tmp_path)
    found = checkpoint.latest_intact(tmp_path, like_fn)
    assert found.step == 2 and found.record == record_for(2)
    assert tree_equal(found.arrays, run_state(2))
    [warning] = found.warnings
    assert warning.startswith("checkpoint 3 is damaged (") and reason in warning
    assert warning.endswith("); resuming from checkpoint 2") and "\n" not in warning
    assert listing(tmp_path) == before  # nothing deleted, nothing moved
    assert "Traceback" not in capfd.readouterr().err


def test_a_flipped_bit_is_caught_by_the_array_checksum(tmp_path):
    # The bit-flip case orbax alone reads back silently: only the checksum notices it.
    save_steps(tmp_path, [1, 2])
    flip_a_bit(tmp_path / "2")
    [warning] = checkpoint.latest_intact(tmp_path, like_fn).warnings
    assert "checksum mismatch" in warning or "unreadable" in warning


def test_every_damaged_step_is_named_and_skipped(tmp_path):
    save_steps(tmp_path, [1, 2, 3])
    flip_a_bit(tmp_path / "3")
    edit_record(tmp_path / "2")
    found = checkpoint.latest_intact(tmp_path, like_fn)
    assert found.step == 1 and len(found.warnings) == 2
    assert found.warnings[0].startswith("checkpoint 3 is damaged")
    assert found.warnings[1].startswith("checkpoint 2 is damaged (JSON record checksum")


def test_all_damaged_is_one_clear_error(tmp_path):
    save_steps(tmp_path, [1, 2])
    flip_a_bit(tmp_path / "1")
    edit_record(tmp_path / "2")
    with pytest.raises(CheckpointError, match=r"^no intact checkpoint in .*: 2 \(.*; 1 \(") as e:
        checkpoint.latest_intact(tmp_path, like_fn)
    assert "\n" not in str(e.value)
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["1", "2"]


def test_restoring_a_named_damaged_step_raises(tmp_path):
    save_steps(tmp_path, [1])
    edit_record(tmp_path / "1")
    with checkpoint.open_manager(tmp_path, read_only=True) as c:
        with pytest.raises(DamagedCheckpointError, match="checkpoint 1 is damaged"):
            checkpoint.restore_record(c, 1)
        with pytest.raises(DamagedCheckpointError):
            checkpoint.restore_arrays(c, 1, run_state(1))


# --- rotation -----------------------------------------------------------------------------------


def test_rotation_keeps_the_last_k(tmp_path):
    save_steps(tmp_path, [1, 2, 3, 4], keep=2)
    assert checkpoint.open_manager(tmp_path, read_only=True).all_steps() == [3, 4]


def test_a_damaged_latest_never_costs_the_intact_ones(tmp_path):
    save_steps(tmp_path, [1, 2], keep=2)
    flip_a_bit(tmp_path / "2")
    found = checkpoint.latest_intact(tmp_path, like_fn)
    assert found.step == 1
    # The resumed run saves step 2 again: the damaged one is moved aside, 1 is kept.
    with checkpoint.open_manager(tmp_path, keep=2) as c:
        [note] = c.save(2, run_state(2), record_for(2))
        assert note.startswith("checkpoint 2 is damaged (") and note.endswith("2.damaged")
        assert c.all_steps() == [1, 2]
        assert checkpoint.latest_intact(c, like_fn).step == 2
        c.save(3, run_state(3), record_for(3))
        assert c.all_steps() == [2, 3]
    assert (tmp_path / "2.damaged").is_dir()


def test_a_save_that_does_not_read_back_intact_deletes_nothing(tmp_path, monkeypatch):
    save_steps(tmp_path, [1, 2], keep=2)
    real = checkpoint.ocp.args.StandardSave

    def corrupting_writer(item, *args, **kwargs):  # a writer that changes the data
        return real(jax.tree.map(lambda a: np.asarray(a) + 1, item), *args, **kwargs)

    monkeypatch.setattr(checkpoint.ocp.args, "StandardSave", corrupting_writer)
    with checkpoint.open_manager(tmp_path, keep=2) as c:
        with pytest.raises(CheckpointError, match="checkpoint 3 .* did not read back intact"):
            c.save(3, run_state(3), record_for(3))
        assert c.all_steps() == [1, 2]
    assert checkpoint.latest_intact(tmp_path, like_fn).step == 2


def test_an_interrupted_save_is_invisible_and_cleaned_up(tmp_path):
    save_steps(tmp_path, [1])
    (tmp_path / "2.orbax-checkpoint-tmp").mkdir()
    (tmp_path / "2.orbax-checkpoint-tmp" / "half").write_bytes(b"x")
    assert checkpoint.latest_intact(tmp_path, like_fn).step == 1  # read-only: ignored
    with checkpoint.open_manager(tmp_path, keep=2) as c:
        c.save(2, run_state(2), record_for(2))
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["1", "2"]


# --- failed saves -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, words",
    [(errno.ENOSPC, "No space left on device (ENOSPC)"), (errno.EACCES, "Permission denied")],
)
def test_an_os_error_during_a_save_is_one_line_and_leaves_no_half_step(
    tmp_path, monkeypatch, capfd, code, words
):
    save_steps(tmp_path, [1])
    real_rename = os.rename

    def failing_rename(src, dst, *args, **kwargs):
        # orbax finishes a save by renaming its temporary directory; fail it there, with the
        # whole step already written into the temporary directory.
        if ".orbax-checkpoint-tmp" in os.fspath(src):
            raise OSError(code, os.strerror(code), os.fspath(src))
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(CheckpointError) as caught:
        checkpoint.save(tmp_path, 2, run_state(2), record_for(2))
    monkeypatch.undo()
    message = str(caught.value)
    assert message.startswith(f"cannot write checkpoint 2 in {tmp_path}: {words}")
    assert "\n" not in message and "earlier checkpoints are intact" in message
    assert [p.name for p in tmp_path.iterdir()] == ["1"]  # no half-written step, no temp dir
    assert checkpoint.latest_intact(tmp_path, like_fn).step == 1
    assert "Traceback" not in capfd.readouterr().err


@pytest.fixture
def tiny_disk(tmp_path):
    """A 512 KiB tmpfs, if this process may mount one (root with CAP_SYS_ADMIN)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: the rename-failure test simulates a full disk instead")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); see the rename test")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_really_full_disk_is_one_line_and_keeps_the_earlier_checkpoint(tiny_disk, capfd):
    rng = np.random.default_rng(0)
    arrays = {"w": rng.random(75_000, dtype=np.float32)}  # 300 KB: one fits, two do not
    checkpoint.save(tiny_disk, 1, arrays, {"n": 1})
    with pytest.raises(CheckpointError) as caught:
        checkpoint.save(tiny_disk, 2, {"w": arrays["w"] + 1}, {"n": 2})
    message = str(caught.value)
    assert message.startswith(f"cannot write checkpoint 2 in {tiny_disk}: No space left on device")
    assert "\n" not in message
    assert [p.name for p in tiny_disk.iterdir()] == ["1"]
    found = checkpoint.latest_intact(tiny_disk, lambda record: arrays)
    assert found.step == 1 and tree_equal(found.arrays, arrays)
    assert "Traceback" not in capfd.readouterr().err
