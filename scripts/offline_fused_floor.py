"""How fast could one step of Algorithm 1 be, with every network fused? Run from the repository:

    .venv/bin/python scripts/offline_fused_floor.py

An upper bound for the paper's settings (MLP 64-64, observation v1 of 66 values, 21 actions,
batch 512, one thread): a step written by hand with every network stacked into as few
operations as PyTorch allows (Q1, Q2, V and the actor share each layer's matrix product on o;
Q̄1, Q̄2 and the actor on o'), its losses' elementwise work, the backward pass by hand, one fused
Adam and the target update. It leaves out part of the real step's work (the minibatch gather,
the actor restricted to rows with a task, the exact CQL and actor gradients), so the real fused
step could only be slower. It is timed round by round against the project's step
(``DiscreteSACCQL.update``, on 10 RATC episodes), in CPU seconds: the ratio is what fusing
could add to the speed-up over the first version that ``docs/learner.md`` reports. Last, it
profiles 200 of the project's steps and prints the share of the matrix products (``mm``,
``addmm``, ``bmm``, ``baddbmm``) in them.
"""

import time

import numpy as np
import torch

from o2o.core.network import sample_network
from o2o.core.scenario import load_scenario
from o2o.core.seeds import LOGS
from o2o.learn.offline import TRAINING_ARRAYS, DiscreteSACCQL, normalize_rewards
from o2o.learn.settings import learner_settings
from o2o.logs.dataset import simulated_dataset
from o2o.sim import make_scheduler

torch.set_num_threads(1)
torch.manual_seed(0)

M, D, H, A = 512, 66, 64, 21
X, Xn = torch.rand(M, D), torch.rand(M, D)
mask = torch.rand(M, A) > 0.3
W1, b1 = torch.randn(D, 4 * H) * 0.1, torch.zeros(4 * H)
W2, b2 = torch.randn(4, H, H) * 0.1, torch.zeros(4, 1, H)
W3, b3 = torch.randn(4, H, A) * 0.1, torch.zeros(4, 1, A)
Wn1, bn1 = torch.randn(D, 3 * H) * 0.1, torch.zeros(3 * H)
Wn2, bn2 = torch.randn(3, H, H) * 0.1, torch.zeros(3, 1, H)
Wn3, bn3 = torch.randn(3, H, A) * 0.1, torch.zeros(3, 1, A)
params = [W1, b1, W2, b2, W3, b3]
m1 = [torch.zeros_like(p) for p in params]
m2 = [torch.zeros_like(p) for p in params]
steps = [torch.tensor(0.0) for p in params]
act = torch.randint(0, A, (M, 1))
neg = torch.tensor(-1e9)


def step():
    """One fused step (the shapes and operations of Algorithm 1's step, not its exact values)."""
    with torch.no_grad():
        hn = torch.relu(torch.addmm(bn1, Xn, Wn1)).view(M, 3, H).transpose(0, 1)
        hn = torch.relu(torch.baddbmm(bn2, hn, Wn2))
        on = torch.baddbmm(bn3, hn, Wn3)
        qn = torch.minimum(on[0], on[1])
        zn = torch.where(mask, on[2], neg)
        lp = torch.log_softmax(zn, -1)
        p = lp.exp()
        vn = (p * (qn - 0.2 * lp)).sum(-1)
        y = vn * 0.99
    h1 = torch.relu(torch.addmm(b1, X, W1))
    h1v = h1.view(M, 4, H).transpose(0, 1)
    h2 = torch.relu(torch.baddbmm(b2, h1v, W2))
    out = torch.baddbmm(b3, h2, W3)
    # losses' elementwise work and the gradient w.r.t. the heads' outputs (shapes only)
    q = out[:2]
    qa = q.gather(-1, act.expand(2, M, 1))
    z = torch.where(mask, q, neg)
    lse = torch.logsumexp(z, -1, keepdim=True)
    dq = (z - lse).exp()  # d logsumexp / dq
    dq.scatter_add_(-1, act.expand(2, M, 1), 2 * (qa - y[:, None]) - 1)
    za = torch.where(mask, out[3], neg)
    lpa = torch.log_softmax(za, -1)
    pa = lpa.exp()
    qm = torch.minimum(q[0], q[1])
    inner = qm - 0.2 * lpa
    da = pa * (inner - (pa * inner).sum(-1, keepdim=True))
    dv = 2 * (out[2, :, :1] - y[:, None])
    dout = torch.cat([dq, torch.nn.functional.pad(dv, (0, A - 1))[None], da[None]], 0)
    # backward
    dW3, db3 = torch.bmm(h2.transpose(1, 2), dout), dout.sum(1, keepdim=True)
    dh2 = torch.bmm(dout, W3.transpose(1, 2)).mul_(h2 > 0)
    dW2, db2 = torch.bmm(h1v.transpose(1, 2), dh2), dh2.sum(1, keepdim=True)
    dh1 = torch.bmm(dh2, W2.transpose(1, 2)).transpose(0, 1).reshape(M, 4 * H).mul_(h1 > 0)
    dW1, db1 = X.t() @ dh1, dh1.sum(0)
    torch._fused_adam_(params, [dW1, db1, dW2, db2, dW3, db3], m1, m2, [], steps, lr=3e-4, beta1=0.9,
                       beta2=0.999, weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)
    torch._foreach_lerp_([Wn1], [W1[:, :3 * H]], 0.005)


for _ in range(20):
    step()
sc = load_scenario("paper-sim"); net = sample_network(sc, 0)
s = learner_settings("paper")
data = simulated_dataset(sc, net, make_scheduler("ratc"), LOGS.take(10), s.reward_credit, obs_layout=s.obs_layout)
off = s.offline.model_copy(update={"batch_size": 512, "eval_every": 0})
algo = DiscreteSACCQL(off, 66, 21, 0)
r, _ = normalize_rewards(data["rewards"], off.reward_norm)
t = {k: torch.from_numpy(np.ascontiguousarray(data[k])) for k in TRAINING_ARRAYS}
t["rewards"] = torch.from_numpy(r)
it = algo.minibatches(t, t["actions"].shape[0])
batches = [next(it) for _ in range(320)]
for b in batches[:20]:
    algo.update(b)


def timed(f, n):
    t0 = time.process_time()
    f(n)
    return n / (time.process_time() - t0)


for r in range(3):
    cur = timed(lambda n: [algo.update(b) for b in batches[:n]], 300)
    fused = timed(lambda n: [step() for _ in range(n)], 300)
    print(f"round {r}: the project's step {cur:.0f} steps/s, fused (upper bound) {fused:.0f} steps/s, "
          f"ratio {fused / cur:.2f}")

# Where the project's step spends its time: the matrix products' share, from the profiler.
from torch.profiler import ProfilerActivity, profile  # noqa: E402

MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for b in batches[:200]:
        algo.update(b)
events = prof.key_averages()
total_us = sum(e.self_cpu_time_total for e in events)
matmul_us = sum(e.self_cpu_time_total for e in events if e.key in MATMULS)
print(f"the project's step under the profiler: {total_us / 200 / 1e3:.2f} ms, of which matrix products "
      f"{matmul_us / 200 / 1e3:.2f} ms ({100 * matmul_us / total_us:.0f}%)")
