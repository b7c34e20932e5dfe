"""The command line: `convgrad verify` prints a table, writes JSON, and exits non-zero on a failure; every path
argument is checked before any work, faults are one-line errors with the documented exit status, never a traceback.

The fault tests give `train` an empty --data-dir: a check that runs before any work fails before the data is
loaded, so the run ends with that check's status and message, not with the data error (exit 3) that loading
the empty directory would give.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convgrad
from convgrad import cli, train
from convgrad.ops import conv_textbook

ROOT = Path(__file__).resolve().parents[1]
USAGE, DATA, CHECKPOINT, OS_ERROR = (
    cli.ExitCode.USAGE,
    cli.ExitCode.DATA,
    cli.ExitCode.CHECKPOINT,
    cli.ExitCode.OS_ERROR,
)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``(status, stdout, stderr)`` of ``convgrad ARGV`` in this process."""
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_verify_quick_passes_and_writes_json(tmp_path, capsys):
    report = tmp_path / "report.json"
    status = cli.main(["verify", "--quick", "--ops", "conv", "--device", "cpu", "--json", str(report), "--no-progress"])
    out = capsys.readouterr().out
    assert status == 0
    assert "vs autodiff" in out and "adjoint" in out and "pass" in out
    data = json.loads(report.read_text())
    assert data["passed"] is True
    assert [row["op"] for row in data["summary"]] == ["conv"]
    assert data["summary"][0]["cases"] == 2
    assert all(case["passed"] for case in data["cases"])


def test_verify_fails_on_a_broken_vjp(mutate, capsys):
    mutate(conv_textbook, "conv_bias_grad", lambda g, geometry: jnp.mean(g, axis=(0, 2, 3)))
    # one process: the bug is patched into this one (a worker process would import the registry afresh)
    status = cli.main(["verify", "--quick", "--ops", "conv", "--jobs", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert status == cli.ExitCode.CHECK_FAILED == 1
    assert "FAIL" in out and "argument 2 (b)" in out


def test_verify_workers_give_one_process_results():
    """Two worker processes (spawned) measure exactly what one process does, in the plan's order."""
    from convgrad import verify

    triples = verify.plan(["relu", "conv", "max_pool"], quick=True)
    triples += verify.plan(["tanh"], dtypes=["float32", "float16"])[:4]  # two cases of two dtypes each
    alone = verify.run(triples, progress=False, jobs=1)
    side_by_side = verify.run(triples, progress=False, jobs=2)
    assert [(r.op, r.case, r.dtype) for r in side_by_side] == [(s.name, str(c), d) for s, c, d in triples]
    assert side_by_side == alone
    assert all(r.passed and r.autodiff is not None and r.grad_of_grad is not None for r in side_by_side)


def test_verify_checks_a_cases_dtypes_together_and_compiles_its_instruments_once(monkeypatch):
    """One process takes all of a case's dtypes: its float64 instruments are compiled once for them.

    A ``relu`` case compiles 4 programs in its first dtype (under test: the VJP with its own VJP
    in one program, and the VJP vmapped; the instruments: the float64 reference's VJP with its own
    VJP, the finite differences' forward) and the 2 under test in each further dtype: 8 for three
    dtypes, where releasing the programs after each dtype compiled 12 (and, before the two orders
    shared a program, 12 and 18).
    """
    from jax._src import monitoring

    from convgrad import verify

    triples = verify.plan(["relu", "tanh"], dtypes=["float32", "bfloat16", "float64"])[:6]
    assert verify._case_groups(triples) == [[0, 1, 2], [3, 4, 5]]
    compiled, per_case = [0], []
    real_clear = verify.clear_caches

    def count(event, duration, **_):
        compiled[0] += event == "/jax/core/compile/backend_compile_duration"

    def record_then_clear():
        per_case.append(compiled[0])
        compiled[0] = 0
        real_clear()

    monkeypatch.setattr(verify, "clear_caches", record_then_clear)
    real_clear()
    monitoring.register_event_duration_secs_listener(count)
    try:
        results = verify.run(triples, progress=False, jobs=1)
    finally:
        monitoring.unregister_event_duration_listener(count)
    assert [(r.op, r.dtype) for r in results] == [(s.name, d) for s, _, d in triples]
    assert all(r.passed for r in results)
    assert per_case == [8, 8]


def test_verify_compiles_the_programs_under_test_like_the_instruments_unless_xla_defaults(monkeypatch):
    """Each program under test compiles with ``verify.compiler_options``: the instruments' on CPU, ``{}`` with
    ``xla_defaults`` (``--xla-defaults``)."""
    from convgrad import testing, verify
    from convgrad.testing import vjp

    assert verify.compiler_options(xla_defaults=True) == {}
    assert verify.compiler_options() == testing.fast_compile_options(jax.default_backend())
    if jax.default_backend() == "cpu":
        assert verify.compiler_options()["xla_cpu_use_fusion_emitters"] is False
    given = []
    program_jit = vjp.program_jit
    monkeypatch.setattr(
        vjp, "program_jit", lambda fn, options=(): given.append(dict(options)) or program_jit(fn, options)
    )
    triples = verify.plan(["conv"], quick=True)[:1]
    verify.clear_caches()  # programs other tests compiled for this case would not be built again
    for xla_defaults in (False, True):
        given.clear()
        assert all(r.passed for r in verify.run(triples, progress=False, jobs=1, xla_defaults=xla_defaults))
        assert len(given) == 2  # the VJP with its own VJP, the vmapped VJP
        assert given == [verify.compiler_options(xla_defaults)] * 2


def test_verify_releases_each_cases_programs():
    """After each case its compiled programs are dropped (kept, a full run ran out of memory maps)."""
    from convgrad import verify
    from convgrad.testing import vjp

    verify.run(verify.plan(["relu"], quick=True)[:1], progress=False, jobs=1)
    cached = [
        verify._functions,
        vjp._jitted_vjp,
        vjp.vjp_program,
        vjp.reference_program,
        vjp.second_order_program,
        vjp.reference_second_order_program,
        vjp._batched_program,
    ]
    assert [f.cache_info().currsize for f in cached] == [0] * len(cached)


def test_verify_jobs_default_and_bad_values(capsys):
    from convgrad import verify

    cpus = len(os.sched_getaffinity(0))
    assert verify.default_jobs(1000, "cpu") == cpus
    assert verify.default_jobs(8 * cpus - 1, "cpu") == max(1, cpus - 1)
    assert verify.default_jobs(7, "cpu") == 1  # a worker's start-up costs about 2 cases
    assert verify.default_jobs(1000, "gpu") == verify.default_jobs(1000, "tpu") == 1
    triples = verify.plan(["relu"], quick=True)
    for jobs in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=re.escape(f"jobs={jobs!r}")):
            verify.run(triples, progress=False, jobs=jobs)
    spec, case, dtype = triples[0]
    mine = dataclasses.replace(spec, name="my_relu")  # a worker could not find it
    with pytest.raises(ValueError, match=re.escape("not in convgrad.registry.OPS: ['my_relu']")):
        verify.run([(mine, case, dtype), (spec, case, dtype)], progress=False, jobs=2)
    status, _, err = run_cli(capsys, "verify", "--quick", "--ops", "relu", "--jobs", "0")
    assert status == USAGE and "--jobs: expected a positive integer, got 0" in err


def test_unknown_op_is_a_clear_error(capsys):
    status, _, err = run_cli(capsys, "verify", "--ops", "nope")
    assert status == USAGE
    assert re.match(r"convgrad: verify: unknown op.*nope", err)


def test_missing_device_is_a_clear_error(capsys):
    if jax.devices("cpu") and jax.default_backend() == "tpu":
        pytest.skip("this machine has a TPU")
    status, _, err = run_cli(capsys, "verify", "--quick", "--device", "tpu", "--no-progress")
    assert status == USAGE
    assert err.startswith("convgrad: --device tpu: JAX sees no tpu device")


def test_module_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "convgrad", "verify", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert "--quick" in done.stdout and "--json" in done.stdout


# ---------------------------------------------------------------------------- --version, the train options


def test_version_is_the_package_version(capsys):
    status, out, _ = run_cli(capsys, "--version")
    assert status == 0
    assert out.startswith(f"convgrad {convgrad.__version__} ")


def test_the_version_is_written_once():
    """pyproject.toml takes the version from ``convgrad.__version__`` (what ``--version`` prints)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "convgrad.__version__"}


def test_train_options_are_the_config_fields_with_their_defaults_and_choices():
    parser = cli.build_parser()
    actions = {a.dest: a for a in parser._subparsers._group_actions[0].choices["train"]._actions}
    for field in train.TrainConfig.__dataclass_fields__.values():
        action = actions[field.name]
        assert action.option_strings == ["--" + field.name.replace("_", "-")]
        assert action.default == field.default
        assert action.type is train.TrainConfig.field_types()[field.name]
        assert action.choices == (list(field.metadata["choices"]) if "choices" in field.metadata else None)
    assert actions["model"].choices == list(train.MODELS) and actions["grads"].choices == list(train.KITS)
    args = parser.parse_args(["train"])
    assert train.TrainConfig(**{f: getattr(args, f) for f in train.TrainConfig.__dataclass_fields__}) == (
        train.TrainConfig()
    )


def test_a_bad_config_value_is_named_by_its_option(capsys, tmp_path):
    status, _, err = run_cli(capsys, "train", "--lr", "0", "--data-dir", str(tmp_path), "--no-progress")
    assert status == USAGE
    assert err == "convgrad: train: --lr=0.0 is not positive\n"


def test_the_exit_codes_are_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Exit codes") :]
    table = section[section.index("| status | meaning |") :].split("\n\n")[0]
    rows = {
        int(code): meaning.replace("`", "") for code, meaning in re.findall(r"^\| `(\d+)` \| (.+) \|$", table, re.M)
    }
    assert rows == {int(code): meaning for code, meaning in cli.EXIT_CODES.items()}
    assert set(cli.EXIT_CODES) == set(cli.ExitCode)


# ---------------------------------------------------------------------------- path arguments, before any work


@pytest.fixture
def empty_data(tmp_path) -> Path:
    directory = tmp_path / "no-mnist"
    directory.mkdir()
    return directory


def _writable(directory: Path) -> bool:
    probe = directory / ".probe"
    try:
        probe.write_bytes(b"")
    except OSError:
        return False
    probe.unlink()
    return True


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory this process cannot write in: mode 0o555, and for root (whom modes do not bind) immutable."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o555)
    immutable = False
    if _writable(directory) and shutil.which("chattr"):
        immutable = subprocess.run(["chattr", "+i", str(directory)], capture_output=True, check=False).returncode == 0
    try:
        if _writable(directory):
            pytest.skip("cannot make a directory read-only for this user (root, and chattr +i is refused here)")
        yield directory
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        directory.chmod(0o755)


def test_read_only_checkpoint_dir_fails_before_any_work(capsys, read_only_dir, empty_data):
    status, out, err = run_cli(
        capsys, "train", "--checkpoint-dir", str(read_only_dir), "--data-dir", str(empty_data), "--no-progress"
    )
    assert status == USAGE, err
    assert err.startswith(f"convgrad: train: --checkpoint-dir {read_only_dir}: is not writable (") and "\n" == err[-1:]
    assert out == ""


def test_checkpoint_dir_below_a_read_only_dir_fails_before_any_work(capsys, read_only_dir, empty_data):
    below = read_only_dir / "run1"
    status, _, err = run_cli(capsys, "train", "--checkpoint-dir", str(below), "--data-dir", str(empty_data))
    assert status == USAGE
    assert err.startswith(f"convgrad: train: --checkpoint-dir {below}: cannot be created in {read_only_dir} (")


def test_checkpoint_dir_that_is_a_file_fails_before_any_work(capsys, tmp_path, empty_data):
    existing = tmp_path / "checkpoints"
    existing.write_text("not a directory")
    status, out, err = run_cli(capsys, "train", "--checkpoint-dir", str(existing), "--data-dir", str(empty_data))
    assert status == USAGE
    assert err == f"convgrad: train: --checkpoint-dir {existing}: is a file, not a directory\n"
    assert out == ""


def test_checkpoint_dir_below_a_file_fails_before_any_work(capsys, tmp_path, empty_data):
    existing = tmp_path / "file"
    existing.write_text("")
    status, _, err = run_cli(capsys, "train", "--checkpoint-dir", str(existing / "run"), "--data-dir", str(empty_data))
    assert status == USAGE
    assert err == f"convgrad: train: --checkpoint-dir {existing / 'run'}: cannot be created: {existing} is a file\n"


@pytest.mark.parametrize(
    "command",
    [["train", "--data-dir", "{data}"], ["verify", "--ops", "relu", "--quick"], ["bench", "--ops", "relu"]],
    ids=lambda c: c[0],
)
def test_json_path_that_is_a_directory_fails_before_any_work(capsys, tmp_path, empty_data, command):
    argv = [a.format(data=empty_data) for a in command]
    status, out, err = run_cli(capsys, *argv, "--json", str(tmp_path), "--no-progress")
    assert status == USAGE
    assert err == f"convgrad: {command[0]}: --json {tmp_path}: is a directory, not a file\n"
    assert out == ""


def test_json_in_a_read_only_dir_fails_before_any_work(capsys, read_only_dir, empty_data):
    target = read_only_dir / "report.json"
    status, _, err = run_cli(capsys, "train", "--json", str(target), "--data-dir", str(empty_data))
    assert status == USAGE
    assert err.startswith(f"convgrad: train: --json {target}: its directory {read_only_dir} is not writable (")


def test_plot_path_that_is_a_directory_fails_before_any_work(capsys, tmp_path):
    status, out, err = run_cli(capsys, "bench", "--ops", "relu", "--plot", str(tmp_path), "--no-progress")
    assert status == USAGE
    assert err == f"convgrad: bench: --plot {tmp_path}: is a directory, not a file\n"
    assert out == ""


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_data_dir_that_is_not_a_directory_fails_before_any_work(capsys, tmp_path, kind):
    path = tmp_path / "mnist"
    if kind == "file":
        path.write_text("")
    status, _, err = run_cli(capsys, "train", "--data-dir", str(path))
    assert status == USAGE
    expected = "does not exist" if kind == "missing" else "is a file, not a directory"
    assert err == f"convgrad: train: --data-dir {path}: {expected}\n"


def test_resume_needs_a_checkpoint_dir(capsys, empty_data):
    status, _, err = run_cli(capsys, "train", "--resume", "--data-dir", str(empty_data))
    assert status == USAGE
    assert err == "convgrad: train: --resume needs --checkpoint-dir, the directory of the checkpoint\n"


# ---------------------------------------------------------------------------- checkpoints


LINEAR = train.TrainConfig(model="linear", epochs=2)


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """A real checkpoint of ``LINEAR`` after its first epoch (written by save_checkpoint), in ``tmp_path/ckpt``."""
    optimizer = train.make_optimizer(LINEAR, 10)
    state = train.init_state(train.MODELS["linear"], LINEAR, optimizer)
    history = [{"epoch": 1, "train_loss": 1.0, "seconds": 1.0, "examples_per_second": 1.0, "test_accuracy": 0.5}]
    return train.save_checkpoint(tmp_path / "ckpt", LINEAR, state, history)


def _resume(capsys, checkpoint: Path, data: Path, *options: str) -> tuple[int, str, str]:
    return run_cli(
        capsys, "train", "--model", "linear", "--epochs", "2", *options, "--resume", "--checkpoint-dir",
        str(checkpoint.parent), "--data-dir", str(data), "--no-progress",
    )  # fmt: skip


def _assert_one_line_checkpoint_error(status: int, err: str, path: Path, problem: str) -> None:
    assert status == CHECKPOINT, err
    assert err.startswith(f"convgrad: train: --resume: {path}: {problem}"), err
    assert err.count("\n") == 1 and err.endswith("\n")


def test_corrupt_checkpoint_is_a_one_line_error(capsys, checkpoint, empty_data):
    checkpoint.write_bytes(os.urandom(5000))
    status, _, err = _resume(capsys, checkpoint, empty_data)
    _assert_one_line_checkpoint_error(status, err, checkpoint, "not a safetensors file")


def test_truncated_checkpoint_is_a_one_line_error(capsys, checkpoint, empty_data):
    content = checkpoint.read_bytes()
    checkpoint.write_bytes(content[: len(content) - 100])
    status, _, err = _resume(capsys, checkpoint, empty_data)
    _assert_one_line_checkpoint_error(status, err, checkpoint, "truncated: its tensors need")


def test_checkpoint_truncated_in_its_header_is_a_one_line_error(capsys, checkpoint, empty_data):
    checkpoint.write_bytes(checkpoint.read_bytes()[:50])
    status, _, err = _resume(capsys, checkpoint, empty_data)
    _assert_one_line_checkpoint_error(status, err, checkpoint, "truncated: its header needs")


def test_checkpoint_with_a_changed_byte_is_a_one_line_error(capsys, checkpoint, empty_data):
    content = bytearray(checkpoint.read_bytes())
    content[-7] ^= 0x40  # inside the last tensor's data
    checkpoint.write_bytes(bytes(content))
    status, _, err = _resume(capsys, checkpoint, empty_data)
    _assert_one_line_checkpoint_error(status, err, checkpoint, "corrupt: its tensors do not match the SHA-256")


def test_empty_checkpoint_is_a_one_line_error(capsys, checkpoint, empty_data):
    checkpoint.write_bytes(b"")
    status, _, err = _resume(capsys, checkpoint, empty_data)
    _assert_one_line_checkpoint_error(status, err, checkpoint, "truncated: 0 bytes")


def test_missing_checkpoint_is_a_one_line_error(capsys, tmp_path, empty_data):
    missing = tmp_path / "ckpt" / train.CHECKPOINT
    missing.parent.mkdir()
    status, _, err = _resume(capsys, missing, empty_data)
    _assert_one_line_checkpoint_error(status, err, missing, "no checkpoint here to resume from")


def test_checkpoint_of_another_configuration_names_the_options(capsys, checkpoint, empty_data):
    status, _, err = _resume(capsys, checkpoint, empty_data, "--lr", "0.01")
    assert status == CHECKPOINT
    assert err.startswith(
        f"convgrad: train: --resume: {checkpoint} was written by another configuration: "
        "--lr 0.01 but the checkpoint has 0.002 (resume continues"
    )


def test_no_traceback_reaches_the_user(tmp_path, checkpoint, empty_data):
    """The installed entry point (``python -m convgrad``): a corrupt checkpoint, one line on stderr, status 4."""
    checkpoint.write_bytes(b"PK\x03\x04" + bytes(200))  # the start of a zip file: what numpy's .npz were
    done = subprocess.run(
        [sys.executable, "-m", "convgrad", "train", "--model", "linear", "--epochs", "2", "--resume",
         "--checkpoint-dir", str(checkpoint.parent), "--data-dir", str(empty_data), "--no-progress"],
        capture_output=True, text=True, check=False, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == CHECKPOINT, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert done.stderr == (
        f"convgrad: train: --resume: {checkpoint}: not a safetensors file: no JSON header after its first 8 bytes "
        "(a zip file, as the .npz checkpoints of earlier convgrad versions were)\n"
    )


# ---------------------------------------------------------------------------- faults during the run


@pytest.fixture
def synthetic_mnist(monkeypatch):
    """``train.load_dataset`` returns a small synthetic dataset: the CLI's run takes a second, without MNIST."""
    monkeypatch.setattr(train, "load_dataset", lambda *args, **kwargs: train.synthetic_dataset(64, 32))


def test_disk_full_during_the_run_is_one_line_naming_the_checkpoint(capsys, tmp_path, synthetic_mnist, monkeypatch):
    def disk_full(source, target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), source)  # what os.replace raises: the temporary's name

    monkeypatch.setattr(os, "replace", disk_full)
    directory = tmp_path / "ckpt"
    argv = ["train", "--model", "linear", "--epochs", "1", "--checkpoint-dir", str(directory), "--no-progress"]
    status, _, err = run_cli(capsys, *argv)
    assert status == OS_ERROR
    assert err == f"convgrad: train: No space left on device: {directory / train.CHECKPOINT}\n"
    assert [p.name for p in directory.iterdir()] == []  # the temporary file removed


def test_cli_train_resumes_and_writes_its_report(capsys, tmp_path, synthetic_mnist):
    directory, report = tmp_path / "ckpt", tmp_path / "out" / "report.json"
    argv = ["train", "--model", "linear", "--epochs", "2", "--checkpoint-dir", str(directory), "--no-progress"]
    assert run_cli(capsys, *argv, "--json", str(report))[0] == 0
    params, _, meta = train.load_checkpoint(directory / train.CHECKPOINT)
    assert meta["epochs_done"] == 2 and meta["config"]["model"] == "linear"
    assert json.loads(report.read_text())["history"] == meta["history"]
    status, out, _ = run_cli(capsys, *argv, "--resume")  # nothing left to do: the checkpoint is the last epoch's
    assert status == 0 and "done: linear, 2 epochs" in out
    again, _, _ = train.load_checkpoint(directory / train.CHECKPOINT)
    np.testing.assert_array_equal(again["dense0"]["w"], params["dense0"]["w"])


def test_ctrl_c_is_one_line_and_status_130(capsys, tmp_path, synthetic_mnist, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train", interrupted)
    status, _, err = run_cli(capsys, "train", "--model", "linear")
    assert status == cli.ExitCode.INTERRUPTED == 130
    assert err == "\nconvgrad: interrupted\n"


def test_verify_compilation_cache_is_filled_then_read(tmp_path):
    """``--compilation-cache``: the first run writes its programs there, a rerun reads them, same table."""
    cache = tmp_path / "new" / "cache"  # created by the first run
    argv = [sys.executable, "-m", "convgrad", "verify", "--quick", "--ops", "relu,dense", "--no-progress"]
    argv += ["--compilation-cache", str(cache)]
    env = {**os.environ, "JAX_LOG_COMPILES": "1"}  # JAX then logs each program and each persistent-cache hit
    first, second = (subprocess.run(argv, capture_output=True, text=True, check=False, env=env) for _ in range(2))
    assert (first.returncode, second.returncode) == (0, 0), first.stderr[-2000:]
    programs, hits = "Finished XLA compilation", "Persistent compilation cache hit"
    assert first.stderr.count(programs) >= 4 and hits not in first.stderr  # the VJPs, references, differences
    assert len(list(cache.iterdir())) >= first.stderr.count(programs)
    assert second.stderr.count(hits) == second.stderr.count(programs) == first.stderr.count(programs)
    assert second.stdout == first.stdout and "4/4 cases passed" in second.stdout


def test_verify_compilation_cache_must_be_a_directory(tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("")
    status, _, err = run_cli(capsys, "verify", "--quick", "--ops", "relu", "--compilation-cache", str(file))
    assert status == USAGE and f"verify: --compilation-cache {file}: is a file, not a directory" in err


def test_compilation_cache_applies_after_earlier_compilations(tmp_path):
    """``use_compilation_cache`` in a process that has compiled before: the programs compiled after it are kept."""
    script = f"""
import jax, jax.numpy as jnp
from convgrad import verify
jax.jit(jnp.sin)(1.0)                      # a compilation before: no cache yet
verify.use_compilation_cache({str(tmp_path)!r})
jax.jit(jnp.cos)(1.0)                      # after: written to the cache
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    assert [p.name for p in tmp_path.iterdir() if "cos" in p.name]
    assert not [p.name for p in tmp_path.iterdir() if "sin" in p.name]
