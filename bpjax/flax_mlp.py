"""bpjax's MLP as a Flax NNX module, and its weights converted both ways.

The module is the same network: ``a' = f(a @ kernel + bias)`` with ``kernel = w.T`` (Flax stores
(n_in, n_out); bpjax stores (n_out, n_in)) and f the activations of a ``bpjax.Spec`` (any
registered one: the module calls the registry's own functions), so with the same weights it
gives the same outputs and, through ``jax.grad``, the same gradients. It trains through
``bpjax.train`` and ``bpjax.sweep`` as a pure function over its parameter ``nnx.State``::

    spec = Spec(output="softmax", cost="log_likelihood")
    apply_fn = make_apply_fn((784, 16, 16, 10), spec=spec)     # (state, xs (B, 784)) -> z^L (B, 10)
    state = from_bpjax(init_params(key, (784, 16, 16, 10)))    # the same starting weights
    step = make_train_step(optax.sgd(0.5), apply_fn=apply_fn, spec=spec)
    params = to_bpjax(state)                                   # back to bpjax's layout

``apply_fn`` returns the output layer's weighted input ``z^L``, not its activation: bpjax applies
``spec.output`` and the cost, so a cost with a log is computed stably from ``z^L``. The module's
own ``__call__`` returns the activations ``a^L``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from bpjax.params import Params, init_params
from bpjax.spec import DEFAULT_SPEC, Spec


class MLP(nnx.Module):
    """Fully connected network with layer sizes ``sizes`` (input first) and ``spec``'s
    activations (the cost is not part of the module).

    Flax's own initialisation (lecun-normal kernels, zero biases) applies when built directly;
    ``from_bpjax`` gives it bpjax's weights instead.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        rngs: nnx.Rngs,
        param_dtype=jnp.float32,
        spec: Spec = DEFAULT_SPEC,
    ):
        sizes = tuple(int(n) for n in sizes)
        if len(sizes) < 2 or any(n < 1 for n in sizes):
            raise ValueError(f"sizes needs >= 2 layer sizes, each >= 1, got {sizes}")
        if not isinstance(spec, Spec):
            raise ValueError(f"spec must be a bpjax.Spec, got {spec!r}")
        self.spec = spec
        self.layers = nnx.List(
            [
                nnx.Linear(n_in, n_out, param_dtype=param_dtype, rngs=rngs)
                for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
            ]
        )

    def weighted_input(self, x: jax.Array) -> jax.Array:
        """``x`` (..., n_in) -> the output layer's weighted input ``z^L`` (..., n_out)."""
        hidden = self.spec.hidden_activation.f
        for layer in self.layers[:-1]:
            x = hidden(layer(x))
        return self.layers[-1](x)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x`` (..., n_in) -> output activations ``a^L`` (..., n_out)."""
        return self.spec.output_activation.f(self.weighted_input(x))


def _abstract(sizes: Sequence[int], dtype, spec: Spec = DEFAULT_SPEC):
    # Shapes only: nnx.eval_shape builds the module without allocating or computing weights.
    model = nnx.eval_shape(lambda: MLP(sizes, rngs=nnx.Rngs(0), param_dtype=dtype, spec=spec))
    return nnx.split(model)


def make_apply_fn(sizes: Sequence[int], *, spec: Spec = DEFAULT_SPEC):
    """``apply_fn(state, xs (B, n_in)) -> z^L (B, n_out)``: the module's output weighted input as
    a pure function of its parameter state, for ``bpjax.train`` / ``bpjax.sweep``'s ``apply_fn``
    (which apply ``spec.output`` and the cost; pass them the same ``spec``: ``apply_fn.spec``
    records it and training with another is refused)."""
    sizes = tuple(int(n) for n in sizes)
    graphdef, _ = _abstract(sizes, jnp.float32, spec)

    def apply_fn(state: nnx.State, xs: jax.Array) -> jax.Array:
        if xs.ndim != 2 or xs.shape[1] != sizes[0]:
            raise ValueError(f"xs must be a batch of shape (B, {sizes[0]}), got {xs.shape}")
        return nnx.merge(graphdef, state).weighted_input(xs)

    apply_fn.spec = spec
    return apply_fn


def from_bpjax(params: Params) -> nnx.State:
    """bpjax params (list of {"w": (n_out, n_in), "b": (n_out,)}) -> the module's ``nnx.State``.

    One network's params (``vmap`` it for a stack of runs); pure and traceable, and the
    arrays keep their dtype.
    """
    sizes = (params[0]["w"].shape[1],) + tuple(layer["w"].shape[0] for layer in params)
    _, state = _abstract(sizes, params[0]["w"].dtype)
    layers = {i: {"kernel": layer["w"].T, "bias": layer["b"]} for i, layer in enumerate(params)}
    pure = {"layers": layers}
    nnx.replace_by_pure_dict(state, pure)
    return state


def to_bpjax(state: nnx.State) -> Params:
    """The module's ``nnx.State`` (or a gradient of that shape) -> bpjax params; leading axes
    (a sweep's run axis) are kept."""
    layers = nnx.to_pure_dict(state)["layers"]
    # swapaxes, not .T: a sweep's states carry a leading run axis.
    return [
        {"w": jnp.swapaxes(layers[i]["kernel"], -1, -2), "b": layers[i]["bias"]}
        for i in sorted(layers, key=int)
    ]


def make_init_fn(sizes: Sequence[int], init: str = "scaled", dtype=jnp.float32):
    """``key -> nnx.State`` with bpjax's initialisation (``init_params``), so a Flax run starts
    from exactly the weights the pure network would start from."""
    sizes = tuple(int(n) for n in sizes)
    return lambda key: from_bpjax(init_params(key, sizes, init=init, dtype=dtype))
