"""Search building blocks without processes: core accounting, the trial space, the median rule."""

import itertools

import pytest

from orchestrator.search.scheduler import allocate
from orchestrator.search.space import check_space, trials
from orchestrator.search.stopping import should_stop
from orchestrator.spec import SearchSpec


def test_trials_never_oversubscribe_the_cores():
    for cores, max_parallel, threads, nodes in itertools.product([1, 2, 3, 4, 8, 16], [1, 2, 3, 5, 64],
                                                                 [None, 1, 2, 3, 32], [1, 2]):
        a = allocate(trials=6, max_parallel=max_parallel, cores=cores, threads=threads, nodes_per_trial=nodes)
        case = (cores, max_parallel, threads, nodes, a)
        assert 1 <= a.parallel <= min(max_parallel, 6) and a.threads >= 1, case
        assert a.threads * nodes * a.parallel <= max(cores, nodes), case   # one thread per node at least
        if threads is None and nodes * max_parallel <= cores:
            assert a.parallel == min(max_parallel, 6), case                 # cores to spare: no trial waits


def test_allocation_examples():
    assert (allocate(trials=6, max_parallel=2, cores=2).parallel, allocate(trials=6, max_parallel=2, cores=2).threads) == (2, 1)
    eight = allocate(trials=6, max_parallel=2, cores=8)
    assert (eight.parallel, eight.threads) == (2, 4)
    asked = allocate(trials=6, max_parallel=4, cores=2, threads=2)
    assert (asked.parallel, asked.threads) == (1, 2) and "would oversubscribe" in asked.reason
    assert allocate(trials=3, max_parallel=8, cores=64).parallel == 3          # no more than there are trials
    cloud = allocate(trials=6, max_parallel=3, cores=None)
    assert (cloud.parallel, cloud.threads, cloud.thread_envs()) == (3, None, ())
    assert dict(allocate(trials=2, max_parallel=2, cores=4).thread_envs())["OMP_NUM_THREADS"] == "2"
    with pytest.raises(ValueError):
        allocate(trials=0, max_parallel=1, cores=2)


def space(**kw) -> SearchSpec:
    return SearchSpec.model_validate({"space": {"lr": {"range": [0.001, 0.1], "log": True},
                                                "num_layers": {"choices": [20, 32]}}, **kw})


def test_grid_and_random_spaces_are_deterministic():
    grid = trials(space(algorithm="grid", trials=6))
    assert grid == [{"lr": 0.001, "num_layers": 20}, {"lr": 0.001, "num_layers": 32}, {"lr": 0.01, "num_layers": 20},
                    {"lr": 0.01, "num_layers": 32}, {"lr": 0.1, "num_layers": 20}, {"lr": 0.1, "num_layers": 32}]
    drawn = trials(space(trials=20, seed=3))
    assert drawn == trials(space(trials=20, seed=3)) and drawn != trials(space(trials=20, seed=4))
    assert all(0.001 <= t["lr"] <= 0.1 and t["num_layers"] in (20, 32) for t in drawn)
    ints = trials(SearchSpec.model_validate({"space": {"batch": {"range": [8, 12], "type": "int"}}, "trials": 30}))
    assert {t["batch"] for t in ints} <= set(range(8, 13)) and all(isinstance(t["batch"], int) for t in ints)


def test_bad_spaces_are_named():
    bad = SearchSpec.model_validate({"space": {"lr": {"range": [0.1, 0.01]}, "wd": {"range": [0, 1], "log": True},
                                              "n": {"range": [1.2, 1.8], "type": "int"}}})
    assert check_space(bad) == ["lr: range [0.1, 0.01] must have low < high", "wd: a log range needs low > 0 (got 0.0)",
                                "n: the int range [1.2, 1.8] holds no whole number"]


def test_median_rule():
    others = [[0.5, 0.6, 0.7], [0.4, 0.6, 0.8], [0.5, 0.7, 0.9]]
    rule = dict(goal="max", min_epochs=2, min_trials=3)
    assert should_stop([0.1, 0.2], others, **rule)                  # clearly behind at epoch 2
    assert not should_stop([0.1], others, **rule)                   # too early to judge
    assert not should_stop([0.5, 0.7], others, **rule)              # at the median's level
    assert not should_stop([0.1, 0.2], others[:2], **rule)          # too few peers
    assert should_stop([0.9, 0.8], [[0.5, 0.4]] * 3, goal="min", min_epochs=2, min_trials=3)
