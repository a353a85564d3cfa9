"""Continue training the decoder of a shipped WaLLoC image codec, encoder frozen.

The encoder (and so every latent, the fitted entropy tables and every ``.wlc`` bitstream)
stays bit-identical (checked before saving); only the decoder weights change. Starts from the
shipped weights, trains on random BSDS500 crops (never Kodak) with the codec's training loss
(MSE with uniform noise in the bottleneck), AdamW, 100 warm-up steps then cosine decay to 5%,
and saves the codec in place with the run recorded in its manifest (``decoder_finetune``).

    python benchmarks/finetune_walloc_decoder.py walloc-rgb-16x --steps 22000 --lr 3e-4 --minutes 50
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import torch


def main() -> None:
    from safetensors.torch import load_file

    from terse.core.artifacts import load_config_artifact
    from terse.core.paths import data_path
    from terse.walloc.codec import KIND, load_codec, resolve_model_path, save_codec
    from terse.walloc.model import WallocConfig
    from terse.walloc.training import ImageCrops, evaluate

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="shipped image codec, e.g. walloc-rgb-16x")
    parser.add_argument("--steps", type=int, default=22000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--minutes", type=float, default=None, help="stop early after this long (saves anyway)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1, help="crop seed (the original training used 0)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = resolve_model_path(args.model)
    codec = load_codec(args.model)
    if codec.config.modality != "image":
        raise SystemExit("only image codecs (the audio decoder is linear)")
    _, _, manifest = load_config_artifact(folder, KIND, WallocConfig)
    net = codec.net
    net.encoder.requires_grad_(False)
    encoder_before = {k: v.clone() for k, v in net.encoder.state_dict().items()}
    data = ImageCrops(data_path("images", "train", "bsds500"), args.crop)
    valid = data.sample(np.random.default_rng([0, 999_999]), 32)  # the training run's monitor batch
    history = [{"step": 0, **evaluate(net, valid)}]
    print(json.dumps(history[-1]), flush=True)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    start = time.perf_counter()
    net.train()
    steps_done = 0
    for step in range(args.steps):
        warm = min(1.0, (step + 1) / 100)
        lr = args.lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = net(data.sample(np.random.default_rng([args.seed, step]), args.batch_size))["mse"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps_done = step + 1
        out_of_time = args.minutes is not None and time.perf_counter() - start > 60 * args.minutes
        if steps_done % 500 == 0 or steps_done == args.steps or out_of_time:
            history.append({"step": steps_done, "lr": lr, "seconds": round(time.perf_counter() - start, 1),
                            **evaluate(net, valid)})
            print(json.dumps(history[-1]), flush=True)
        if out_of_time:
            break
    net.eval()
    if any(not torch.equal(v, net.encoder.state_dict()[k]) for k, v in encoder_before.items()):
        raise SystemExit("encoder changed: refusing to save")
    tables = {k: v for k, v in load_file(folder / "model.safetensors").items() if k.startswith("entropy.")}
    info = dict(manifest.get("info", {}))
    info["decoder_finetune"] = {"steps": steps_done, "planned_steps": args.steps, "learning_rate": args.lr,
                                "batch_size": args.batch_size, "crop": args.crop, "seed": args.seed,
                                "seconds": round(time.perf_counter() - start, 1), "encoder": "frozen (bit-identical)",
                                "monitor_psnr": [history[0]["psnr"], history[-1]["psnr"]],
                                "command": "python benchmarks/finetune_walloc_decoder.py " + " ".join(sys.argv[1:])}
    new_id = save_codec(net, tables, folder, info=info, name=info.get("name", args.model), half=True)
    print(f"saved {folder} (model id {new_id})", flush=True)


if __name__ == "__main__":
    main()
