"""Where and how a run computes: device, precision, torch.distributed, memory checks."""
from quadflow.runtime.device import DEVICES, cpu_threads, resolve_device
from quadflow.runtime.distributed import all_reduce_sum, init_from_env, shard_blocks, world
from quadflow.runtime.memory import (InsufficientMemoryError, available_bytes, check_fits, estimate_bytes,
                                     largest_fitting, require_bytes, usable_bytes)
from quadflow.runtime.precision import PRECISIONS, Precision, resolve_precision

__all__ = ["DEVICES", "PRECISIONS", "InsufficientMemoryError", "Precision", "all_reduce_sum", "available_bytes",
           "check_fits", "cpu_threads", "largest_fitting", "require_bytes", "estimate_bytes", "init_from_env", "resolve_device", "resolve_precision", "shard_blocks", "usable_bytes",
           "world"]
