"""bpjax.Spec: validation, JSON round trip, static-argument use, the open registries."""

import itertools
import json
import sys
import uuid

import jax
import jax.numpy as jnp
import pytest

import bpjax
from bpjax import activations, spec
from bpjax.cost import cost_names, cross_entropy, cross_entropy_delta
from bpjax.spec import Spec, allowed_specs, import_plugins
from tests.helpers import random_problem

BUILT_IN = allowed_specs()  # collected before any test registers more


def unique(prefix: str) -> str:
    """A fresh registry name: registrations are permanent for the process."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_default_spec_is_sigmoid_quadratic_and_hashable():
    s = Spec()
    assert (s.hidden, s.output, s.cost) == ("sigmoid", "sigmoid", "quadratic")
    assert s == spec.DEFAULT_SPEC and hash(s) == hash(spec.DEFAULT_SPEC)
    assert len({Spec(), Spec("sigmoid"), Spec(cost="quadratic")}) == 1
    with pytest.raises(AttributeError):
        s.hidden = "tanh"


@pytest.mark.parametrize("s", BUILT_IN, ids=str)
def test_json_round_trip(s):
    assert Spec.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_from_dict_fills_defaults_and_refuses_unknown_keys():
    assert Spec.from_dict({"cost": "quadratic_half"}) == Spec(cost="quadratic_half")
    with pytest.raises(ValueError, match=r"unknown spec keys \['loss'\]; valid keys"):
        Spec.from_dict({"loss": "quadratic"})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hidden": "swish"}, r"unknown activation 'swish'; choose one of .*'sigmoid'.*'tanh'"),
        ({"output": "Sigmoid"}, r"unknown activation 'Sigmoid'; choose one of .*'relu'"),
        ({"cost": "mse"}, r"unknown cost 'mse'; choose one of .*'cross_entropy'"),
    ],
)
def test_unknown_names_list_the_valid_ones(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Spec(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hidden": "softmax"}, r"output layer only; hidden layers can use \(.*'sigmoid'"),
        (
            {"output": "softmax", "cost": "cross_entropy"},
            r"needs output activation sigmoid.*"
            r"with output 'softmax' use cost \(.*'log_likelihood'",
        ),
        ({"cost": "log_likelihood"}, r"needs output activation softmax, got 'sigmoid'"),
        ({"output": "relu", "cost": "cross_entropy"}, r"needs output activation sigmoid"),
    ],
)
def test_refused_combinations_say_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Spec(**kwargs)


def test_allowed_specs_are_exactly_the_constructible_combinations():
    names = activations.activation_names()
    for h, o, c in itertools.product(names, names, cost_names()):
        try:
            s = Spec(h, o, c)
        except ValueError:
            assert (h, o, c) not in {(a.hidden, a.output, a.cost) for a in allowed_specs()}
        else:
            assert s in allowed_specs()
    assert Spec("relu", "softmax", "log_likelihood") in BUILT_IN
    assert Spec("tanh", "softmax", "quadratic") in BUILT_IN


def test_equal_specs_share_one_compiled_function():
    traces = []

    def f(params, xs, ys, spec):
        traces.append(spec)
        return bpjax.cost(params, xs, ys, spec=spec)

    jitted = jax.jit(f, static_argnames="spec")
    params, xs, ys = random_problem(0, (4, 3), batch=2)
    a = jitted(params, xs, ys, spec=Spec("tanh", "softmax", "log_likelihood"))
    b = jitted(
        params,
        xs,
        ys,
        spec=Spec.from_dict({"hidden": "tanh", "output": "softmax", "cost": "log_likelihood"}),
    )
    assert len(traces) == 1 and a == b
    jitted(params, xs, ys, spec=Spec())
    assert len(traces) == 2


def test_registered_names_work_in_spec_and_the_library():
    name = unique("softsign")
    bpjax.register_activation(
        name, lambda z: z / (1 + jnp.abs(z)), lambda z: 1 / (1 + jnp.abs(z)) ** 2
    )
    cname = unique("quartic")
    bpjax.register_cost(
        cname,
        lambda z, a, y: jnp.sum((a - y) ** 4),
        lambda z, a, y, out: out.vjp(z, a, 4 * (a - y) ** 3),
    )
    s = Spec(hidden=name, output=name, cost=cname)
    assert s in allowed_specs() and Spec.from_dict(s.to_dict()) == s
    params, xs, ys = random_problem(1, (5, 4, 3), batch=2)
    assert jnp.isfinite(bpjax.cost(params, xs, ys, spec=s))


def test_registering_a_taken_name_or_a_bad_record_is_refused():
    with pytest.raises(ValueError, match="'sigmoid' is already registered"):
        bpjax.register_activation("sigmoid", jnp.tanh, lambda z: 1 - jnp.tanh(z) ** 2)
    with pytest.raises(ValueError, match="'quadratic' is already registered"):
        bpjax.register_cost("quadratic", lambda z, a, y: 0.0, lambda z, a, y, o: a - y)
    with pytest.raises(ValueError, match="exactly one of f_prime"):
        bpjax.register_activation(unique("none"), jnp.tanh)
    with pytest.raises(ValueError, match="identifier-like"):
        bpjax.register_activation("my act", jnp.tanh, jnp.cos)
    with pytest.raises(ValueError, match="outputs must be a tuple"):
        bpjax.register_cost(
            unique("c"), lambda z, a, y: 0.0, lambda z, a, y, o: a - y, outputs="sigmoid"
        )


def test_a_cost_can_restrict_its_outputs():
    name = unique("sigmoid_only")
    bpjax.register_cost(name, cross_entropy, cross_entropy_delta, outputs=("sigmoid",))
    Spec(cost=name)
    with pytest.raises(ValueError, match="needs output activation sigmoid, got 'tanh'"):
        Spec(output="tanh", cost=name)


def test_import_plugins_imports_registering_modules(tmp_path, monkeypatch):
    module = unique("plugin")
    act = unique("cube")
    (tmp_path / f"{module}.py").write_text(
        "import bpjax\n"
        f"bpjax.register_activation({act!r}, lambda z: z ** 3, lambda z: 3 * z ** 2)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import_plugins([module])
    assert Spec(hidden=act).hidden_activation.name == act
    import_plugins([module])  # imported once: no second registration
    sys.modules.pop(module)


def test_import_plugins_turns_an_import_error_into_one_line():
    with pytest.raises(ValueError, match=r"cannot import module 'no_such_mod_x': No module") as e:
        import_plugins(["no_such_mod_x"])
    assert "\n" not in str(e.value)
