r"""The memory autograd keeps for the backward pass."""
import torch


class SavedMemory:
    r"""Counts the memory autograd keeps for backward while active: the
    storages of the saved tensors, each once (layers share the graph and
    save views of the same features)."""

    def __init__(self):
        self.total = 0
        self._seen = set()
        self._hooks = torch.autograd.graph.saved_tensors_hooks(
            self._pack, lambda t: t)

    def _pack(self, tensor):
        if tensor.layout == torch.sparse_csr:
            parts = (tensor.crow_indices(), tensor.col_indices(),
                     tensor.values())
        elif tensor.layout == torch.sparse_coo:
            parts = (tensor._indices(), tensor._values())
        else:
            parts = (tensor, )
        for part in parts:
            storage = part.untyped_storage()
            if storage.data_ptr() not in self._seen:
                self._seen.add(storage.data_ptr())
                self.total += storage.nbytes()
        return tensor

    def __enter__(self):
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)
