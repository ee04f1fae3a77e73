r"""Which graph breaks ``torch.compile`` meets in a model, and whether any
is in the centering op.

:func:`torch._dynamo.explain` counts the breaks of the frames it traces, but
leaves out those in frames dynamo falls back to eager for (a layer that
aggregates with a sparse adjacency, and the frames called from it), so the
messages are read from dynamo's graph-break log instead.
"""
import logging
from dataclasses import dataclass, field
from typing import Any, List

import torch

_LOGGER = "torch._dynamo.symbolic_convert.__graph_breaks"


class _GraphBreakLog(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: List[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        torch._logging.set_logs(graph_breaks=True)
        logger = logging.getLogger(_LOGGER)
        self._saved = (logger.handlers[:], logger.propagate)
        logger.handlers, logger.propagate = [self], False
        return self

    def __exit__(self, *exc):
        logger = logging.getLogger(_LOGGER)
        logger.handlers, logger.propagate = self._saved
        torch._logging.set_logs()


@dataclass
class GraphBreaks:
    #: What ``torch._dynamo.explain`` returned (its graphs, its count).
    explanation: Any
    #: Every graph-break message dynamo logged, fallback frames included.
    messages: List[str] = field(default_factory=list)

    @property
    def in_centering(self) -> List[str]:
        r"""The messages whose break lies in the centering op."""
        return [m for m in self.messages
                if "nn/fused.py" in m or ", in center\n" in m]


def graph_breaks(fn, *args, **kwargs) -> GraphBreaks:
    r"""Traces ``fn(*args, **kwargs)`` with ``torch._dynamo.explain`` and
    collects every graph-break message on the way."""
    with _GraphBreakLog() as log:
        explanation = torch._dynamo.explain(fn)(*args, **kwargs)
    return GraphBreaks(explanation, log.messages)
