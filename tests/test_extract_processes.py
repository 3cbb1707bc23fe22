"""Extraction across processes: torchrun with 2 CPU processes, and a run killed with SIGKILL then resumed.

Both drive ``tests/mp_extract_worker.py`` (tiny BERT, raw text tokenised in the map, the real
``GradientSketcher`` with a loss target on the head) in a subprocess and compare with an in-process
single-process extraction.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mp_extract_worker import build_inputs

from hf_skmm.integrations import extract
from hf_skmm.testing import tiny_tokenizer

WORKER = str(Path(__file__).with_name("mp_extract_worker.py"))
ROWS, CHUNK, BATCH = 40, 8, 4


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _worker_args(cache: Path, out: Path, *extra: str) -> list[str]:
    return [
        WORKER, "--cache-dir", str(cache), "--out", str(out), "--rows", str(ROWS),
        "--rows-per-chunk", str(CHUNK), "--batch-size", str(BATCH), *extra,
    ]  # fmt: skip


def _in_process(cache: Path, counter: list[int] | None = None):
    """Single-process extraction of the worker's inputs, optionally counting the rows sketched."""
    model, dataset, gradient_config, sketch_config = build_inputs(ROWS, "real")
    real_build = extract._build_sketcher

    def counting_build(*args):
        sketcher = real_build(*args)

        class Counting:
            out_dim = sketcher.out_dim
            identity = staticmethod(sketcher.identity)

            def __call__(self, batch, rows):
                if counter is not None:
                    counter.append(len(rows))
                return sketcher(batch, rows)

        return Counting()

    extract._build_sketcher = counting_build
    try:
        sketched = extract.extract_sketches(
            model, dataset, gradient_config, sketch_config, tokenizer=tiny_tokenizer(), batch_size=BATCH,
            cache_dir=cache, rows_per_chunk=CHUNK,
        )  # fmt: skip
    finally:
        extract._build_sketcher = real_build
    table = sketched.with_format("numpy")[:]
    return table["skmm_index"], table["skmm_sketch"]


@pytest.mark.multiprocess
def test_two_cpu_processes_give_the_single_process_result(tmp_path):
    index, reference = _in_process(tmp_path / "single")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        cmd + _worker_args(tmp_path / "cache", out), env=_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [np.load(out / f"rank{r}.npz") for r in (0, 1)]
    assert [int(r["num_processes"]) for r in ranks] == [2, 2]
    # each process sketched its own contiguous half of the chunks, no row twice
    assert [int(r["rows_seen"]) for r in ranks] == [24, 16]
    for r in ranks:  # every process returns the same Dataset, equal to the single-process one
        np.testing.assert_array_equal(r["index"], index)
        np.testing.assert_allclose(r["sketch"], reference, rtol=1e-5, atol=1e-6)
    # ... and therefore the same coreset for the same seed (the package's determinism promise)
    from hf_skmm.selection import select

    for method in ("skmm", "uniform", "kcenter"):
        expected = select(reference, n=8, method=method, seed=3).indices
        for r in ranks:
            np.testing.assert_array_equal(select(r["sketch"], n=8, method=method, seed=3).indices, expected)


def test_killed_run_resumes_from_finished_chunks(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, *_worker_args(cache, out, "--sleep", "0.4")],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(cache.glob("*/chunk-*.arrow"))) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"worker ended before it was killed: {proc.stderr.read()[-2000:]!r}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    (work_dir,) = cache.iterdir()
    finished = sorted(work_dir.glob("chunk-*.arrow"))
    assert 2 <= len(finished) < ROWS // CHUNK
    assert not (work_dir / "manifest.json").exists()

    rows: list[int] = []
    index, resumed = _in_process(cache, counter=rows)
    assert sum(rows) == ROWS - CHUNK * len(finished)  # only the unfinished chunks were computed
    _, uninterrupted = _in_process(tmp_path / "fresh")
    np.testing.assert_array_equal(index, np.arange(ROWS))
    np.testing.assert_allclose(resumed, uninterrupted, rtol=1e-6, atol=1e-7)
    assert sorted(p.name for p in work_dir.iterdir() if not p.name.startswith("chunk-")) == ["manifest.json"]
