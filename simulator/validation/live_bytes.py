"""The CPU memory tracker of the small real runs (simulator.validation.validate): the live bytes of
every storage an ATen op creates, and their peak (a TorchDispatchMode; torch is imported on first use)."""

from __future__ import annotations

import weakref

# ------------------------------------------------------------------ the CPU memory tracker

def _live_bytes_tracker_cls():
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class LiveBytesTracker(TorchDispatchMode):
        """Live bytes of storages created by ATen ops while the mode is active, and their peak.

        A storage an op returns is new unless it is the storage of one of the op's inputs
        (in-place ops, views); each new storage is counted once and uncounted by a weakref
        finalizer when it is freed."""

        def __init__(self):
            super().__init__()
            self.live: dict[int, int] = {}
            self.current_bytes = 0
            self.peak_bytes = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            inputs = {_ptr(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
            out = func(*args, **kwargs)
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    self._track(_storage(t), inputs)
            return out

        def _track(self, st, inputs):
            try:
                key, nbytes = st.data_ptr(), st.nbytes()
            except (RuntimeError, NotImplementedError):   # wrapper subclasses (DTensor) own no storage
                return
            if nbytes == 0 or key in inputs or key in self.live:
                return
            self.live[key] = nbytes
            self.current_bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self.current_bytes)
            weakref.finalize(st, self._free, key, nbytes)

        def _free(self, key, nbytes):
            if self.live.pop(key, None) is not None:
                self.current_bytes -= nbytes

    return LiveBytesTracker


def _storage(t):
    local = getattr(t, "_local_tensor", None)     # DTensor: its shard's storage
    return (local if local is not None else t).untyped_storage()


def _ptr(t):
    try:
        return _storage(t).data_ptr()
    except (RuntimeError, NotImplementedError):
        return None


def live_bytes_tracker():
    """A new LiveBytesTracker (``with live_bytes_tracker() as t: ...; t.peak_bytes``)."""
    return _live_bytes_tracker_cls()()
