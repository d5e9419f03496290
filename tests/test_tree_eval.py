"""The paired head comparison (evaluation/compare.py): τ per round from accept maps, and its bootstrap interval."""

import numpy as np
import torch

from eventspec.evaluation.compare import paired_bootstrap, tau_per_round, verdict
from eventspec.evaluation.evaluate import Rows


def rows_of(match: list[list[bool]]) -> Rows:
    m = torch.tensor(match)
    return Rows(torch.zeros(m.shape), m, torch.ones(m.shape, dtype=torch.bool), np.zeros(len(match), dtype=np.int64))


def test_tau_per_round_replays_greedy_rounds():
    # row 0: all 6 accepted, gamma 3: round 1 accepts 3 (+1) -> start 4, round 2 accepts 2 (+1, ends): 7 / 2 rounds
    # row 1: nothing accepted: every round 1 token: tau 1
    taus = tau_per_round(rows_of([[True] * 6, [False] * 6]), gamma=3)
    np.testing.assert_allclose(taus, [(3 + 2 + 2) / 2, 1.0])


def test_paired_bootstrap_interval_excludes_zero_only_for_a_real_difference():
    rng = np.random.default_rng(0)
    reference = rng.uniform(1, 3, 200)
    better = paired_bootstrap(reference, reference + 0.2 + rng.normal(0, 0.05, 200), 2000, 0)
    assert better["interval_95"][0] > 0 and abs(better["difference"] - 0.2) < 0.02
    same = paired_bootstrap(reference, reference + rng.normal(0, 0.05, 200), 2000, 0)
    assert same["interval_95"][0] < 0 < same["interval_95"][1]
    result = {"reference": "B1_tok", "candidate": "B1E", "overall": same}
    assert "does not significantly change" in verdict(result)
