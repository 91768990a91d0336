"""Peak memory of the running process, for benchmark child processes."""

import resource


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM). Unlike ``ru_maxrss``, it does not include the
    parent's resident size at fork, which Linux carries over into an exec'd child's ru_maxrss."""
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        return round(int(line.split()[1]) / 1024, 1)
    except (OSError, StopIteration):
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
