"""P×K identity sampler: every batch holds P identities with K images each (batch-hard triplets need positives).

    sampler = PKSampler(labels=[it["label"] for it in items], p=16, k=4, seed=0)
    loader = DataLoader(dataset, batch_size=64, sampler=sampler, drop_last=True)
    sampler.set_epoch(3)   # the engine calls this; the order depends only on (seed, epoch)

A plain index sampler (like reid-strong-baseline's RandomIdentitySampler) rather than a batch
sampler: consecutive runs of P·K indices are the batches, so DataLoader batching, workers and the
engine's `loader.sampler.set_epoch` work unchanged. Identities are visited in shuffled rounds
(no identity twice in a batch) and each identity's images in shuffled rounds; an identity with
fewer than K images repeats some. An epoch has len(labels) // (P·K) batches (at least one).
Under DDP each of `num_replicas` ranks takes every num_replicas-th batch of one shared sequence,
so ranks see different identities and the same number of batches.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

__all__ = ["PKSampler"]


class PKSampler(Sampler[int]):
    def __init__(self, labels: Sequence[int], p: int, k: int, seed: int = 0, num_replicas: int = 1, rank: int = 0):
        by_label: dict[int, list[int]] = defaultdict(list)
        for index, label in enumerate(labels):
            by_label[int(label)].append(index)
        if not 1 <= p <= len(by_label):
            raise ValueError(f"P={p} identities per batch but the data has {len(by_label)}")
        self.pools = [np.array(v) for _, v in sorted(by_label.items())]
        self.p, self.k, self.seed, self.epoch = p, k, seed, 0
        self.num_replicas, self.rank = num_replicas, rank
        self.batches = max(len(labels) // (p * k * num_replicas), 1)  # per rank

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches * self.p * self.k

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        queues = [rng.permutation(pool).tolist() for pool in self.pools]
        order: list[int] = []
        for b in range(self.batches * self.num_replicas):
            if len(order) < self.p:  # a new round of identities, none repeated within this batch
                rest = [i for i in rng.permutation(len(self.pools)).tolist() if i not in order]
                order += rest
            chosen, order = order[: self.p], order[self.p:]
            for ident in chosen:
                while len(queues[ident]) < self.k:  # refill with a new shuffle of the identity's images
                    queues[ident] += rng.permutation(self.pools[ident]).tolist()
                if b % self.num_replicas == self.rank:
                    yield from queues[ident][: self.k]
                queues[ident] = queues[ident][self.k:]
