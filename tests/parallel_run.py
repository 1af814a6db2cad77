"""Runs one short pruning + distillation fit on N simulated CPU devices and saves what it ends with.

Used by tests/test_parallel.py in a subprocess, because the device count is fixed when JAX starts:

    python tests/parallel_run.py OUT.npz --devices 8 [--shard-params] [--checkpoint-dir D]
        [--stop-after S] [--resume] [--batch-size B]
"""

from __future__ import annotations

import argparse
import json
import os


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--shard-params", action="store_true")
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--stop-after", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--teacher-in-step", action="store_true")
    parser.add_argument("--fill-to", type=int, default=None, help="rows per step on one device (default: as fit)")
    args = parser.parse_args()
    import jax

    multi_process = "JAX_COORDINATOR_ADDRESS" in os.environ
    if multi_process:  # --devices is per process; the device count must be set before JAX starts
        jax.config.update("jax_num_cpu_devices", args.devices)
        from jaxprune.parallel import initialize_distributed

        assert initialize_distributed(timeout_s=60)
    else:
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    import numpy as np

    from jaxprune.models.bert import init_params
    from jaxprune.parallel import Parallel
    from jaxprune.training.bert import BertClassification
    from jaxprune.training.config import DistillationConfig, OptimizerConfig, PruningConfig, TrainConfig
    from jaxprune.training.loop import fit
    from test_pipeline import keyword_task, tiny_config

    assert jax.device_count() == args.devices * jax.process_count(), jax.devices()
    model_config = tiny_config(vocab_size=64)
    task = BertClassification(model_config)
    params = init_params(model_config, jax.random.key(2))
    train = keyword_task(30, seed=3)
    config = TrainConfig(epochs=2, batch_size=args.batch_size, optimizer=OptimizerConfig(learning_rate=1e-3),
                         pruning=PruningConfig(sparsity=0.5, warmup_fraction=0.0, cooldown_fraction=0.25),
                         distillation=DistillationConfig())
    teacher = {}
    if args.teacher_in_step:
        teacher["teacher"] = (init_params(model_config, jax.random.key(7)), task)
    else:
        teacher["teacher_logits"] = np.random.default_rng(4).normal(size=(30, 3)).astype(np.float32)
    parallel = Parallel.create(shard_params=args.shard_params)
    if args.fill_to is not None:  # one device filling each batch as a larger mesh would
        from unittest import mock

        mock.patch.object(Parallel, "padded_batch_size", lambda self, size: args.fill_to).start()
    result = fit(params, task, config, train, checkpoint_dir=args.checkpoint_dir, fingerprint="parallel",
                 resume=args.resume, stop_after_steps=args.stop_after, parallel=parallel, **teacher)
    leaves = jax.tree_util.tree_leaves_with_path(result.params)
    shardings = sorted({str(leaf.sharding.spec) for leaf in jax.tree_util.tree_leaves(result.state.params)})
    if jax.process_index() > 0:
        args.out = f"{args.out}.process{jax.process_index()}.npz"
    np.savez(args.out, **{jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves})
    print(json.dumps({"losses": [row["loss"] for row in result.history], "step": int(result.state.step),
                      "keep": [row["keep_fraction"] for row in result.history], "shardings": shardings,
                      "resumed_from": result.resumed_from_step, "processes": jax.process_count()}))


if __name__ == "__main__":
    main()
