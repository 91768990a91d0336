"""DistributedDataParallel on CPU (gloo, 2 processes through torchrun): ranks see different
tiles yet end with identical parameters, so gradients really are synchronised."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["lora", "decoder_only"])  # decoder_only goes through the feature cache
def test_two_rank_training_keeps_ranks_identical(tiny_project, tmp_path, variant):
    params = tiny_project({"train": {"epochs": 1, "batch_size": 2}})
    out = tmp_path / "ddp.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(WORKER), str(params.root / "params.yaml"), variant, str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=params.root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["world_size"] == 2
    rank0, rank1 = ({i for batch in batches for i in batch} for batches in result["batches"])
    assert rank0 and rank1 and not rank0 & rank1, "each rank must see its own shard of the epoch"
    assert result["change"] > 0, "training must move the parameters"
    assert result["max_rank_difference"] == 0.0
    # 12 training tiles -> 6 per rank -> 3 steps of batch 2
    assert result["steps"] == 3
    assert (params.variant_dir(variant) / "seeds" / "0" / "adapter" / "adapter.safetensors").is_file()
