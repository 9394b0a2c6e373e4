"""Few known pairs plus unpaired rows of *different* items (planted rotation, disjoint remainders)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentalign import Procrustes
from latentalign.functional.self_learning import TRANSPORT_ROUTES, TransportRoute, transport_route_maps
from latentalign.functional.transport_refine import relative_transport_start, transport_refined_map, transport_rounds

D, N_PAIRS, N_FREE = 24, 20, 400


def _planted(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two samples of one clustered, anisotropic distribution; Y's rotated by Q; the first 20 rows shared."""
    rng = np.random.default_rng(seed)
    spectrum = np.geomspace(3.0, 0.3, D)
    centres = rng.normal(size=(15, D)) * spectrum

    def cloud(n: int) -> np.ndarray:
        return centres[rng.integers(0, 15, n)] + 0.4 * rng.normal(size=(n, D)) * spectrum

    shared = cloud(N_PAIRS)
    Q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    X = np.concatenate([shared, cloud(N_FREE)])
    Y = np.concatenate([shared, cloud(N_FREE)]) @ Q
    return X, Y, Q, cloud(300)


def _error(transform, test: np.ndarray, Q: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(transform(test)) - test @ Q) / np.linalg.norm(test))


def _fit_map(A: torch.Tensor, B: torch.Tensor):
    model = Procrustes().fit(A, B)
    return model._transform, model


@pytest.mark.filterwarnings("ignore::latentalign.exceptions.IllConditionedWarning")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_soft_matching_beats_the_pairs_alone_on_disjoint_rows(seed):
    X, Y, Q, test = _planted(seed)
    pairs = torch.stack([torch.arange(N_PAIRS), torch.arange(N_PAIRS)], 1)
    free = torch.arange(N_PAIRS, N_PAIRS + N_FREE)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    alone = Procrustes().fit(X[:N_PAIRS], Y[:N_PAIRS])
    soft, _ = transport_refined_map(Xt, Yt, _fit_map, pairs=pairs, rows_x=free, rows_y=free, start="relative")
    pairs_start, _ = transport_refined_map(Xt, Yt, _fit_map, pairs=pairs, rows_x=free, rows_y=free, start="pairs")
    baseline = _error(alone.transform, test, Q)
    assert _error(lambda Z: soft(torch.from_numpy(Z)), test, Q) < 0.6 * baseline
    assert _error(lambda Z: pairs_start(torch.from_numpy(Z)), test, Q) < 0.8 * baseline


@pytest.mark.filterwarnings("ignore::latentalign.exceptions.IllConditionedWarning")
@pytest.mark.parametrize("route", sorted(TRANSPORT_ROUTES))
def test_every_route_of_the_route_check_beats_the_pairs_alone_on_disjoint_rows(route):
    X, Y, Q, test = _planted(0)
    pairs = torch.stack([torch.arange(N_PAIRS), torch.arange(N_PAIRS)], 1)
    free = torch.arange(N_PAIRS, N_PAIRS + N_FREE)
    transform, _ = transport_refined_map(
        torch.from_numpy(X),
        torch.from_numpy(Y),
        _fit_map,
        pairs=pairs,
        rows_x=free,
        rows_y=free,
        **TRANSPORT_ROUTES[route]._asdict(),
    )
    baseline = _error(Procrustes().fit(X[:N_PAIRS], Y[:N_PAIRS]).transform, test, Q)
    assert _error(lambda Z: transform(torch.from_numpy(Z)), test, Q) < 0.8 * baseline


def test_start_reg_blurs_only_the_relative_start():
    X, Y, _, test = _planted(1)
    pairs = torch.stack([torch.arange(N_PAIRS), torch.arange(N_PAIRS)], 1)
    free = torch.arange(N_PAIRS, N_PAIRS + N_FREE)
    Xt, Yt, Zt = torch.from_numpy(X), torch.from_numpy(Y), torch.from_numpy(test)

    def mapped(**options):
        transform, _ = transport_refined_map(Xt, Yt, _fit_map, pairs=pairs, rows_x=free, rows_y=free, **options)
        return transform(Zt)

    assert torch.equal(mapped(start="relative", reg=0.2), mapped(start="relative", reg=0.2, start_reg=0.2))
    assert not torch.allclose(mapped(start="relative", n_rounds=0), mapped(start="relative", n_rounds=0, start_reg=0.5))
    assert torch.equal(mapped(start="pairs", reg=0.2), mapped(start="pairs", reg=0.2, start_reg=0.5))


def _fit_alone(A: torch.Tensor, B: torch.Tensor):
    model = Procrustes(center=False).fit(A, B)
    return model._transform, model


@pytest.mark.filterwarnings("ignore::latentalign.exceptions.IllConditionedWarning")
def test_routes_that_share_a_start_or_rounds_give_the_maps_each_fitted_alone():
    X, Y, _, test = _planted(2)
    pairs = torch.stack([torch.arange(N_PAIRS), torch.arange(N_PAIRS)], 1)
    free = torch.arange(N_PAIRS, N_PAIRS + N_FREE)
    Xt, Yt, Zt = torch.from_numpy(X), torch.from_numpy(Y), torch.from_numpy(test)
    routes = {
        **TRANSPORT_ROUTES,
        "no rounds": TransportRoute("relative", 0, 0.1, start_reg=0.3),
        "own start": TransportRoute("relative", 3, 0.1),
        "pairs, 3 rounds": TransportRoute("pairs", 3, 0.1),
    }
    alone = _fit_alone(Xt[:N_PAIRS], Yt[:N_PAIRS])
    shared = transport_route_maps(
        Xt, Yt, _fit_map, _fit_alone, pairs=pairs, rows_x=free, rows_y=free, alone=alone, routes=routes
    )
    assert sorted(shared) == sorted(routes)
    for name, route in routes.items():
        fit = _fit_alone if route.start == "pairs" else _fit_map
        start_map = alone if route.start == "pairs" else None
        each, _ = transport_refined_map(
            Xt, Yt, fit, pairs=pairs, rows_x=free, rows_y=free, start_map=start_map, **route._asdict()
        )
        assert torch.equal(shared[name](Zt), each(Zt)), name
    # the maps differ between routes, so the equalities above are not those of one map
    assert not torch.allclose(shared["no rounds"](Zt), shared["transport (relative start, 1 round)"](Zt))


@pytest.mark.filterwarnings("ignore::latentalign.exceptions.IllConditionedWarning")
def test_transport_rounds_are_the_rounds_of_transport_refined_map():
    X, Y, _, test = _planted(0)
    pairs = torch.stack([torch.arange(N_PAIRS), torch.arange(N_PAIRS)], 1)
    free = torch.arange(N_PAIRS, N_PAIRS + N_FREE)
    Xt, Yt, Zt = torch.from_numpy(X), torch.from_numpy(Y), torch.from_numpy(test)
    start = relative_transport_start(Xt, Yt, _fit_map, pairs=pairs, rows_x=free, rows_y=free, reg=0.3)
    rounds = transport_rounds(Xt, Yt, _fit_map, start, pairs=pairs, rows_x=free, rows_y=free, reg=0.1, n_rounds=3)
    for k, (transform, _) in enumerate(rounds, start=1):
        alone, _ = transport_refined_map(
            Xt, Yt, _fit_map, pairs=pairs, rows_x=free, rows_y=free, reg=0.1, start_reg=0.3, n_rounds=k
        )
        assert torch.equal(transform(Zt), alone(Zt))
        given, _ = transport_refined_map(
            Xt, Yt, _fit_map, pairs=pairs, rows_x=free, rows_y=free, reg=0.1, n_rounds=k, start_map=start
        )
        assert torch.equal(transform(Zt), given(Zt))


def test_transport_refined_map_checks_its_arguments():
    X = torch.randn(30, 3, dtype=torch.float64)
    pairs = torch.stack([torch.arange(5), torch.arange(5)], 1)
    with pytest.raises(ValueError, match="rows_x and rows_y"):
        transport_refined_map(X, X, _fit_map, pairs=pairs, rows_x=torch.arange(5, 6), rows_y=torch.arange(5, 30))
    with pytest.raises(ValueError, match="start"):
        transport_refined_map(
            X, X, _fit_map, pairs=pairs, rows_x=torch.arange(5, 30), rows_y=torch.arange(5, 30), start="gw"
        )
    with pytest.raises(ValueError, match="start_reg"):
        transport_refined_map(
            X, X, _fit_map, pairs=pairs, rows_x=torch.arange(5, 30), rows_y=torch.arange(5, 30), start_reg=0.0
        )
    with pytest.raises(ValueError, match="n_rounds"):
        start = _fit_map(X[:5], X[:5])
        transport_rounds(
            X, X, _fit_map, start, pairs=pairs, rows_x=torch.arange(5, 30), rows_y=torch.arange(5, 30), n_rounds=0
        )
    with pytest.raises(ValueError, match="reg"):
        relative_transport_start(
            X, X, _fit_map, pairs=pairs, rows_x=torch.arange(5, 30), rows_y=torch.arange(5, 30), reg=-1
        )
