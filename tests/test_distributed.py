"""Contrastive terms with latents gathered across processes (two gloo processes on this machine) equal the
single-process terms over the whole batch, values and gradients alike."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cmim_hf.modeling.modeling_cmim import cmim_contrastive_log_prob, gather_across_processes, infonce_log_prob

WORLD, PER_RANK, DIM, TAU = 2, 3, 5, 0.2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, z_a: torch.Tensor, z_b: torch.Tensor, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        local_a = z_a[rows].clone().requires_grad_(True)
        local_b = z_b[rows].clone().requires_grad_(True)
        all_a, offset = gather_across_processes(local_a)
        all_b, _ = gather_across_processes(local_b)
        cmim = cmim_contrastive_log_prob(local_a, TAU, all_a, offset)
        infonce = infonce_log_prob(local_a, local_b, TAU, (all_a, all_b), offset)
        (cmim.sum() + infonce.sum()).backward()
        results[rank] = (cmim.detach(), infonce.detach(), local_a.grad, local_b.grad)
    finally:
        dist.destroy_process_group()


def test_gathered_contrastive_terms_equal_the_whole_batch_terms():
    generator = torch.Generator().manual_seed(0)
    z_a = torch.randn(WORLD * PER_RANK, DIM, generator=generator)
    z_b = z_a + 0.3 * torch.randn(WORLD * PER_RANK, DIM, generator=generator)
    results = mp.Manager().dict()
    mp.spawn(_rank_main, args=(_free_port(), z_a, z_b, results), nprocs=WORLD, join=True)

    whole_a, whole_b = z_a.clone().requires_grad_(True), z_b.clone().requires_grad_(True)
    cmim = cmim_contrastive_log_prob(whole_a, TAU)
    infonce = infonce_log_prob(whole_a, whole_b, TAU)
    (cmim.sum() + infonce.sum()).backward()

    gathered = [results[r] for r in range(WORLD)]
    assert torch.allclose(torch.cat([g[0] for g in gathered]), cmim.detach(), atol=1e-6)
    assert torch.allclose(torch.cat([g[1] for g in gathered]), infonce.detach(), atol=1e-6)
    # each process's gradient includes what the other process's loss sends back through the gather
    assert torch.allclose(torch.cat([g[2] for g in gathered]), whole_a.grad, atol=1e-5)
    assert torch.allclose(torch.cat([g[3] for g in gathered]), whole_b.grad, atol=1e-5)


def test_without_a_process_group_nothing_is_gathered():
    z = torch.randn(4, 3)
    gathered, offset = gather_across_processes(z)
    assert gathered is z and offset == 0
