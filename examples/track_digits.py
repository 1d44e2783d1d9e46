"""Track a plain PyTorch loop with prunescope: an MLP on scikit-learn's digits, pruned to 90 % with RigL.

    python examples/track_digits.py                 # to the API at PRUNESCOPE_API_URL (or spooled if it is down)
    python examples/track_digits.py --offline       # spool only; upload later with `prunescope sync`
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from torch import nn

import prunescope


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--offline", action="store_true", help="do not contact the API; spool the run to disk")
    parser.add_argument("--dir", help="spool directory (default: PRUNESCOPE_HOME/spool)")
    args = parser.parse_args()

    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    train_x, train_y, test_x, test_y = x[:1500], y[:1500], x[1500:], y[1500:]
    batches = list(zip(train_x.split(64), train_y.split(64), strict=True))

    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    pruning = {"target_sparsity": 0.9, "schedule": {"kind": "constant"},
               "recovery": {"kind": "gradient", "every_steps": 20}}
    # The pruner hooks itself into the optimizer: the loop below is an ordinary PyTorch loop.
    pruner = prunescope.Pruner(model, optimizer, pruning, epochs=args.epochs, steps_per_epoch=len(batches))

    config = {"model": "mlp-128-64", "dataset": "digits", "lr": 0.1, "epochs": args.epochs}
    with prunescope.init(name="digits-rigl", config=config, tags=["example"], offline=args.offline,
                         dir=args.dir, epochs=args.epochs) as run:
        run.watch(pruner)
        step = 0
        for epoch in range(1, args.epochs + 1):
            model.train()
            total = 0.0
            for xb, yb in batches:
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(xb), yb)
                loss.backward()
                optimizer.step()
                total += loss.item()
                step += 1
                if step % 10 == 0:
                    run.log(step=step, loss=loss.item())  # points inside the epoch: long epochs chart live
            model.eval()
            with torch.no_grad(), pruner.masked_weights():
                logits = model(test_x)
            test_acc = (logits.argmax(1) == test_y).float().mean().item()
            test_loss = nn.functional.cross_entropy(logits, test_y).item()
            run.log(epoch=epoch, train_loss=total / len(batches), test_loss=test_loss, test_acc=test_acc,
                    lr=optimizer.param_groups[0]["lr"])
            print(f"epoch {epoch}: test accuracy {test_acc:.3f}", flush=True)
    where = f"run {run.id}" if run.id is not None else f"spooled in {run.spool.path}"
    print(f"done: {where}")


if __name__ == "__main__":
    main()
