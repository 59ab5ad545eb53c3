"""The structure-known oracle as the evaluation's ceiling row."""

import numpy as np
import pytest

from nmrladder.train import evaluate, metrics
from nmrladder.train.simulate import simulate_ladders


class Identity:
    def denoise(self, x):
        return np.asarray(x, dtype=np.float32)


@pytest.fixture(scope="module")
def ladders():
    return simulate_ladders(6, 3, 4096, 2.0, 8.0, 41, family="13c", keep_oracle=True)


def test_oracle_item_is_the_fit_in_rung0_units(ladders):
    items = evaluate.prepare_items(ladders, "c13")
    for item in items:
        i = item.index
        want = (ladders.oracle[i] - ladders.norm_offset[i, 0]) / ladders.norm_scale[i, 0]
        np.testing.assert_allclose(item.oracle, want, rtol=1e-6)
        # the fit is far closer to the truth than the noisy input is, in the peak regions too
        assert metrics.error_snr_db(item.oracle, item.truth, item.region) > \
            metrics.error_snr_db(item.noisy, item.truth, item.region) + 3


def test_report_has_the_oracle_row_and_the_distance_to_it(ladders):
    report = evaluate.evaluate_denoisers({"same": Identity()}, {"c13": ladders}, ladders,
                                         baselines=False)
    rows = report.summary["c13"]
    assert evaluate.ORACLE_NAME in rows
    ceiling = rows[evaluate.ORACLE_NAME]["gain_db_peaks"]
    assert ceiling > 3
    # a denoiser that returns its input sits exactly as far below the ceiling as the input
    assert rows["same"]["to_oracle_db_peaks"] == pytest.approx(-ceiling, abs=1e-9)
    assert rows[evaluate.ORACLE_NAME]["to_oracle_db_peaks"] == 0.0
    assert "to oracle dB (P)" in report.table()


def test_a_set_without_oracle_has_no_ceiling_row():
    plain = simulate_ladders(4, 3, 4096, 2.0, 8.0, 42)
    report = evaluate.evaluate_denoisers({"same": Identity()}, {"h1": plain}, plain,
                                         baselines=False)
    assert evaluate.ORACLE_NAME not in report.summary["h1"]
    assert np.isnan(report.summary["h1"]["same"]["to_oracle_db_peaks"])
