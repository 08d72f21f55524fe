"""The paper's controller: an LSTM that emits one softmax per token, trained with PPO.

As in NASNet/MnasNet: one LSTM layer of 100 units, the previous token's embedding as the
next input, a moving-average reward baseline (decay 0.95), PPO's clipped objective with an
entropy bonus, several epochs over each batch of finished trials, Adam at 3.5e-4,
weights initialised U(-0.1, 0.1). ``reinforce`` is the same network with a plain
policy-gradient step.
"""

from __future__ import annotations

import torch
from torch import nn

from search.controllers.base import Controller, Proposal


class TokenPolicy(nn.Module):
    def __init__(self, cardinalities: list[int], hidden: int = 100):
        super().__init__()
        self.cardinalities = cardinalities
        self.start = nn.Parameter(torch.zeros(1, hidden))
        self.embeddings = nn.ModuleList(nn.Embedding(c, hidden) for c in cardinalities)
        self.cell = nn.LSTMCell(hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, c) for c in cardinalities)
        for p in self.parameters():
            nn.init.uniform_(p, -0.1, 0.1)

    def forward(self, actions: torch.Tensor | None = None, generator: torch.Generator | None = None, batch: int = 1):
        """Sample (actions None) or score given actions [B, T]; returns actions, log-prob and entropy per row."""
        n = actions.shape[0] if actions is not None else batch
        x = self.start.expand(n, -1)
        state = None
        chosen, logp, entropy = [], torch.zeros(n), torch.zeros(n)
        for t, head in enumerate(self.heads):
            h, c = self.cell(x, state)
            state = (h, c)
            dist = torch.distributions.Categorical(logits=head(h))
            if actions is None:
                a = torch.multinomial(dist.probs, 1, generator=generator).squeeze(1)
            else:
                a = actions[:, t]
            chosen.append(a)
            logp = logp + dist.log_prob(a)
            entropy = entropy + dist.entropy()
            x = self.embeddings[t](a)
        return torch.stack(chosen, 1), logp, entropy


class PolicyGradientController(Controller):
    name = "ppo"

    def __init__(
        self,
        cardinalities,
        seed: int = 0,
        algorithm: str = "ppo",
        hidden: int = 100,
        lr: float = 3.5e-4,
        batch: int = 10,
        epochs: int = 4,
        clip: float = 0.2,
        entropy_weight: float = 1e-5,
        baseline_decay: float = 0.95,
        normalize: bool = False,
        elite: int = 0,
        elite_weight: float = 0.0,
    ):
        super().__init__(cardinalities, seed)
        if algorithm not in ("ppo", "reinforce"):
            raise ValueError(f"algorithm must be ppo or reinforce (got {algorithm!r})")
        self.name = algorithm
        torch.manual_seed(seed)
        self.policy = TokenPolicy(self.cardinalities, hidden)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.batch_size, self.epochs, self.clip = batch, epochs, clip
        self.entropy_weight, self.baseline_decay = entropy_weight, baseline_decay
        self.normalize, self.elite, self.elite_weight = normalize, elite, elite_weight
        self.baseline: float | None = None
        self.spread: float | None = None  # moving std of rewards: the advantages' unit when normalize
        self.elites: list[tuple[float, list[int]]] = []  # the best distinct proposals so far, best first
        self.buffer: list[tuple[list[int], float, float]] = []

    @torch.no_grad()
    def ask(self) -> Proposal:
        actions, logp, _ = self.policy(generator=self.generator)
        return Proposal(actions[0].tolist(), {"logp": float(logp[0])})

    def tell(self, proposal, reward, outcome=None) -> bool:
        self.buffer.append((list(proposal.indices), float(proposal.meta.get("logp", 0.0)), float(reward)))
        if len(self.buffer) < self.batch_size:
            return False
        self._update()
        return True

    def _update(self) -> None:
        actions = torch.tensor([b[0] for b in self.buffer])
        old_logp = torch.tensor([b[1] for b in self.buffer])
        rewards = torch.tensor([b[2] for b in self.buffer])
        if self.baseline is None:
            self.baseline, self.spread = float(rewards.mean()), float(rewards.std()) if len(rewards) > 1 else 0.0
        advantages = rewards - self.baseline
        if self.normalize:
            advantages = advantages / max(self.spread, 1e-8)
        d = self.baseline_decay
        for r in rewards.tolist():  # moving-average baseline (and spread) over finished trials
            self.spread = (d * self.spread**2 + (1 - d) * (r - self.baseline) ** 2) ** 0.5
            self.baseline = d * self.baseline + (1 - d) * r
        self._remember_elites()
        elites = torch.tensor([e[1] for e in self.elites]) if self.elite and self.elite_weight else None
        for _ in range(self.epochs if self.name == "ppo" else 1):
            _, logp, entropy = self.policy(actions)
            if self.name == "ppo":
                ratio = torch.exp(logp - old_logp)
                objective = torch.min(ratio * advantages, ratio.clamp(1 - self.clip, 1 + self.clip) * advantages)
            else:
                objective = logp * advantages
            loss = -(objective.mean() + self.entropy_weight * entropy.mean())
            if elites is not None:  # priority-queue training: also raise the likelihood of the best seen
                loss = loss - self.elite_weight * self.policy(elites)[1].mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        self.buffer.clear()
        self.updates += 1

    def _remember_elites(self) -> None:
        if not self.elite:
            return
        best = {tuple(a): r for r, a in self.elites}
        for actions, _, reward in self.buffer:
            best[tuple(actions)] = max(reward, best.get(tuple(actions), reward))
        ranked = sorted(best.items(), key=lambda kv: -kv[1])[: self.elite]
        self.elites = [(r, list(a)) for a, r in ranked]

    def state_dict(self) -> dict:
        return {
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "baseline": self.baseline,
            "spread": self.spread,
            "elites": list(self.elites),
            "buffer": list(self.buffer),
            "updates": self.updates,
        }

    def load_state_dict(self, state) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.baseline = state["baseline"]
        self.spread = state.get("spread")
        self.elites = [(r, list(a)) for r, a in state.get("elites", [])]
        self.buffer = [tuple(b) for b in state["buffer"]]
        self.updates = state["updates"]
