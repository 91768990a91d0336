"""Run under ``torchrun --nproc-per-node 2``: train a tiny variant with DDP (gloo on CPU) and
write, from rank 0, what every rank ended with (used by test_ddp.py)."""

import json
import sys

import torch
import torch.distributed as dist

from samsar.config import load_params
from samsar.training.distributed import distributed_context
from samsar.training.loop import Trainer


def flat_trainable(trainer: Trainer) -> torch.Tensor:
    return torch.cat([t.detach().flatten().float() for t in trainer.segmenter.trainable_state_dict().values()])


def main(params_path: str, variant: str, out_path: str) -> None:
    params = load_params(params_path)
    with distributed_context() as ctx:
        trainer = Trainer(params, variant, ctx, params.train.seeds[0])
        before = flat_trainable(trainer)
        batches = trainer._epoch_batches(0)
        summary = trainer.fit()
        after = flat_trainable(trainer)
        gathered = [torch.zeros_like(after) for _ in range(ctx.world_size)]
        dist.all_gather(gathered, after)
        all_batches = [None] * ctx.world_size
        dist.all_gather_object(all_batches, batches)
        if ctx.is_main:
            result = {
                "world_size": ctx.world_size,
                "max_rank_difference": max(float((g - gathered[0]).abs().max()) for g in gathered),
                "change": float((after - before).abs().max()),
                "batches": all_batches,
                "steps": summary["steps"],
            }
            with open(out_path, "w") as f:
                json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:4])
