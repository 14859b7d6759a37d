"""Typed configuration: a small dataclass mixin shared by every config.

Configs are plain dataclasses; flags live only in the scripts and map onto
``replace(**overrides)``. ``to_dict``/``from_dict`` give the JSON that is saved
beside checkpoints and inside exported sidecars. Imports without TensorFlow.
"""
from __future__ import annotations

import dataclasses
import json
import typing


class Config:
    """Mixin for ``@dataclasses.dataclass`` configs."""

    def validate(self) -> None:
        """Raise ValueError naming the bad field; subclasses extend this."""

    def to_dict(self) -> dict:
        def conv(v):
            if dataclasses.is_dataclass(v):
                return v.to_dict() if isinstance(v, Config) else dataclasses.asdict(v)
            if isinstance(v, tuple):
                return [conv(x) for x in v]
            return v
        return {f.name: conv(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(d) - set(fields)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for k, v in d.items():
            t = hints.get(k)
            if isinstance(t, type) and issubclass(t, Config) and isinstance(v, dict):
                v = t.from_dict(v)
            elif isinstance(v, list) and _is_tuple_type(t):
                v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
            kwargs[k] = v
        obj = cls(**kwargs)
        obj.validate()
        return obj

    def replace(self, **overrides):
        """A copy with some fields changed (validated)."""
        obj = dataclasses.replace(self, **overrides)
        obj.validate()
        return obj

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))


def _is_tuple_type(t) -> bool:
    """``Tuple[...]`` or ``Optional[Tuple[...]]`` (JSON gives lists for both)."""
    if typing.get_origin(t) is tuple:
        return True
    return typing.get_origin(t) is typing.Union and \
        any(typing.get_origin(a) is tuple for a in typing.get_args(t))
