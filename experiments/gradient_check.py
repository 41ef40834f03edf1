"""Gradient check: the hand-derived backward pass vs ``jax.grad`` vs central finite differences.

Usage::

    python -m experiments.gradient_check                      # every allowed combination
    python -m experiments.gradient_check --output softmax --cost log_likelihood
    python -m experiments.gradient_check --plugins my_acts --hidden my_act   # a user activation

Without ``--hidden/--output/--cost`` it checks every allowed (hidden, output, cost) combination
of the registered names; with any of them, that one combination (the others take their
defaults, ``bpjax.Spec()``'s). Each check is ``bpjax.check_gradients`` in float64 on
``--architectures`` random networks of 1-4 layers (or on ``--layer-sizes``) and prints one row:
the worst relative error of the hand backward pass against ``jax.grad`` (tolerance 1e-10) and
against finite differences (1e-6). ``--plugins MODULE,...`` imports modules that register
activations or costs first. It trains nothing, loads no data and writes no files. Exits 1 if any
check fails, naming the failing combinations; 2 on bad flags, in one line. Expected (measured):
every built-in combination agrees with ``jax.grad`` to ~1e-15 and with finite differences to
~1e-8 or better.
"""

from __future__ import annotations

import dataclasses
import sys

from experiments.runtime import ConfigError, cli, flag, options

NAME = "gradient_check"


def shared(piece: type, name: str):
    """The field ``name`` of a shared option piece, unchanged (same flag, default and help)."""
    field = piece.__dataclass_fields__[name]
    return dataclasses.field(default=field.default, metadata=field.metadata)


@dataclasses.dataclass(frozen=True)
class Config(options.Options):
    hidden: str = shared(options.ModelOptions, "hidden")
    output: str = shared(options.ModelOptions, "output")
    cost: str = shared(options.ModelOptions, "cost")
    plugins: tuple[str, ...] = shared(options.ModelOptions, "plugins")
    layer_sizes: tuple[int, ...] | None = flag(
        None,
        "check this network, layer sizes input first, e.g. 5,4,3 (default: "
        "--architectures random ones)",
        metavar="N,N,...",
    )
    architectures: int = flag(2, "random architectures per combination")
    examples: int = flag(3, "examples in the checked mini-batch")
    seed: int = shared(options.RunOptions, "seed")

    def check(self) -> None:
        super().check()
        if self.layer_sizes is not None and (
            len(self.layer_sizes) < 2 or min(self.layer_sizes) < 1
        ):
            raise ConfigError(
                f"--layer-sizes needs at least two sizes, each >= 1, got "
                f"{','.join(map(str, self.layer_sizes))}"
            )
        options.at_least("architectures", self.architectures)
        options.at_least("examples", self.examples)
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"--seed must be in [0, 2^32), got {self.seed}")


def parse(argv) -> tuple[Config, list | None]:
    """The checked config and the specs to check (None: every allowed one)."""
    from bpjax.spec import Spec, import_plugins

    parser = cli.build_parser(Config, f"python -m experiments.{NAME}", __doc__.split("\n")[0])
    given = vars(parser.parse_args(argv))
    cfg = Config(**given)
    try:
        import_plugins(cfg.plugins)
    except ValueError as e:
        raise ConfigError(f"--plugins: {e}") from None
    cfg.check()
    if not {"hidden", "output", "cost"} & given.keys():
        return cfg, None
    try:
        return cfg, [Spec(hidden=cfg.hidden, output=cfg.output, cost=cfg.cost)]
    except ValueError as e:  # its message lists what is valid
        raise ConfigError(f"--hidden/--output/--cost: {e}") from None


def format_table(reports) -> str:
    header = (
        f"{'hidden/output/cost':34} {'sizes':14} {'B':>3} {'rel hand-grad':>14} "
        f"{'rel hand-fd':>12}  result"
    )
    lines = [header, "-" * len(header)]
    for r in reports:
        lines.append(
            f"{str(r.spec):34} {'-'.join(map(str, r.sizes)):14} {r.batch_size:>3} "
            f"{r.hand_vs_autodiff:14.2e} {r.hand_vs_fd:12.2e}  {'ok' if r.passed else 'FAIL'}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the checks and print the table; returns 0 (all passed) or 1 (a check failed).
    Bad flags end the process: one line ``gradient_check: error: ...``, exit 2."""
    try:
        cfg, specs = parse(argv)
    except ConfigError as e:
        cli.fail(str(e), cli.BAD_CONFIG, NAME)
    import jax

    from bpjax.gradcheck import FD_TOL, TOL, check_all

    reports = check_all(
        specs,
        key=jax.random.key(cfg.seed),
        architectures=cfg.architectures,
        sizes=cfg.layer_sizes,
        batch_size=cfg.examples,
    )
    print(f"gradient check, float64, tolerances {TOL:g} (vs jax.grad), {FD_TOL:g} (vs FD)")
    print(format_table(reports))
    failed = sorted({str(r.spec) for r in reports if not r.passed})
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    print(f"all {len(reports)} checks passed ({len({r.spec for r in reports})} combinations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
