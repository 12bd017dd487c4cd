"""Run by tests/test_distributed.py: rank 1 fails while rank 0 waits in a collective."""

import numpy as np

from portnn import distributed

comm = distributed.init()
if comm.rank == 1:
    raise RuntimeError("rank 1 fails on purpose")
comm.allreduce(np.ones(3))  # would wait forever for rank 1 if the job did not end
print("rank 0 got past the allreduce", flush=True)
