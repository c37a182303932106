"""The model registry: a family name -> its Keras Tuner HyperModel class."""

from harness.errors import unknown
from search_spaces.attention import TransformerSpace
from search_spaces.base import FamilyHyperModel
from search_spaces.recurrent import BiGRUSpace, BiLSTMSpace, GRUSpace, LSTMSpace, SimpleRNNSpace
from tasks.base import Task

REGISTRY: dict[str, type[FamilyHyperModel]] = {
    space.family: space
    for space in (SimpleRNNSpace, LSTMSpace, GRUSpace, BiLSTMSpace, BiGRUSpace, TransformerSpace)
}


def get_space(family: str, task: Task) -> FamilyHyperModel:
    """The search space of `family` built for `task`; a UserError naming the accepted ones."""
    if family not in REGISTRY:
        raise unknown("family", family, list(REGISTRY))
    return REGISTRY[family](task)


def describe_space(family: str) -> dict:
    """A family's description and hyperparameters with their ranges (built on a dummy task)."""
    import keras_tuner as kt

    from tasks import get_task

    hp = kt.HyperParameters()
    get_space(family, get_task("adding")).build(hp)
    params = []
    for item in hp.space:
        config = item.get_config()
        if "values" in config:
            span = ", ".join(map(str, config["values"]))
        elif config.get("min_value") is not None:
            span = f"{config['min_value']} .. {config['max_value']}"
            if config.get("sampling") == "log":
                span += " (log)"
        else:
            span = "true, false"
        params.append({"name": item.name, "range": span, "default": config.get("default")})
    return {
        "family": family,
        "description": REGISTRY[family].description,
        "hyperparameters": params,
    }
