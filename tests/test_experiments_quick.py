"""The other experiments end to end in --quick mode (embedded data, tmp_path): files and keys."""

import json

import numpy as np


def test_minibatch_noise_quick_run(tmp_path):
    from experiments import minibatch_noise

    out = tmp_path / "noise"
    minibatch_noise.main(["--quick", "--out", str(out)])
    assert (out / "noise_vs_batch_size.png").stat().st_size > 10_000
    res = json.loads((out / "results.json").read_text())
    assert len(res["checkpoints"]) >= 2
    for point in res["checkpoints"]:
        sizes = [b["batch_size"] for b in point["batches"]]
        assert sizes == sorted(sizes) and sizes[0] == 1
        # the chunked per-example moments reproduce the full gradient
        assert point["chunked_mean_vs_mean_grad_rel_diff"] < 1e-4
        errors = [b["rms_relative_error"] for b in point["batches"]]
        # bigger mini-batches estimate the full gradient better (1/sqrt(B), up to noise)
        assert errors[-1] < errors[0]
        for b in point["batches"]:
            measured, predicted = b["mean_squared_error"], b["predicted_squared_error"]
            assert np.isfinite(measured) and predicted >= 0
