"""A small GPT written for validation: it keeps for backward exactly what the Megatron-style
activation accounting of models/memory.py counts (Korthikanti et al. 2022, Sec. 4.1).

Choices that make the saved tensors match the formula, each stated:
  - no dropout (the formula then has no 1-byte masks: ``Transformer.dropout=False``);
  - one fused QKV projection whose output is viewed as Q, K, V: scaled_dot_product_attention
    saves the three views of one storage (2 s b (hq + 2 hkv) bytes), and takes Q as a
    (b, s, a, d) view so its output is laid out (b, s, a, d) and the output projection reads
    it without a copy (the flash kernel keeps only the fp32 log-sum-exp, b a s 4 bytes);
  - SwiGLU as one autograd function that saves the fused gate/up output and recomputes SiLU
    in backward (Megatron-Core ``fused_bias_swiglu``): 6 s b f bytes, not 8; its backward
    writes the gradient into the saved buffer;
  - the loss as Megatron's vocab cross-entropy: it saves only the fp32 softmax (4 s b V bytes)
    and turns it into the logits' gradient in place;
  - no position embedding (causal attention alone; RoPE would add saved cos/sin tables);
  - no biases in linear layers (the parameter count of models.transformer ignores them).
Full recompute wraps each block in ``torch.utils.checkpoint`` (non-reentrant), which keeps
the block input (2 s b h) as the formula's ``recompute == full`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.transformer import Transformer


@dataclass(frozen=True, slots=True)
class GPTConfig:
    num_layers: int = 4
    hidden: int = 256
    num_heads: int = 4
    num_kv_heads: int = 4
    ffn_hidden: int = 1024
    vocab: int = 512
    seq_len: int = 512
    activation: str = "gelu"          # gelu | swiglu

    def __post_init__(self) -> None:
        for f in ("num_layers", "hidden", "num_heads", "num_kv_heads", "ffn_hidden", "vocab", "seq_len"):
            if int(getattr(self, f)) < 1:
                raise ValueError(f"gpt.{f}: must be a positive integer, got {getattr(self, f)!r}")
        if self.hidden % self.num_heads:
            raise ValueError(f"gpt.num_heads: {self.num_heads} does not divide hidden={self.hidden}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"gpt.num_kv_heads: {self.num_kv_heads} must divide num_heads={self.num_heads}")
        if self.activation not in ("gelu", "swiglu"):
            raise ValueError(f"gpt.activation: {self.activation!r} unknown; choose gelu or swiglu")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.num_heads

    def transformer(self) -> Transformer:
        """The models.transformer spec of this GPT (for clustersim's predictions)."""
        return Transformer(name="validate-gpt", num_layers=self.num_layers, hidden=self.hidden,
                           num_heads=self.num_heads, num_kv_heads=self.num_kv_heads, ffn_hidden=self.ffn_hidden,
                           vocab=self.vocab, seq_len=self.seq_len, activation=self.activation,
                           tied_embeddings=False, dropout=False, learned_pos_emb=False,
                           rotary=False)   # no position encoding at all (module docstring)


class _SwiGLU(torch.autograd.Function):
    """silu(gate) * up from the fused fc1 output; saves only that output (Megatron-Core)."""

    @staticmethod
    def forward(ctx, gate_up):
        gate, up = gate_up.chunk(2, dim=-1)
        ctx.save_for_backward(gate_up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx, grad):
        # The saved gate/up buffer is needed by nobody else: turn it into the gradient in place
        # (as Megatron's cross-entropy reuses its softmax); the only transient is sigmoid(gate).
        (gate_up,) = ctx.saved_tensors
        gate, up = gate_up.chunk(2, dim=-1)
        sig = torch.sigmoid(gate)
        gate.mul_(sig)                                    # gate <- silu(gate)
        sig.addcmul_(gate, sig, value=-1).add_(gate)      # sig <- silu' = sig (1 - silu) + silu
        sig.mul_(up).mul_(grad)                           # sig <- d gate
        up.copy_(gate).mul_(grad)                         # up  <- d up = grad silu
        gate.copy_(sig)
        return gate_up


class _VocabCrossEntropy(torch.autograd.Function):
    """Mean token cross-entropy that saves the fp32 softmax only and reuses it as the gradient
    (Megatron ``_VocabParallelCrossEntropy``; Korthikanti Sec. 4.3 counts 4 s b V / t bytes).
    With tensor parallelism each rank holds the logits of its vocabulary slice [lo, lo + V/t)
    and the max, the sum and the target's probability are all-reduced."""

    @staticmethod
    def forward(ctx, logits, targets, tp_size=1, lo=0):
        probs = logits.float()                       # softmax in place on one fp32 copy
        mx = probs.amax(dim=-1, keepdim=True)
        _all_reduce(mx, tp_size, "max")
        probs.sub_(mx).exp_()
        total = probs.sum(dim=-1, keepdim=True)
        _all_reduce(total, tp_size)
        probs.div_(total)
        local = targets - lo
        mine = (local >= 0) & (local < probs.shape[-1])
        local = local.masked_fill(~mine, 0)
        picked = probs.gather(-1, local.unsqueeze(-1)).squeeze(-1).masked_fill(~mine, 0.0)
        _all_reduce(picked, tp_size)
        loss = -picked.log().mean()
        ctx.save_for_backward(probs, local, mine)
        ctx.logits_dtype = logits.dtype
        return loss

    @staticmethod
    def backward(ctx, grad):
        probs, local, mine = ctx.saved_tensors
        probs.scatter_add_(-1, local.unsqueeze(-1), (-mine.to(probs.dtype)).unsqueeze(-1))
        probs.mul_(grad / local.numel())
        return probs.to(ctx.logits_dtype), None, None, None


def _all_reduce(x, tp_size, op="sum"):
    if tp_size > 1:
        import torch.distributed as dist
        dist.all_reduce(x, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return x


class _CopyToTP(torch.autograd.Function):
    """Megatron's f: identity forward, all-reduce of the gradient backward (Shoeybi et al. 2019)."""

    @staticmethod
    def forward(ctx, x, tp_size):
        ctx.tp_size = tp_size
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return _all_reduce(grad.contiguous(), ctx.tp_size), None


class _ReduceFromTP(torch.autograd.Function):
    """Megatron's g: all-reduce forward, identity backward."""

    @staticmethod
    def forward(ctx, x, tp_size):
        return _all_reduce(x, tp_size)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class Block(nn.Module):
    """Pre-norm block; with ``tp`` = (rank, size) it holds this rank's heads and FFN columns
    (QKV and FC1 column-parallel, projection and FC2 row-parallel, Shoeybi et al. 2019)."""

    def __init__(self, cfg: GPTConfig, tp=(0, 1)):
        super().__init__()
        self.cfg, self.tp_size = cfg, tp[1]
        t = tp[1]
        d = cfg.head_dim
        self.heads, self.kv_heads = cfg.num_heads // t, cfg.num_kv_heads // t
        self.ln1 = nn.LayerNorm(cfg.hidden)
        self.qkv = nn.Linear(cfg.hidden, (self.heads + 2 * self.kv_heads) * d, bias=False)
        self.proj = nn.Linear(self.heads * d, cfg.hidden, bias=False)
        self.ln2 = nn.LayerNorm(cfg.hidden)
        k = 2 if cfg.activation == "swiglu" else 1
        self.fc1 = nn.Linear(cfg.hidden, k * cfg.ffn_hidden // t, bias=False)
        self.fc2 = nn.Linear(cfg.ffn_hidden // t, cfg.hidden, bias=False)

    def forward(self, x):
        c, t = self.cfg, self.tp_size
        b, s, _ = x.shape
        h = self.ln1(x)
        h = _CopyToTP.apply(h, t) if t > 1 else h
        qkv = self.qkv(h).view(b, s, self.heads + 2 * self.kv_heads, c.head_dim)
        q, k, v = qkv.split([self.heads, self.kv_heads, self.kv_heads], dim=2)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=True, enable_gqa=self.kv_heads != self.heads)
        o = self.proj(o.transpose(1, 2).reshape(b, s, self.heads * c.head_dim))
        x = x + (_ReduceFromTP.apply(o, t) if t > 1 else o)
        h = self.ln2(x)
        h = self.fc1(_CopyToTP.apply(h, t) if t > 1 else h)
        h = _SwiGLU.apply(h) if c.activation == "swiglu" else F.gelu(h)
        h = self.fc2(h)
        return x + (_ReduceFromTP.apply(h, t) if t > 1 else h)


class GPT(nn.Module):
    """Decoder-only transformer; ``forward(ids, targets)`` returns the mean cross-entropy.
    With ``tp`` = (rank, size): vocab-parallel embedding, output layer and loss too."""

    def __init__(self, cfg: GPTConfig, recompute: bool = False, tp=(0, 1)):
        super().__init__()
        if cfg.num_heads % tp[1] or cfg.num_kv_heads % tp[1] or cfg.ffn_hidden % tp[1] or cfg.vocab % tp[1]:
            raise ValueError(f"gpt: tp={tp[1]} must divide num_heads, num_kv_heads, ffn_hidden and vocab")
        self.cfg, self.recompute, self.tp = cfg, recompute, tp
        self.vocab_lo = tp[0] * cfg.vocab // tp[1]
        self.embed = nn.Embedding(cfg.vocab // tp[1], cfg.hidden)
        self.blocks = nn.ModuleList(Block(cfg, tp) for _ in range(cfg.num_layers))
        self.ln_f = nn.LayerNorm(cfg.hidden)
        self.head = nn.Linear(cfg.hidden, cfg.vocab // tp[1], bias=False)

    def forward(self, ids, targets):
        t = self.tp[1]
        if t > 1:   # vocab-parallel embedding: rows of other ranks give zeros, then all-reduce
            local = ids - self.vocab_lo
            other = (local < 0) | (local >= self.embed.num_embeddings)
            x = _ReduceFromTP.apply(self.embed(local.masked_fill(other, 0)).masked_fill(other.unsqueeze(-1), 0), t)
        else:
            x = self.embed(ids)
        for blk in self.blocks:
            x = checkpoint(blk, x, use_reentrant=False, preserve_rng_state=False) if self.recompute else blk(x)
        h = self.ln_f(x)
        logits = self.head(_CopyToTP.apply(h, t) if t > 1 else h)
        return _VocabCrossEntropy.apply(logits, targets, t, self.vocab_lo)


def build_gpt(cfg: GPTConfig, dtype=torch.bfloat16, device="cpu", recompute: bool = False, seed: int = 0,
              tp=(0, 1)) -> GPT:
    """A GPT with random (seeded) weights in ``dtype`` on ``device``; with ``tp`` = (rank, size)
    this rank's shard of the same weights the unsharded model gets for that seed."""
    torch.manual_seed(seed)
    full = GPT(cfg, recompute=recompute)
    for p in full.parameters():
        if p.dim() >= 2:
            nn.init.normal_(p, std=0.02)
    if tp[1] == 1:
        return full.to(device=device, dtype=dtype)
    model = GPT(cfg, recompute=recompute, tp=tp)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(_shard(name, full.get_parameter(name), cfg, *tp))
    return model.to(device=device, dtype=dtype)


def _shard(name: str, w, cfg: GPTConfig, rank: int, size: int):
    """Rank ``rank``'s slice of full weight ``w`` (Megatron's column/row split)."""
    def rows(x, parts):   # the rank's block of each of ``parts`` equal row groups, concatenated
        return torch.cat([g.chunk(size)[rank] for g in x.split(parts)])
    d = cfg.head_dim
    if name.endswith("qkv.weight"):
        return rows(w, [cfg.num_heads * d, cfg.num_kv_heads * d, cfg.num_kv_heads * d])
    if name.endswith("fc1.weight"):
        return rows(w, [cfg.ffn_hidden] * (2 if cfg.activation == "swiglu" else 1))
    if name.endswith(("proj.weight", "fc2.weight")):
        return w.chunk(size, dim=1)[rank]
    if name in ("embed.weight", "head.weight"):
        return w.chunk(size)[rank]
    return w


def random_batch(cfg: GPTConfig, micro_batch: int, device="cpu", generator=None):
    """(ids, targets) of random tokens, int64, shape (micro_batch, seq_len)."""
    ids = torch.randint(0, cfg.vocab, (micro_batch, cfg.seq_len + 1), generator=generator).to(device)
    return ids[:, :-1].contiguous(), ids[:, 1:].contiguous()


class MixedPrecisionAdam:
    """Adam with fp32 master weights and moments over 16-bit model weights and gradients
    (Micikevicius et al. 2018; the ZeRO paper's 2 + 2 + 12 bytes per parameter).

    The weights become views of one flat buffer. ``own_grads``: gradients are views of one
    flat buffer too, pre-allocated and zeroed in place so they live across steps (with torch
    DDP pass False: DDP's gradient buckets hold them, ``gradient_as_bucket_view=True``).
    ``shard`` = (rank, world) keeps master weights and moments for this rank's slice of the
    flat weights only (ZeRO stage 1, Rajbhandari et al. 2020): ``reduce_scatter_grads``
    sums each rank's slice of the gradients, ``step`` updates the slice and all-gathers it.
    """

    CHUNK = 1 << 16          # elements per update on CPU (fp32 temporaries of 2 x 256 KiB)
    CHUNK_CUDA = 1 << 24     # on a GPU few large kernels: launch overhead would dominate small chunks

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, own_grads=True, shard=(0, 1)):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0
        self.rank, self.world = shard
        dev, dt = self.params[0].device, self.params[0].dtype
        self.numel = sum(p.numel() for p in self.params)
        padded = self.numel + (-self.numel % self.world)
        self.flat = torch.zeros(padded, device=dev, dtype=dt)
        self.flat_grad = torch.zeros(padded, device=dev, dtype=dt) if own_grads else None
        i = 0
        for p in self.params:
            k = p.numel()
            self.flat[i:i + k].copy_(p.detach().reshape(-1))
            p.data = self.flat[i:i + k].view_as(p)
            if own_grads:
                p.grad = self.flat_grad[i:i + k].view_as(p)
            i += k
        self.shard_len = padded // self.world
        self.lo = self.rank * self.shard_len
        self.master = self.flat[self.lo:self.lo + self.shard_len].float()
        self.m = torch.zeros_like(self.master)
        self.v = torch.zeros_like(self.master)
        self.shard_grad = None
        if dev.type == "cuda":
            self.CHUNK = self.CHUNK_CUDA

    def state_bytes(self) -> int:
        """Bytes of weights, gradients and optimizer state this rank holds (distinct storages)."""
        tensors = [self.flat, self.master, self.m, self.v] + [p.grad for p in self.params if p.grad is not None]
        seen = {}
        for t in tensors:
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        return sum(seen.values())

    def zero_grad(self) -> None:
        if self.flat_grad is not None:
            self.flat_grad.zero_()
        else:
            for p in self.params:
                if p.grad is not None:
                    p.grad.zero_()

    def reduce_scatter_grads(self, group=None) -> None:
        """ZeRO-1 gradient reduction: this rank's slice of the summed flat gradients."""
        import torch.distributed as dist
        self.shard_grad = torch.empty(self.shard_len, device=self.flat.device, dtype=self.flat.dtype)
        dist.reduce_scatter_tensor(self.shard_grad, self.flat_grad, group=group)
        self.shard_grad.div_(self.world)

    def _grad_slices(self):
        """(offset into this rank's slice, gradient tensor) pieces covering the slice."""
        if self.shard_grad is not None:
            yield 0, self.shard_grad
        elif self.flat_grad is not None:
            yield 0, self.flat_grad[self.lo:self.lo + self.shard_len]
        else:
            i = 0
            for p in self.params:
                yield i, p.grad.reshape(-1)
                i += p.numel()

    def step(self) -> None:
        import torch.distributed as dist
        self.t += 1
        b1, b2 = self.betas
        c2, step = (1 - b2 ** self.t) ** 0.5, -self.lr / (1 - b1 ** self.t)
        for off, grad in self._grad_slices():
            # chunked, like a fused multi-tensor Adam kernel: fp32 temporaries of one chunk only
            for i in range(0, grad.numel(), self.CHUNK):
                j = min(i + self.CHUNK, grad.numel())
                g = grad[i:j].float()
                m, v, w = self.m[off + i:off + j], self.v[off + i:off + j], self.master[off + i:off + j]
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                w.addcdiv_(m, torch.sqrt(v, out=g).div_(c2).add_(self.eps), value=step)
                self.flat[self.lo + off + i:self.lo + off + j].copy_(w)
        self.shard_grad = None
        if self.world > 1:
            dist.all_gather_into_tensor(self.flat, self.flat[self.lo:self.lo + self.shard_len].clone())
        self.zero_grad()
