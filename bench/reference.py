#!/usr/bin/env python3
"""PyTorch reference of limoe's model and training loss, for `limoe bench torch`.

The same function as crates/limoe-model (see /work/shared/ARCHITECTURE.md and the module docs
there): patch and token embeddings with learned positions; ONE stack of pre-LN blocks shared by
image and text sequences (attention never mixes modalities); in MoE blocks the image tokens and
the real text tokens of the batch are routed together (image first): linear router, softmax,
top-K of the (noisy) logits, capacity C = min(ceil(n K c / E), n) over the batch (one routing
group), Batch Priority Routing (stable sort by descending top-1 gate, every first choice before any second
choice), batched expert MLPs, combine weights = raw clean gates; auxiliary losses per modality
(local/global entropy, importance, load, z-loss) with their weights; per-modality heads (norm,
mean or MAP pooling, projection without bias, L2 normalisation); CLIP contrastive loss with a
learned logit scale (clamped as a parameter after each optimizer step, as open_clip does, so
not in the forward pass).

Input: a directory written by `limoe bench --export DIR` (or by the `torch` target):
  config.json          the model's shape, routing and loss weights, and the timing settings
  weights.safetensors  every parameter by limoe's name
  batch.safetensors    patches [B, Np, D] f32, ids [B, L] i64, text_weights [B, L] f32 (1 = real)
  grads.safetensors    (optional) limoe's gradients of the check pass, by parameter name
  limoe.json           (optional) limoe's losses of the check pass

Output: one JSON object on stdout: the check pass's losses (routing noise off), the agreement
with limoe.json / grads.safetensors when present, and fwd / fwd+bwd step times in ms (median,
min, max of `steps` after `warmup`, routing noise as configured). With --serve, no timing
follows the check; instead each line `K` read from stdin times K steps and answers one JSON
line of their fwd and fwd+bwd times in ms, until stdin closes: `limoe bench torch` uses this to
interleave rounds of limoe and PyTorch steps, so that both see the same machine load.

Needs torch and safetensors (`pip install torch safetensors`); nothing in the tests uses it.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

LAYER_NORM_EPS = 1e-6


def linear(p, name, x, bias=True):
    return F.linear(x, p[name + ".weight"], p[name + ".bias"] if bias else None)


def layer_norm(p, name, x):
    return F.layer_norm(x, (x.shape[-1],), p[name + ".scale"], p[name + ".shift"], LAYER_NORM_EPS)


def attention(p, name, x, key_bias):
    """Self-attention, one QKV projection; key_bias [B, 1, 1, N] or None."""
    batch, tokens, width = x.shape
    heads = CFG["heads"]
    qkv = linear(p, name + ".qkv", x).reshape(batch, tokens, 3, heads, width // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=key_bias)
    return linear(p, name + ".out", mixed.transpose(1, 2).reshape(batch, tokens, width))


def attention_pool(p, name, x, key_bias):
    """MAP: a learned query attends to the tokens."""
    batch, tokens, width = x.shape
    heads = CFG["heads"]
    d = width // heads
    query = p[name + ".query"].expand(batch, 1, width)
    q = linear(p, name + ".q", query).reshape(batch, 1, heads, d).transpose(1, 2)
    kv = linear(p, name + ".kv", x).reshape(batch, tokens, 2, heads, d)
    k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
    pooled = F.scaled_dot_product_attention(q, k, v, attn_mask=key_bias)
    return linear(p, name + ".out", pooled.reshape(batch, width))


def mlp(p, name, x):
    return linear(p, name + ".fc2", F.gelu(linear(p, name + ".fc1", x), approximate="tanh"))


def capacity(tokens, k, factor, experts):
    return min(math.ceil(tokens * k * factor / experts), tokens)


def cv_squared(v):
    mean = v.mean()
    return ((v - mean) ** 2).mean() / mean**2


def route(scores, probs, moe):
    """Buffer row of each (token, choice) and whether it was kept; the batch is one group."""
    t, e = scores.shape
    k = moe["top_k"]
    slots = capacity(t, k, moe["capacity"], e)
    chosen = scores.topk(k, dim=1).indices
    top1 = probs.gather(1, chosen[:, :1]).squeeze(1)
    tokens = torch.arange(t)
    if moe["bpr"]:
        tokens = tokens[torch.sort(top1, descending=True, stable=True).indices]
    sequence = chosen[tokens].t().reshape(-1)  # choice-major fill order
    one_hot = F.one_hot(sequence, e)
    position = (one_hot.cumsum(0) - one_hot).gather(1, sequence[:, None]).squeeze(1)
    keep = position < slots
    row = torch.zeros(t, k, dtype=torch.long)
    kept = torch.zeros(t, k, dtype=torch.bool)
    token = tokens.repeat(k)
    choice = torch.arange(k).repeat_interleave(t)
    row[token, choice] = sequence * slots + position
    kept[token, choice] = keep
    return chosen, row * kept, kept, slots


def modality_terms(logits, log_probs, probs, threshold, noise_std, global_experts):
    """Unweighted auxiliary losses of one modality's rows."""
    local_entropy = -(probs * log_probs).sum(-1).mean()
    mean_gate = probs.mean(0)
    mean_entropy = -(mean_gate * (mean_gate + 1e-30).log()).sum()
    zero = logits.new_zeros(())
    terms = {
        "local_entropy": local_entropy,
        "global_entropy": F.relu(math.log(global_experts) - mean_entropy),
        "importance": cv_squared(probs.sum(0)),
        "load": zero,
        "z_loss": ((logits[:, :1] - log_probs[:, :1]) ** 2).mean(),
    }
    if threshold is not None:
        z = (threshold - logits) / (noise_std * math.sqrt(2.0))
        terms["load"] = cv_squared((0.5 - 0.5 * torch.erf(z)).mean(0))
    return terms


def moe_layer(p, name, x, counts, noise):
    """Routes x [T, W] (image rows first); returns y [T, W] and the weighted aux loss."""
    moe = CFG["moe"]
    e, k = moe["experts"], moe["top_k"]
    t, width = x.shape
    logits = x @ p[name + ".router"]
    log_probs = F.log_softmax(logits, 1)
    probs = log_probs.exp()
    noisy, std = None, moe["noise"] / e
    if noise and std > 0:
        noisy = logits + torch.randn_like(logits) * std
    scores = (logits if noisy is None else noisy).detach()
    with torch.no_grad():
        chosen, row, kept, slots = route(scores, probs, moe)
    fill = torch.zeros(e * slots + 1, dtype=torch.long)
    fill[torch.where(kept, row, e * slots)] = torch.arange(t)[:, None].expand(t, k)
    buffer = x[fill[:-1]].reshape(e, slots, width)
    hidden = F.gelu(torch.baddbmm(p[name + ".experts.b1"][:, None], buffer, p[name + ".experts.w1"]), approximate="tanh")
    out = torch.baddbmm(p[name + ".experts.b2"][:, None], hidden, p[name + ".experts.w2"]).reshape(e * slots, width)
    gates = probs.gather(1, chosen) * kept
    y = sum(out[row[:, c]] * gates[:, c : c + 1] for c in range(k))
    threshold = None if noisy is None else noisy.gather(1, chosen[:, k - 1 :])
    aux = logits.new_zeros(())
    for modality, (start, n) in zip(("image", "text"), ((0, counts[0]), (counts[0], counts[1]))):
        if n == 0:
            continue
        rows = slice(start, start + n)
        terms = modality_terms(
            logits[rows], log_probs[rows], probs[rows],
            None if threshold is None else threshold[rows], std,
            moe["global_experts"][modality],
        )
        for term, weight in CFG["aux"][modality].items():
            if weight != 0.0:
                aux = aux + weight * terms[term]
    return y, aux


def head(p, name, pooling, tokens, weights, key_bias):
    normed = layer_norm(p, name + ".norm", tokens)
    if pooling == "map":
        pooled = attention_pool(p, name + ".map", normed, key_bias)
    elif weights is None:
        pooled = normed.mean(1)
    else:
        pooled = (normed * weights).sum(1) / weights.sum(1)
    projected = F.linear(pooled, p[name + ".projection.weight"])
    return projected / (projected.pow(2).sum(-1, keepdim=True) + 1e-12).sqrt()


def forward(p, batch, noise):
    """The training loss: (total, contrastive, aux)."""
    patches, ids, weights = batch["patches"], batch["ids"], batch["text_weights"]
    b, length = ids.shape
    width = CFG["width"]
    key_bias = ((1.0 - weights) * -1e9).reshape(b, 1, 1, length)
    valid = weights.reshape(-1).nonzero().squeeze(1)
    image = linear(p, "patch_embed.projection", patches) + p["patch_embed.positions"]
    text = p["token_embed.table"][ids] + p["token_embed.positions"][:, :length]
    aux = image.new_zeros(())
    for i in range(CFG["depth"]):
        block = f"encoder.block{i}"
        image = image + attention(p, block + ".attention", layer_norm(p, block + ".norm1", image), None)
        text = text + attention(p, block + ".attention", layer_norm(p, block + ".norm1", text), key_bias)
        if i in CFG["moe_blocks"]:
            routed = torch.cat([
                layer_norm(p, block + ".norm2", image).reshape(-1, width),
                layer_norm(p, block + ".norm2", text).reshape(-1, width)[valid],
            ])
            image_rows = image.shape[0] * image.shape[1]
            y, block_aux = moe_layer(p, block + ".moe", routed, (image_rows, valid.numel()), noise)
            aux = aux + block_aux
            image = image + y[:image_rows].reshape(image.shape)
            update = text.new_zeros(b * length, width).index_add(0, valid, y[image_rows:])
            text = text + update.reshape(text.shape)
        else:
            image = image + mlp(p, block + ".mlp", layer_norm(p, block + ".norm2", image))
            text = text + mlp(p, block + ".mlp", layer_norm(p, block + ".norm2", text))
    pooling = CFG["pooling"]
    image_emb = head(p, "image_head", pooling["image"], image, None, None)
    text_emb = head(p, "text_head", pooling["text"], text, weights[:, :, None], key_bias)
    scale = p["log_logit_scale"].exp()
    logits = image_emb @ text_emb.t() * scale
    targets = torch.arange(b)
    contrastive = 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))
    return contrastive + aux, contrastive, aux


def time_steps(params, batch, steps):
    """Forward and forward + backward times in ms of `steps` training steps (noise on)."""
    fwd, step = [], []
    for _ in range(steps):
        for t in params.values():
            t.grad = None
        start = time.perf_counter()
        loss, _, _ = forward(params, batch, noise=True)
        forward_done = time.perf_counter()
        loss.backward()
        end = time.perf_counter()
        fwd.append((forward_done - start) * 1e3)
        step.append((end - start) * 1e3)
    return fwd, step


def summary(samples):
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def main():
    global CFG
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", help="directory written by `limoe bench --export DIR`")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    parser.add_argument("--steps", type=int, help="timed steps (default: config.json's)")
    parser.add_argument("--warmup", type=int, help="warm-up steps (default: config.json's)")
    parser.add_argument("--check", action="store_true", help="exit 1 when the losses disagree")
    parser.add_argument("--serve", action="store_true", help="time steps on request (see above)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with open(os.path.join(args.dir, "config.json")) as f:
        CFG = json.load(f)
    params = {n: t.requires_grad_() for n, t in load_file(os.path.join(args.dir, "weights.safetensors")).items()}
    batch = load_file(os.path.join(args.dir, "batch.safetensors"))
    result = {"torch": torch.__version__, "threads": torch.get_num_threads()}

    loss, contrastive, aux = forward(params, batch, noise=False)
    loss.backward()
    result.update(loss=loss.item(), contrastive=contrastive.item(), aux=aux.item())
    ok = True
    expected_path = os.path.join(args.dir, "limoe.json")
    if os.path.exists(expected_path):
        with open(expected_path) as f:
            expected = json.load(f)
        errors = {
            key: abs(result[key] - expected[key]) / max(abs(expected[key]), 1e-12)
            for key in ("loss", "contrastive", "aux")
        }
        result["loss_rel_err"] = errors
        ok = errors["loss"] <= CFG["tolerance"]["loss"]
    grads_path = os.path.join(args.dir, "grads.safetensors")
    if os.path.exists(grads_path):
        worst = (0.0, None)
        theirs = load_file(grads_path)
        for name, grad in theirs.items():
            ours = params[name].grad
            ours = torch.zeros_like(grad) if ours is None else ours
            err = ((ours - grad).norm() / grad.norm().clamp(min=1e-20)).item()
            worst = max(worst, (err, name), key=lambda w: w[0])
        result["grad_rel_err"] = {"worst": worst[0], "param": worst[1], "params": len(theirs)}
        ok = ok and worst[0] <= CFG["tolerance"]["grad"]
    result["agree"] = ok

    if args.serve:
        print(json.dumps(result), flush=True)
        for line in sys.stdin:
            fwd, step = time_steps(params, batch, int(line))
            print(json.dumps({"fwd_ms": fwd, "step_ms": step}), flush=True)
        return 0
    timing = CFG["timing"]
    warmup = timing["warmup"] if args.warmup is None else args.warmup
    steps = timing["steps"] if args.steps is None else args.steps
    time_steps(params, batch, warmup)
    if steps:
        fwd, step = time_steps(params, batch, steps)
        result["fwd_ms"] = summary(fwd)
        result["step_ms"] = summary(step)
    json.dump(result, sys.stdout)
    print()
    return 0 if ok or not args.check else 1


CFG = {}

if __name__ == "__main__":
    sys.exit(main())
