"""Peak-memory probe shared by the benchmarks (Linux): the kernel's peak-RSS mark, resettable."""


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``: resident now; ``VmHWM``: peak)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak() -> None:
    """Resets VmHWM to the current resident set (``clear_refs`` value 5, Linux ≥ 4.0)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def peak_mib(call, device: str) -> float:
    """MiB that ``call()`` needed at its peak, beyond what existed before it (CUDA: allocator
    peak; CPU: growth of the kernel's peak-RSS mark over the resident set before the call)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        call()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    import gc

    gc.collect()
    base = status_kib("VmRSS")
    reset_peak()
    call()
    return max(0, status_kib("VmHWM") - base) / 1024
