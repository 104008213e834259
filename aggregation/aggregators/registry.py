"""Every aggregator and server optimizer a task can choose, written once.

Each entry names its rule, its label and its parameters (type, default, bounds, help text).
The task model's choices, ``tasks.validation``, the task form, the REST API's description
and the form page's JSON (read by ``static/disco/task_form.js``) are all derived from
``AGGREGATORS`` and ``SERVER_OPTIMIZERS``; nothing else lists them. Pure and Django-free,
like the rules themselves.

An aggregator either reads the updates by blocks of coordinates (``rule``: an N x P matrix or any
``source.UpdateSource``, so the round's stored frames are never stacked into the matrix) or streams
them one at a time (``stream``: the means); the round service asks the entry which.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..server_optimizers import AdamState, fedadam, fedavgm
from .clipping import centered_clipping
from .krum import krum, multi_krum
from .mean import mean, plain_mean, streamed_mean
from .median import median, trimmed_mean

# (an N x P matrix or an UpdateSource, the weights or None, **params) -> the aggregate
Rule = Callable[..., np.ndarray]
# (updates, one at a time; their normalised shares; the parameter count) -> the aggregate
Stream = Callable[[Iterable[np.ndarray], np.ndarray, int], np.ndarray]
OptimizerState = dict[str, np.ndarray]


@dataclass(frozen=True)
class Param:
    """One numeric parameter: ``int`` or ``float``, with inclusive or exclusive bounds."""

    name: str
    type: Literal["int", "float"]
    default: float
    label: str
    description: str  # completes "<rule> needs <name>, <description> (<range>)."
    help: str = ""
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False

    def range_text(self) -> str:
        """The accepted values in words: "a whole number >= 1", "a number in [0, 0.5)", "a positive number"."""
        kind = "a whole number" if self.type == "int" else "a number"
        if self.min is not None and self.max is not None:
            return (f"{kind} in {'(' if self.min_exclusive else '['}{_num(self.min)}, "
                    f"{_num(self.max)}{')' if self.max_exclusive else ']'}")
        if self.min is not None:
            if self.min == 0 and self.type == "float":
                return "a positive number" if self.min_exclusive else "zero or a positive number"
            return f"{kind} {'>' if self.min_exclusive else '>='} {_num(self.min)}"
        if self.max is not None:
            return f"{kind} {'<' if self.max_exclusive else '<='} {_num(self.max)}"
        return kind

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.type == "int" and value != int(value):
            return False
        if self.min is not None and (value <= self.min if self.min_exclusive else value < self.min):
            return False
        return not (self.max is not None and (value >= self.max if self.max_exclusive else value > self.max))

    def coerce(self, value: float) -> int | float:
        return int(value) if self.type == "int" else float(value)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "default": self.default, "label": self.label,
                "help": self.help, "min": self.min, "max": self.max, "minExclusive": self.min_exclusive,
                "maxExclusive": self.max_exclusive, "range": self.range_text()}


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class _Entry:
    name: str
    label: str
    summary: str
    params: tuple[Param, ...] = ()

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def problems(self, params: Any) -> list[str]:
        """What is wrong with ``params`` for this entry, in words (empty when nothing is)."""
        if not isinstance(params, dict):
            return [f"{self.label} parameters are a JSON object, e.g. {self.example()}."]
        allowed = [p.name for p in self.params]
        out = []
        extra = sorted(set(params) - set(allowed))
        if extra:
            out.append(f"{self.name} takes {', '.join(sorted(allowed)) or 'no parameters'}; "
                       f"unexpected: {', '.join(extra)}.")
        for p in self.params:
            if not p.accepts(params.get(p.name)):
                out.append(f"{self.label} needs {p.name}, {p.description} ({p.range_text()}).")
        return out

    def example(self) -> str:
        return json.dumps({p.name: p.default for p in self.params})

    def defaults(self) -> dict[str, int | float]:
        return {p.name: p.coerce(p.default) for p in self.params}

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "summary": self.summary,
                "params": [p.as_json() for p in self.params]}


@dataclass(frozen=True)
class AggregatorSpec(_Entry):
    """An aggregation rule: ``rule(matrix or source, weights, **params)`` or, for the means, ``stream``.

    ``weighted``: the rule weighs updates by their (capped) sample counts; ``base_param`` names the
    keyword that receives the round's base model (centered clipping's ``center``); ``schemes`` lists
    where the rule can run. Decentralized peers run only the sample-weighted mean and secure aggregation
    (``static/disco/decentralized.js``, ``disco_client/peer.py``): every other rule is ``CENTRAL`` and the task's
    validation refuses it there, rather than the peers silently averaging instead.
    """

    rule: Rule | None = None
    stream: Stream | None = None
    weighted: bool = False
    base_param: str | None = None
    schemes: tuple[str, ...] = ("federated", "decentralized", "local")


# Where a rule that needs every update in one place can run: the server (federated) or the one participant (local).
CENTRAL = ("federated", "local")


@dataclass(frozen=True)
class ServerOptimizerSpec(_Entry):
    """A server step after aggregation: ``step(base, aggregate, state or None, **params) -> (new, state)``.

    ``step`` is None for "none" (the aggregate becomes the new model). The state is a dict of
    arrays, so it can be stored without pickle (``numpy.savez`` / ``numpy.load(allow_pickle=False)``).
    """

    step: Callable[..., tuple[np.ndarray, OptimizerState]] | None = None


def _fedavgm_step(base: np.ndarray, aggregate: np.ndarray, state: OptimizerState | None, *, lr: float,
                  momentum: float) -> tuple[np.ndarray, OptimizerState]:
    new, m = fedavgm(base, aggregate, None if state is None else state["momentum"], lr=lr, beta=momentum)
    return new, {"momentum": m}


def _fedadam_step(base: np.ndarray, aggregate: np.ndarray, state: OptimizerState | None, *, lr: float, beta1: float,
                  beta2: float, epsilon: float) -> tuple[np.ndarray, OptimizerState]:
    adam = None if state is None else AdamState(state["m"], state["v"], int(state["step"]))
    new, after = fedadam(base, aggregate, adam, lr=lr, beta1=beta1, beta2=beta2, tau=epsilon)
    return new, {"m": after.m, "v": after.v, "step": np.array(after.step, dtype=np.int64)}


_F = Param("f", "int", 1, "Faulty participants tolerated (f)", "the number of Byzantine participants tolerated",
           "Krum needs at least 2f+3 participants.", min=0)

_aggregators = [
    AggregatorSpec("mean", "Sample-weighted mean (FedAvg)", "The mean of the updates weighted by sample counts "
                   "(McMahan et al. 2017); suits trusted participants.", (), rule=mean, stream=streamed_mean,
                   weighted=True),
    AggregatorSpec("plain_mean", "Plain mean", "The unweighted mean of the updates (what DISCO does).", (),
                   rule=plain_mean, stream=streamed_mean, schemes=CENTRAL),
    AggregatorSpec("median", "Coordinate-wise median", "The median of each parameter (Yin et al. 2018).", (),
                   rule=median, schemes=CENTRAL),
    AggregatorSpec("trimmed_mean", "Trimmed mean", "Per parameter, the mean after dropping the highest and lowest "
                   "values (Yin et al. 2018).",
                   (Param("beta", "float", 0.1, "Share trimmed at each end (beta)",
                          "the fraction trimmed at each end", "From 0 to just under 0.5; 0.1 drops the highest "
                          "and lowest 10% of values.", min=0, max=0.5, max_exclusive=True),),
                   rule=trimmed_mean, schemes=CENTRAL),
    AggregatorSpec("krum", "Krum", "The one update closest to its neighbours (Blanchard et al. 2017).", (_F,),
                   rule=krum, schemes=CENTRAL),
    AggregatorSpec("multi_krum", "Multi-Krum", "The mean of the m updates closest to their neighbours.",
                   (_F, Param("m", "int", 2, "Updates averaged (m)", "the number of updates averaged",
                              "Multi-Krum averages the m most trustworthy updates.", min=1)),
                   rule=multi_krum, schemes=CENTRAL),
    AggregatorSpec("centered_clipping", "Centered clipping", "A mean in which each update's pull from the current "
                   "model is clipped (Karimireddy, He & Jaggi 2021).",
                   (Param("tau", "float", 1.0, "Clipping radius (tau)", "the clipping radius",
                          "How far an update may pull the model in one step.", min=0, min_exclusive=True),
                    Param("iterations", "int", 1, "Iterations", "the clipping passes per round",
                          "Clipping passes per round; 1 to 3 is typical.", min=1)),
                   rule=centered_clipping, base_param="center", schemes=CENTRAL),
    AggregatorSpec("secure", "Secure aggregation (mean)", "The plain mean, computed by the peers on secret shares "
                   "so that nobody sees another's update.", (), stream=streamed_mean, schemes=("decentralized",)),
]
AGGREGATORS: dict[str, AggregatorSpec] = {a.name: a for a in _aggregators}

_servers = [
    ServerOptimizerSpec("none", "None: the aggregate becomes the new model", "The round's aggregate is the next "
                        "version (FedAvg)."),
    ServerOptimizerSpec(
        "fedavgm", "FedAvgM (server momentum)", "The server steps along the round's change with momentum "
        "(Hsu, Qi & Brown 2019): m <- momentum m + (aggregate - model); model <- model + lr m.",
        (Param("lr", "float", 1.0, "Server learning rate", "the server learning rate",
               "1 with momentum 0 is plain FedAvg.", min=0, min_exclusive=True, max=10),
         Param("momentum", "float", 0.9, "Server momentum", "the server momentum",
               "From 0 (none) to just under 1; 0.9 is usual.", min=0, max=1, max_exclusive=True)),
        step=_fedavgm_step),
    ServerOptimizerSpec(
        "fedadam", "FedAdam (adaptive server steps)", "The server takes Adam steps along the round's change "
        "(Reddi et al. 2021).",
        (Param("lr", "float", 0.01, "Server learning rate", "the server learning rate",
               "0.001 to 0.1 is usual.", min=0, min_exclusive=True, max=10),
         Param("beta1", "float", 0.9, "First-moment decay (beta1)", "the first-moment decay",
               "From 0 to just under 1; 0.9 is usual.", min=0, max=1, max_exclusive=True),
         Param("beta2", "float", 0.99, "Second-moment decay (beta2)", "the second-moment decay",
               "From 0 to just under 1; 0.99 is usual.", min=0, max=1, max_exclusive=True),
         Param("epsilon", "float", 0.001, "Adaptivity (epsilon, tau)", "the adaptivity constant",
               "Added to the root of the second moment; 0.001 is usual.", min=0, min_exclusive=True, max=1)),
        step=_fedadam_step),
]
SERVER_OPTIMIZERS: dict[str, ServerOptimizerSpec] = {o.name: o for o in _servers}
NO_SERVER_OPTIMIZER = "none"


def aggregator(name: str) -> AggregatorSpec:
    try:
        return AGGREGATORS[name]
    except KeyError:
        raise ValueError(f"Unknown aggregator {name!r}; known: {', '.join(AGGREGATORS)}.") from None


def server_optimizer(name: str) -> ServerOptimizerSpec:
    try:
        return SERVER_OPTIMIZERS[name]
    except KeyError:
        raise ValueError(f"Unknown server optimizer {name!r}; known: {', '.join(SERVER_OPTIMIZERS)}.") from None


def choices(entries: Mapping[str, _Entry]) -> list[tuple[str, str]]:
    """``[(name, label)]`` in the registry's order: the model's and the form's choices."""
    return [(e.name, e.label) for e in entries.values()]


def registry_json() -> dict[str, Any]:
    """The registry as JSON (the task form page embeds it; ``GET /api/aggregators/`` returns it)."""
    return {"aggregators": [dict(a.as_json(), schemes=list(a.schemes)) for a in AGGREGATORS.values()],
            "serverOptimizers": [o.as_json() for o in SERVER_OPTIMIZERS.values()]}


def field_names(entries: Mapping[str, _Entry], prefix: str) -> dict[tuple[str, str], str]:
    """Form field names for every (entry, parameter): ``<prefix>_<param>`` when every entry taking a parameter
    of that name describes it the same way (Krum's and Multi-Krum's f), else ``<prefix>_<entry>_<param>``."""
    by_name: dict[str, set[Param]] = {}
    for e in entries.values():
        for p in e.params:
            by_name.setdefault(p.name, set()).add(p)
    return {(e.name, p.name): f"{prefix}_{p.name}" if len(by_name[p.name]) == 1 else f"{prefix}_{e.name}_{p.name}"
            for e in entries.values() for p in e.params}


__all__ = ["AGGREGATORS", "NO_SERVER_OPTIMIZER", "SERVER_OPTIMIZERS", "AggregatorSpec", "Param",
           "ServerOptimizerSpec", "aggregator", "choices", "field_names", "registry_json", "server_optimizer"]
