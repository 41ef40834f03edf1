"""The numbers behind pictures of one example's wish list (``bpjax.wish_list``): names of the
flat parameters, relative differences of pytrees, rank profiles of gradient magnitudes, and
``analyse``, one compiled function giving a network's wish lists, sensitivities and identities."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def parameter_names(params) -> list[str]:
    """A name for every entry of ``ravel_pytree(params)``, in its order: ``w2[3,7]``, ``b1[0]``."""
    names = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        layer, kind = path[0].idx + 1, path[1].key
        names += [f"{kind}{layer}[{','.join(map(str, i))}]" for i in np.ndindex(leaf.shape)]
    return names


def rel_diff(a, b) -> jax.Array:
    """max |a - b| / max |b| over two pytrees (NaN when b is all 0)."""
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    diff = jnp.max(jnp.stack([jnp.max(jnp.abs(u - v)) for u, v in pairs]))
    return diff / jnp.max(jnp.stack([jnp.max(jnp.abs(v)) for v in jax.tree.leaves(b)]))


def rank_profile(values: np.ndarray, points: int = 200) -> dict:
    """|values| sorted descending at ~``points`` log-spaced ranks, and the top shares of sum v^2."""
    mags = np.sort(np.abs(values))[::-1]
    ranks = np.unique(np.geomspace(1, len(mags), points).round().astype(int))
    with np.errstate(invalid="ignore", divide="ignore"):  # an all-zero gradient: shares NaN
        share = np.cumsum(mags**2) / np.sum(mags**2)
    top = {f"{p}%": float(share[max(1, round(len(mags) * p / 100)) - 1]) for p in (1, 10)}
    return {"ranks": ranks, "magnitudes": mags[ranks - 1], "share_of_squared_norm_in_top": top}


@functools.partial(jax.jit, static_argnames=("top_k", "spec"))
def analyse(params, x, y, xs_some, ys_some, xs_all, ys_all, epsilon, *, top_k: int, spec):
    """The numbers behind the figures for one network and example ``x`` (n_in,), ``y`` one-hot:
    its wish list, the means over ``xs_some`` and ``xs_all``, the sensitivity of the top-k
    parameters and the identities, in one compiled function."""
    from jax.flatten_util import ravel_pytree

    import bpjax
    from bpjax import gradient_noise as gn
    from bpjax import wish_list as wl

    one = wl.wish_list(params, x, y, spec=spec)
    some = wl.mean_wish_list(params, xs_some, ys_some, spec=spec)
    every = wl.mean_wish_list(params, xs_all, ys_all, spec=spec)
    zs, activations = bpjax.forward_trace(params, x, spec=spec)
    cost = functools.partial(bpjax.example_cost, spec=spec)
    base_cost = cost(params, x, y)

    # "The magnitude of each component tells you how sensitive the cost is": move each of the
    # top-k parameters alone by epsilon the way the example wishes and measure the cost change.
    flat_params, unravel = ravel_pytree(params)
    nudges = {"one": one, "some": some, "every": every}
    nudges = {k: wl.parameter_nudges(w) for k, w in nudges.items()}
    flat = {k: ravel_pytree(n)[0] for k, n in nudges.items()}
    _, top = jax.lax.top_k(jnp.abs(flat["one"]), top_k)

    def moved_cost(i):
        return cost(unravel(flat_params.at[i].add(epsilon * jnp.sign(flat["one"][i]))), x, y)

    minus = functools.partial(jax.tree.map, jnp.negative)
    mean_cost_grad = jax.grad(lambda p: bpjax.cost(p, xs_all, ys_all, spec=spec))(params)
    layer_parts = zip(
        one.layers,
        wl.activation_desires(one),
        spec.layer_activations(len(params)),
        zs,
        activations[1:],
        activations[:-1],
        strict=True,
    )
    return {
        "one": one,
        "some": some,
        "every": every,
        "flat": flat,
        "top": top,
        "cost": base_cost,
        "activations": activations,
        "cost_changes": jax.vmap(moved_cost)(top) - base_cost,
        "cosine_to_all": {
            k: gn.tree_dot(n, nudges["every"]) / (gn.tree_norm(n) * gn.tree_norm(nudges["every"]))
            for k, n in nudges.items()
        },
        "checks": {
            "one_vs_minus_backprop": rel_diff(
                nudges["one"], minus(bpjax.backprop(params, x, y, spec=spec))
            ),
            "every_vs_minus_grad_of_mean_cost": rel_diff(nudges["every"], minus(mean_cost_grad)),
            "w_nudge_vs_desire_through_f_prime_times_source": jnp.max(
                jnp.stack(
                    [
                        rel_diff(layer.w, jnp.outer(act.vjp(z, a, d), a_prev))
                        for layer, d, act, z, a, a_prev in layer_parts
                    ]
                )
            ),
            "route3_sum_vs_a_prev": jnp.max(
                jnp.stack(
                    [
                        rel_diff(jnp.sum(layer.a_prev_by_neuron, axis=0), layer.a_prev)
                        for layer in one.layers
                    ]
                )
            ),
        },
    }
