"""MLP aligner: a small neural network trained to map source embeddings onto target embeddings.

The network works on standardised data: ``x_s = (x - mean_x) / scale_x`` (per column), then hidden layers
``h = act(h W_i + b_i)``, an output layer, and (``linear_skip=True``) a linear path ``x_s W_skip`` added to
the output; the prediction is rescaled as ``y = out * scale_y + mean_y`` (one scale for all target columns,
so the mean squared error weighs every target direction as the original space does).

With ``linear_skip=True`` the linear path is the ridge regression solution on the training rows (the ridge
picked from :data:`SKIP_RIDGES` on the held-out pairs) and stays fixed while the hidden layers learn the
residual (the output layer starts at half PyTorch's default initial scale). With early stopping on held-out
pairs (``validation_fraction``) the weights of the best epoch are kept, the starting point included, so the
held-out loss is never worse than that of the linear map. On a linear relation the result stays close to
:class:`~latentalign.align.affine.Affine`; on a curved one it improves on it.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from typing import Any, ClassVar, cast

import numpy as np
import torch
from sklearn.utils import check_random_state
from torch import nn

from latentalign._array import ArrayLike
from latentalign._validation import check_choice, check_number, check_pair
from latentalign.align.base import Aligner
from latentalign.exceptions import ConvergenceWarning
from latentalign.functional.blocks import one_torch_thread

__all__ = ["MLPAligner", "MLPMap", "ACTIVATIONS", "LOSSES", "MIN_STEPS", "SKIP_RIDGES"]

#: Hidden-layer activations accepted by :class:`MLPAligner` (functions of ``torch.nn.functional``).
ACTIVATIONS = ("relu", "gelu", "tanh", "silu")
#: Training losses: mean squared error on standardised targets, or one minus the cosine similarity.
LOSSES = ("mse", "cosine")
_F64 = torch.float64
#: Ridges of the linear start, relative to the mean eigenvalue of the standardised ``X^T X``: the one with
#: the lowest held-out loss is used (the first without early stopping). With fewer pairs than dimensions a
#: near-interpolating start overfits, and training from it does not recover (measured on 720 pairs of
#: 1280-d image embeddings: stitching macro F1 0.54 from the smallest ridge).
SKIP_RIDGES = (1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)
# Columns whose standard deviation is below this are left unscaled.
_STD_EPS = 1e-12
# Training steps of fewer multiply-adds than this run on one CPU thread (see _one_thread).
_SMALL_STEP = 2**22
# Initial scale of the output layer over the linear start: a zero layer gives the hidden layers no gradient
# at first and the held-out loss a plateau that early stopping took for convergence (measured: 0.1 stalled
# on one seed in four on a planted tanh map, 0.5 on none).
_OUT_SCALE = 0.5
#: Fewest optimizer steps before training may stop: the loss leaves the linear start slowly, and a small
#: training set (a few steps per epoch) would otherwise stop on that plateau.
MIN_STEPS = 300


class MLPMap(nn.Module):
    """The network of :class:`MLPAligner` with its standardisation, as a module.

    Parameters
    ----------
    weights, biases : sequences of torch.Tensor
        ``weights[i]`` of shape ``(in_i, out_i)`` (the transpose of ``nn.Linear.weight``), ``biases[i]`` of
        shape ``(out_i,)``; the last pair is the output layer.
    skip : torch.Tensor of shape (d_x, d_y) or None
        Weight of the linear path on the standardised input (``None``: no linear path).
    mean_x, scale_x : torch.Tensor of shape (d_x,)
    mean_y : torch.Tensor of shape (d_y,)
    scale_y : torch.Tensor of shape ()
    activation : str
        One of :data:`ACTIVATIONS`.
    trainable : bool, default False
        Hold the weights as ``nn.Parameter`` objects (the standardisation stays in buffers).

    Examples
    --------
    >>> import torch
    >>> m = MLPMap([torch.eye(2), torch.eye(2)], [torch.zeros(2)] * 2, None, torch.zeros(2), torch.ones(2),
    ...            torch.zeros(2), torch.tensor(1.0), activation="relu")
    >>> m(torch.tensor([[1.0, -1.0]]))
    tensor([[1., 0.]])
    """

    mean_x: torch.Tensor
    scale_x: torch.Tensor
    mean_y: torch.Tensor
    scale_y: torch.Tensor

    def __init__(
        self,
        weights: list[torch.Tensor],
        biases: list[torch.Tensor],
        skip: torch.Tensor | None,
        mean_x: torch.Tensor,
        scale_x: torch.Tensor,
        mean_y: torch.Tensor,
        scale_y: torch.Tensor,
        *,
        activation: str,
        trainable: bool = False,
    ) -> None:
        super().__init__()
        self.n_layers = len(weights)
        self.activation = activation
        self.has_skip = skip is not None
        named = [(f"weight{i}", w) for i, w in enumerate(weights)] + [(f"bias{i}", b) for i, b in enumerate(biases)]
        if skip is not None:
            named.append(("skip", skip))
        for name, value in named:
            value = value.detach().clone(memory_format=torch.contiguous_format)
            if trainable:
                self.register_parameter(name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)
        for name, value in (("mean_x", mean_x), ("scale_x", scale_x), ("mean_y", mean_y), ("scale_y", scale_y)):
            self.register_buffer(name, value.detach().clone())

    def tensor(self, name: str) -> torch.Tensor:
        """The parameter or buffer called ``name`` (``weight0``, ``bias0``, ..., ``skip``)."""
        return cast(torch.Tensor, getattr(self, name))  # registered as a parameter or buffer in __init__

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The ``(weight, bias)`` pairs, input layer first."""
        return [(self.tensor(f"weight{i}"), self.tensor(f"bias{i}")) for i in range(self.n_layers)]

    def standardized(self, x: torch.Tensor) -> torch.Tensor:
        """Network output before the target rescaling (what the mse loss compares)."""
        xs = (x - self.mean_x) / self.scale_x
        act = getattr(nn.functional, self.activation)
        h = xs
        layers = self.layers()
        for weight, bias in layers[:-1]:
            h = act(torch.addmm(bias, h, weight))
        weight, bias = layers[-1]
        out = torch.addmm(bias, h, weight)
        if self.has_skip:
            out = out + xs @ self.tensor("skip")
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch ``x`` of shape ``(n, d_x)`` to ``(n, d_y)``."""
        return self.standardized(x) * self.scale_y + self.mean_y

    def extra_repr(self) -> str:
        layers = self.layers()
        sizes = [int(layers[0][0].shape[0])] + [int(w.shape[1]) for w, _ in layers]
        return f"sizes={sizes}, activation={self.activation!r}, linear_skip={self.has_skip}"

    def config(self) -> dict[str, Any]:
        """JSON description (see :func:`latentalign.align.modules.module_config`)."""
        layers = self.layers()
        sizes = [int(layers[0][0].shape[0])] + [int(w.shape[1]) for w, _ in layers]
        return {"sizes": sizes, "activation": self.activation, "linear_skip": self.has_skip}

    @classmethod
    def from_config(cls, config: dict[str, Any], trainable: bool) -> MLPMap:
        """An empty module of the described shape (fill it with ``load_state_dict``).

        Examples
        --------
        >>> import torch
        >>> m = MLPMap([torch.randn(3, 4), torch.randn(4, 2)], [torch.randn(4), torch.randn(2)], torch.randn(3, 2),
        ...            torch.zeros(3), torch.ones(3), torch.zeros(2), torch.tensor(1.0), activation="gelu")
        >>> copy = MLPMap.from_config(m.config(), trainable=False)
        >>> _ = copy.load_state_dict(m.state_dict())
        >>> x = torch.randn(5, 3)
        >>> bool(torch.equal(copy(x), m(x)))
        True
        """
        sizes = [int(n) for n in config["sizes"]]
        weights = [torch.zeros(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
        biases = [torch.zeros(b) for b in sizes[1:]]
        d_x, d_y = sizes[0], sizes[-1]
        skip = torch.zeros(d_x, d_y) if config["linear_skip"] else None
        return cls(
            weights,
            biases,
            skip,
            torch.zeros(d_x),
            torch.ones(d_x),
            torch.zeros(d_y),
            torch.tensor(1.0),
            activation=str(config["activation"]),
            trainable=trainable,
        )


class MLPAligner(Aligner):
    """Nonlinear map ``Y ~ f(X)`` by a multilayer perceptron trained with AdamW (torch).

    See the module docstring for the network. Training: minibatches of ``batch_size`` shuffled training
    rows per step, ``max_epochs`` passes at most. With ``early_stopping`` a ``validation_fraction`` of the
    pairs is held out; training stops when the held-out loss has not improved by ``tol`` for
    ``n_iter_no_change`` epochs and the weights of the best epoch are kept (scikit-learn's
    ``MLPRegressor`` rule), but not before :data:`MIN_STEPS` (300) optimizer steps: with few pairs an epoch
    is a few steps, and the held-out loss first stalls while the network leaves its linear start. Without
    early stopping the training loss is watched the same way and the last weights are kept.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (256,)
        Width of each hidden layer (its length is the depth; ``()`` gives a linear map).
    activation : {"relu", "gelu", "tanh", "silu"}, default "gelu"
    linear_skip : bool, default True
        Add a linear path from the input to the output, the ridge solution, kept fixed during training (see
        the module docstring; ``to_module(trainable=True)`` makes it trainable for fine-tuning); ``False``
        gives a plain MLP started at random.
    loss : {"mse", "cosine"}, default "mse"
        Mean squared error on standardised targets, or ``1 - cos(f(x), y)`` (directions only: the norms
        of the predictions are then not trained).
    weight_decay : float, default 1e-4
        Decoupled weight decay of AdamW (>= 0).
    lr : float, default 3e-3
        Learning rate (> 0).
    batch_size : int, default 64
        Rows per step (capped at the number of training rows).
    max_epochs : int, default 200
    early_stopping : bool, default True
    validation_fraction : float, default 0.1
        Share of the pairs held out for early stopping (at least one row), in (0, 1).
    n_iter_no_change : int, default 10
    tol : float, default 1e-4
        Smallest decrease of the watched loss that counts as an improvement.
    random_state : int, numpy Generator/RandomState or None, default None
        Seeds the initial weights, the held-out split and the shuffling: equal seeds give identical
        fits (on the same device and thread count).

    Attributes
    ----------
    coefs_ : list of torch.Tensor
        ``coefs_[i]`` of shape ``(in_i, out_i)``, the last one the output layer (training dtype).
    intercepts_ : list of torch.Tensor
    skip_coef_ : torch.Tensor of shape ``(n_features_in_, n_features_out_)``
        The linear path (zeros with ``linear_skip=False``).
    mean_x_, scale_x_, mean_y_, scale_y_ : torch.Tensor
        The standardisation (``scale_y_`` is a scalar tensor).
    n_iter_ : int
        Epochs run.
    loss_curve_ : list of float
        Training loss per epoch.
    validation_loss_curve_ : list of float
        Held-out loss per epoch (empty without early stopping).
    n_features_in_, n_features_out_ : int

    Warns
    -----
    ConvergenceWarning
        When ``max_epochs`` is reached while the watched loss still improves.

    Notes
    -----
    There is no inverse map: :meth:`inverse_transform` raises ``NotImplementedError``; fit
    ``MLPAligner().fit(Y, X)`` for the reverse direction. :meth:`score` is the R^2 of
    :class:`~latentalign.align.base.Aligner`. Training runs on the device of ``X``, in float64 for float64
    input and float32 otherwise.

    Examples
    --------
    A smooth nonlinear map that no affine map fits:

    >>> import numpy as np
    >>> from latentalign import Affine
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((300, 3))
    >>> Y = np.tanh(X @ rng.standard_normal((3, 3))) @ rng.standard_normal((3, 2))
    >>> mlp = MLPAligner(hidden_layer_sizes=(64,), random_state=0).fit(X[:250], Y[:250])
    >>> bool(mlp.score(X[250:], Y[250:]) > 0.95 > Affine().fit(X[:250], Y[:250]).score(X[250:], Y[250:]))
    True
    """

    invertible: ClassVar[bool] = False

    def __init__(
        self,
        *,
        hidden_layer_sizes: tuple[int, ...] = (256,),
        activation: str = "gelu",
        linear_skip: bool = True,
        loss: str = "mse",
        weight_decay: float = 1e-4,
        lr: float = 3e-3,
        batch_size: int = 64,
        max_epochs: int = 200,
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        random_state: Any = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.linear_skip = linear_skip
        self.loss = loss
        self.weight_decay = weight_decay
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state

    def _check_params(self) -> None:
        sizes = self.hidden_layer_sizes
        if not isinstance(sizes, (tuple, list)):
            raise TypeError(f"hidden_layer_sizes must be a tuple of positive integers (e.g. (256,)), got {sizes!r}.")
        for size in sizes:
            check_number(size, "hidden_layer_sizes[i]", integer=True, low=1)
        check_choice(self.activation, "activation", ACTIVATIONS)
        check_choice(self.linear_skip, "linear_skip", [True, False])
        check_choice(self.loss, "loss", LOSSES)
        check_number(self.weight_decay, "weight_decay", low=0.0)
        check_number(self.lr, "lr", low=0.0, low_inclusive=False)
        check_number(self.batch_size, "batch_size", integer=True, low=1)
        check_number(self.max_epochs, "max_epochs", integer=True, low=1)
        check_choice(self.early_stopping, "early_stopping", [True, False])
        check_number(self.validation_fraction, "validation_fraction", low=0.0, high=1.0, low_inclusive=False)
        if self.validation_fraction == 1.0:
            raise ValueError("validation_fraction must be < 1, got 1.0; keep some pairs for training (e.g. 0.1).")
        check_number(self.n_iter_no_change, "n_iter_no_change", integer=True, low=1)
        check_number(self.tol, "tol", low=0.0)

    # -- fit --------------------------------------------------------------------------------------------
    def fit(self, X: ArrayLike, Y: ArrayLike) -> MLPAligner:
        """Train the network on paired rows of ``X`` (source) and ``Y`` (target); return ``self``.

        Parameters
        ----------
        X : array of shape (n_samples, d_x)
        Y : array of shape (n_samples, d_y)
            Paired rows, numpy arrays or torch tensors (not mixed); at least 2 (one held out with
            early stopping).
        """
        self._check_params()
        Xt, Yt, spec = check_pair(X, Y, min_rows=2, purpose=type(self).__name__)
        self._remember_feature_names(X)
        dtype = spec.compute_dtype
        Xt, Yt = Xt.to(dtype), Yt.to(dtype)
        n = Xt.shape[0]
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(n, generator=generator).to(Xt.device)
        n_val = max(1, int(round(self.validation_fraction * n))) if self.early_stopping else 0
        n_val = min(n_val, n - 1)
        val, train = order[:n_val], order[n_val:]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = self._initial_network(Xt[train], Yt[train], Xt[val], Yt[val])
        history, val_history, best_state = self._train(net, Xt, Yt, train, val, generator)
        if best_state is not None:
            net.load_state_dict(best_state)
        layers = net.layers()
        self.coefs_ = [w.detach().clone() for w, _ in layers]
        self.intercepts_ = [b.detach().clone() for _, b in layers]
        self.skip_coef_ = (
            net.tensor("skip").detach().clone()
            if net.has_skip
            else torch.zeros((Xt.shape[1], Yt.shape[1]), dtype=dtype, device=Xt.device)
        )
        self.mean_x_, self.scale_x_ = net.mean_x.clone(), net.scale_x.clone()
        self.mean_y_, self.scale_y_ = net.mean_y.clone(), net.scale_y.clone()
        self.n_iter_ = len(history)
        self.loss_curve_ = history
        self.validation_loss_curve_ = val_history
        self.n_features_in_ = int(Xt.shape[1])
        self.n_features_out_ = int(Yt.shape[1])
        return self

    def _initial_network(self, X: torch.Tensor, Y: torch.Tensor, X_val: torch.Tensor, Y_val: torch.Tensor) -> MLPMap:
        """The network before training: random layers, a damped output layer over the linear start."""
        dtype, device = X.dtype, X.device
        mean_x = X.mean(0)
        scale_x = X.std(0, unbiased=False)
        scale_x = torch.where(scale_x > _STD_EPS, scale_x, torch.ones_like(scale_x))
        mean_y = Y.mean(0)
        scale_y = (Y - mean_y).square().mean().sqrt()
        scale_y = scale_y if float(scale_y) > _STD_EPS else torch.ones_like(scale_y)
        sizes = [X.shape[1], *[int(s) for s in self.hidden_layer_sizes], Y.shape[1]]
        weights, biases = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layer = nn.Linear(fan_in, fan_out, dtype=dtype)  # PyTorch's default initialisation
            weights.append(layer.weight.detach().T.to(device))
            biases.append(layer.bias.detach().to(device))
        skip = None
        if self.linear_skip:
            weights[-1] = weights[-1] * _OUT_SCALE
            biases[-1] = torch.zeros_like(biases[-1])
            skip = _ridge_start(
                (X - mean_x) / scale_x, (Y - mean_y) / scale_y, (X_val - mean_x) / scale_x, (Y_val - mean_y) / scale_y
            )
        return MLPMap(
            weights, biases, skip, mean_x, scale_x, mean_y, scale_y, activation=self.activation, trainable=True
        )

    def _loss(self, net: MLPMap, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        out = net.standardized(X)
        if self.loss == "mse":
            return (out - (Y - net.mean_y) / net.scale_y).square().mean()
        pred = out * net.scale_y + net.mean_y
        return 1.0 - nn.functional.cosine_similarity(pred, Y, dim=1).mean()

    def _train(
        self,
        net: MLPMap,
        X: torch.Tensor,
        Y: torch.Tensor,
        train: torch.Tensor,
        val: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[list[float], list[float], dict[str, torch.Tensor] | None]:
        if net.has_skip:
            # The linear path stays at its ridge solution: the network learns the residual. Adam moves every
            # weight by about lr per step, which wrecked a 1280 x 1280 ridge map within the first epoch.
            net.tensor("skip").requires_grad_(False)
        trained = [p for p in net.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trained, lr=float(self.lr), weight_decay=float(self.weight_decay))
        batch = min(int(self.batch_size), train.numel())
        step_size = batch * sum(int(w.numel()) for w, _ in net.layers())
        small = X.device.type == "cpu" and step_size < _SMALL_STEP
        with one_torch_thread() if small else nullcontext():
            return self._epochs(net, optimizer, X, Y, train, val, generator, batch)

    def _epochs(
        self,
        net: MLPMap,
        optimizer: torch.optim.Optimizer,
        X: torch.Tensor,
        Y: torch.Tensor,
        train: torch.Tensor,
        val: torch.Tensor,
        generator: torch.Generator,
        batch: int,
    ) -> tuple[list[float], list[float], dict[str, torch.Tensor] | None]:
        history: list[float] = []
        val_history: list[float] = []
        best, stall, best_state = float("inf"), 0, None
        if self.early_stopping:  # the starting point is a candidate too: training must beat it on held-out pairs
            with torch.no_grad():
                best = float(self._loss(net, X[val], Y[val]))
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        steps_per_epoch = -(-train.numel() // batch)
        stopped = False
        for _ in range(int(self.max_epochs)):
            net.train()
            perm = train[torch.randperm(train.numel(), generator=generator).to(train.device)]
            total = 0.0
            for start in range(0, perm.numel(), batch):
                rows = perm[start : start + batch]
                optimizer.zero_grad(set_to_none=True)
                loss = self._loss(net, X[rows], Y[rows])
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * rows.numel()
            history.append(total / perm.numel())
            watched = history[-1]
            if self.early_stopping:
                with torch.no_grad():
                    watched = float(self._loss(net, X[val], Y[val]))
                val_history.append(watched)
            if watched < best - float(self.tol):
                stall = 0
            else:
                stall += 1
            if watched < best:
                best = watched
                if self.early_stopping:
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            if stall >= int(self.n_iter_no_change) and len(history) * steps_per_epoch >= MIN_STEPS:
                stopped = True
                break
        if not stopped:
            watched_name = "held-out" if self.early_stopping else "training"
            warnings.warn(
                f"MLPAligner reached max_epochs={self.max_epochs} while the {watched_name} loss was still "
                f"improving (by more than tol={self.tol} within the last n_iter_no_change="
                f"{self.n_iter_no_change} epochs). Raise max_epochs or lr for a converged fit.",
                ConvergenceWarning,
                stacklevel=5,  # the caller of fit
            )
        return history, val_history, best_state

    # -- the map ----------------------------------------------------------------------------------------
    def _map(self, *, trainable: bool = False) -> MLPMap:
        return MLPMap(
            self.coefs_,
            self.intercepts_,
            self.skip_coef_ if self.linear_skip else None,
            self.mean_x_,
            self.scale_x_,
            self.mean_y_,
            self.scale_y_,
            activation=self.activation,
            trainable=trainable,
        )

    def _transform(self, X: torch.Tensor) -> torch.Tensor:
        net = self._map().to(device=X.device, dtype=X.dtype)
        with torch.no_grad():
            return net(X)

    def transform(self, X: ArrayLike) -> ArrayLike:
        """Predicted target embeddings of source rows ``X``.

        Parameters
        ----------
        X : array of shape ``(n_samples, n_features_in_)``

        Returns
        -------
        array of shape ``(n_samples, n_features_out_)``
            Same kind (numpy/torch), dtype and device as ``X``.
        """
        return super().transform(X)

    def _module(self, *, trainable: bool, inverse: bool) -> nn.Module:
        return self._map(trainable=trainable)


def _ridge_start(Xs: torch.Tensor, Ys: torch.Tensor, X_val: torch.Tensor, Y_val: torch.Tensor) -> torch.Tensor:
    """Ridge regression ``Xs W ~ Ys`` (standardised, centred data) in float64, the ridge picked from
    :data:`SKIP_RIDGES` by the loss on the held-out rows (the first ridge when there are none)."""
    X64, Y64 = Xs.to(_F64), Ys.to(_F64)
    with one_torch_thread():
        evals, evecs = torch.linalg.eigh(X64.T @ X64)
    projected = evecs.T @ (X64.T @ Y64)  # one eigendecomposition serves every ridge
    scale = max(float(evals.mean()), _STD_EPS)
    ridges = SKIP_RIDGES if X_val.shape[0] else SKIP_RIDGES[:1]
    candidates = [evecs @ (projected / (evals.clamp_min(0.0) + r * scale)[:, None]) for r in ridges]
    Xv, Yv = X_val.to(_F64), Y_val.to(_F64)
    losses = [float((Xv @ W - Yv).square().mean()) for W in candidates] if X_val.shape[0] else [0.0]
    return candidates[int(np.argmin(losses))].to(Xs.dtype)
