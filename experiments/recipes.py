"""The published MNIST results ``experiments.reproduce`` measures, each with its book citation
and its recipe as ``experiments.train`` flags (values typed as printed; see
``experiments.reproduce`` for how Nielsen's notation maps onto the flags)."""

from __future__ import annotations

from typing import NamedTuple

NIELSEN = "Nielsen, Neural Networks and Deep Learning"
CH1 = "ch. 1, 'Implementing our network to classify digits'"
CH3_CE = "ch. 3, 'Using the cross-entropy to classify MNIST digits'"
CH3_L2 = "ch. 3, 'Regularization'"
CH3_INIT = "ch. 3, 'Weight initialization'"
NETWORK_PY = "--cost quadratic_half --schedule constant --init standard --validation 10000"
NETWORK2_PY = "--cost cross_entropy --schedule constant --validation 10000"


class Recipe(NamedTuple):
    """A published result: ``published`` accuracy in %, what it measures (``metric``), where it
    is printed (``source``, ``quote``) and the recipe as ``experiments.train`` flags."""

    published: float
    metric: str  # "peak test" (best epoch on test), "test", "validation"
    source: str
    quote: str
    args: str


RECIPES: dict[str, Recipe] = {
    "ch1_30": Recipe(
        95.42,
        "peak test",
        f"{NIELSEN}, {CH1}",
        "net.SGD(training_data, 30, 10, 3.0, test_data=test_data) ... 95.42 percent at its peak "
        "('Epoch 28')",
        f"--sizes 784,30,10 --lr 3 --batch-size 10 --epochs 30 --weight-decay 0 {NETWORK_PY}",
    ),
    "ch1_100": Recipe(
        96.59,
        "peak test",
        f"{NIELSEN}, {CH1}",
        "net = network.Network([784, 100, 10]) ... this improves the results to 96.59 percent",
        f"--sizes 784,100,10 --lr 3 --batch-size 10 --epochs 30 --weight-decay 0 {NETWORK_PY}",
    ),
    "ch3_ce_30": Recipe(
        95.49,
        "test",
        f"{NIELSEN}, {CH3_CE}",
        "network2.Network([784, 30, 10], cost=network2.CrossEntropyCost); "
        "net.large_weight_initializer(); net.SGD(training_data, 30, 10, 0.5, ...) ... "
        "95.49 percent accuracy",
        f"--sizes 784,30,10 --lr 0.5 --batch-size 10 --epochs 30 --weight-decay 0 "
        f"--init standard {NETWORK2_PY}",
    ),
    "ch3_ce_100": Recipe(
        96.82,
        "test",
        f"{NIELSEN}, {CH3_CE}",
        "the case where we use 100 hidden neurons, the cross-entropy, and otherwise keep the "
        "parameters the same ... 96.82 percent",
        f"--sizes 784,100,10 --lr 0.5 --batch-size 10 --epochs 30 --weight-decay 0 "
        f"--init standard {NETWORK2_PY}",
    ),
    "ch3_l2_30": Recipe(
        96.49,
        "test",
        f"{NIELSEN}, {CH3_L2}",
        "net.SGD(training_data, 30, 10, 0.5, lmbda = 5.0, evaluation_data=test_data, ...) ... "
        "the classification accuracy on the test data ... 96.49 percent",
        f"--sizes 784,30,10 --lr 0.5 --batch-size 10 --epochs 30 --weight-decay 1e-4 "
        f"--init standard {NETWORK2_PY}",
    ),
    "ch3_l2_100": Recipe(
        97.92,
        "validation",
        f"{NIELSEN}, {CH3_L2}",
        "100 hidden neurons ... lambda = 5.0 ... classification accuracy of 97.92 percent on the "
        "validation data",
        f"--sizes 784,100,10 --lr 0.5 --batch-size 10 --epochs 30 --weight-decay 1e-4 "
        f"--init standard {NETWORK2_PY}",
    ),
    "ch3_init_standard": Recipe(
        96.0,
        "validation",
        f"{NIELSEN}, {CH3_INIT}",
        "net.large_weight_initializer(); net.SGD(training_data, 30, 10, 0.1, lmbda = 5.0, "
        "evaluation_data=validation_data, ...) ... somewhat over 96 percent",
        f"--sizes 784,30,10 --lr 0.1 --batch-size 10 --epochs 30 --weight-decay 1e-4 "
        f"--init standard {NETWORK2_PY}",
    ),
    "ch3_init_scaled": Recipe(
        96.0,
        "validation",
        f"{NIELSEN}, {CH3_INIT}",
        "the same with the default 1/sqrt(n_in) initialization ... In both cases, we end up "
        "with a classification accuracy somewhat over 96 percent",
        f"--sizes 784,30,10 --lr 0.1 --batch-size 10 --epochs 30 --weight-decay 1e-4 "
        f"--init scaled {NETWORK2_PY}",
    ),
    "3b1b": Recipe(
        96.0,
        "test",
        "3Blue1Brown, Deep learning ch. 2, 'Gradient descent, how neural networks "
        "learn' (with Nielsen's network.py, which the video points to)",
        "this network ... classifies about 96% of the new images that it's never seen before "
        "correctly",
        f"--sizes 784,16,16,10 --lr 3 --batch-size 10 --epochs 30 --weight-decay 0 {NETWORK_PY}",
    ),
    "bpjax_default": Recipe(
        96.0,
        "test",
        "the shared default recipe of experiments.train (compared with 3Blue1Brown's ~96%)",
        "",
        "--sizes 784,16,16,10",
    ),
    "bpjax_recipe": Recipe(
        96.0,
        "test",
        "experiments.recipe_search: the best of 16 recipes by validation accuracy "
        "(docs/reproductions.md); its L2 decays biases too, so run this row with --decay-biases",
        "",
        "--sizes 784,16,16,10 --hidden sigmoid --output softmax --cost log_likelihood "
        "--optimizer momentum --lr 0.1 --schedule cosine --weight-decay 1e-4 --epochs 60 "
        "--batch-size 100 --validation 10000",
    ),
}
