"""``mzsr-fast pretrain`` and ``mzsr-fast meta-train`` subcommands.

``register(subparsers)`` is called by :mod:`mzsr_fast.cli`.  Every hyper-parameter is a
flag with the official value (SPEC section 3) as default; see ``--help``.  Under torchrun,
``torchrun --nproc_per_node=N -m mzsr_fast.train.meta ...`` is the same as ``meta-train``.
Exit codes: 0 done, 3 training diverged (non-finite loss; the last good checkpoint is kept).
"""
from __future__ import annotations

import argparse

__all__ = ["register"]


def _run_pretrain(args) -> int:
    from . import pretrain
    from .common import run_entry

    return run_entry(pretrain.run, args, err_prefix="mzsr-fast pretrain: ",
                     done="pretrain: stopped at step {step}; best validation {best}")


def _run_meta(args) -> int:
    from . import meta
    from .common import run_entry

    return run_entry(meta.run, args, err_prefix="mzsr-fast meta-train: ",
                     done="meta-train: stopped at step {step}; best validation {best}")


def _run_campaign(args) -> int:
    from . import campaign

    return campaign.run(args)


def _run_layer_lr(args) -> int:
    from . import layer_lr

    layer_lr.run(args)
    return 0


def register(subparsers) -> None:
    from . import campaign, layer_lr, meta, pretrain

    p = subparsers.add_parser("pretrain", help="bicubic pretraining (transfer stage), resumable",
                              description=pretrain.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pretrain.add_args(p)
    p.set_defaults(func=_run_pretrain)
    m = subparsers.add_parser("meta-train", help="MAML meta-transfer learning, resumable, torchrun-aware",
                              description=meta.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    meta.add_args(m)
    m.set_defaults(func=_run_meta)
    c = subparsers.add_parser("campaign", help="start or resume a long meta-training campaign (one folder, committed)",
                              description=campaign.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    campaign.add_args(c)
    c.set_defaults(func=_run_campaign)
    ll = subparsers.add_parser("layer-lr", help="meta-learn per-layer inner rates of a weights file, fold them in",
                               description=layer_lr.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    layer_lr.add_args(ll)
    ll.set_defaults(func=_run_layer_lr)
