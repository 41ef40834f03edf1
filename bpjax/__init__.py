"""bpjax: backpropagation for an MLP, written by hand and checked against ``jax.grad``.

The public API, all pure functions over a params pytree (a list of ``{"w", "b"}`` layers); each
takes the model as keyword ``spec=`` (default ``Spec()``: sigmoid layers, quadratic cost):

- ``Spec(hidden="sigmoid", output="sigmoid", cost="quadratic")``    bpjax.spec
- ``register_activation(name, f, f_prime)``                          bpjax.activations
- ``register_cost(name, cost, output_delta, ...)``                   bpjax.cost
- ``check_gradients(spec, sizes, *, key, ...)``, ``check_all``      bpjax.gradcheck
- ``init_params(key, sizes, init="scaled")``                         bpjax.params
- ``forward``, ``forward_trace``, ``forward_batch``, ``predict``     bpjax.network
- ``example_cost``, ``cost``, ``squared_error``, ``one_hot``, ``accuracy``   bpjax.cost
- ``backprop``, ``backprop_deltas``, ``backprop_mean``, ``backprop_cost_and_mean``  bpjax.backprop
- ``per_example_grads``, ``mean_grad``, ``example_grad``             bpjax.grads
- training: ``bpjax.train``; data: ``bpjax.data``
"""

from bpjax.activations import register_activation
from bpjax.backprop import backprop, backprop_cost_and_mean, backprop_deltas, backprop_mean
from bpjax.cost import accuracy, cost, example_cost, one_hot, register_cost, squared_error
from bpjax.gradcheck import check_all, check_gradients
from bpjax.grads import EXAMPLE_METHODS, METHODS, example_grad, mean_grad, per_example_grads
from bpjax.network import forward, forward_batch, forward_trace, predict, sigmoid, sigmoid_prime
from bpjax.params import INITS, Params, init_params, layer_sizes
from bpjax.spec import Spec

__all__ = [
    "INITS",
    "EXAMPLE_METHODS",
    "METHODS",
    "Params",
    "Spec",
    "accuracy",
    "backprop",
    "backprop_cost_and_mean",
    "backprop_deltas",
    "backprop_mean",
    "check_all",
    "check_gradients",
    "cost",
    "example_cost",
    "example_grad",
    "forward",
    "forward_batch",
    "forward_trace",
    "init_params",
    "layer_sizes",
    "mean_grad",
    "one_hot",
    "per_example_grads",
    "predict",
    "register_activation",
    "register_cost",
    "sigmoid",
    "sigmoid_prime",
    "squared_error",
]
