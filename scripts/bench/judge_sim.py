"""How often the canary judge is right, by seeded simulation: `python -m scripts.bench.judge_sim`.

One window (2,000 calls per arm, the default gates): pass / marginal / fail per scenario,
healthy canaries (the same latency and errors as stable) and harmful ones. Whole rollouts
(the default policy, a look every 10 s): how often a healthy canary is ever rolled back, how
long promoting it takes at 50 requests/s, and how long rolling back a canary that fails 5%
of its calls takes at 5 requests/s on the canary.

Latency is log-normal (median 20 ms, `sigma` its spread in log space); errors are Bernoulli;
every number comes from `numpy.random.default_rng(seed)`.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from agent.analysis.judge import Look, VersionSample, judge
from agent.rollout_judge import BLOCK_S
from agent.rollout_machine import due, judged, start
from serve.model_config import RolloutGates, RolloutPolicy

MEDIAN_MS = 20.0


@dataclass(frozen=True)
class Arm:
    """How one version behaves."""

    error_rate: float = 0.001
    sigma: float = 0.5
    median_factor: float = 1.0
    sigma_factor: float = 1.0
    slow_share: float = 0.0  # calls `slow_factor` times slower
    slow_factor: float = 5.0
    disagreement: float = 0.0  # against stable, on paired answers

    def latencies(self, rng: np.random.Generator, n: int, load: float = 1.0) -> np.ndarray:
        logs = rng.normal(
            math.log(MEDIAN_MS * self.median_factor * load), self.sigma * self.sigma_factor, n
        )
        latencies = np.exp(logs)
        if self.slow_share:
            latencies[rng.random(n) < self.slow_share] *= self.slow_factor
        return latencies

    def draw(self, rng: np.random.Generator, n: int) -> VersionSample:
        errors = int(rng.binomial(n, self.error_rate))
        return VersionSample(latencies_ms=self.latencies(rng, n), errors=errors)


@dataclass(frozen=True)
class Scenario:
    name: str
    healthy: bool
    canary: Arm
    stable: Arm = field(default_factory=Arm)
    goal: bool = True  # one of the goals (the others are shown, not counted)


def scenarios() -> list[Scenario]:
    out = []
    for errors in (0.001, 0.01):
        for sigma in (0.2, 0.5, 1.0):
            arm = Arm(error_rate=errors, sigma=sigma)
            out.append(Scenario(f"healthy: errors {errors:.1%}, sigma {sigma}", True, arm, arm))
    base = Arm()
    out += [
        Scenario("median +20%", False, Arm(median_factor=1.2)),
        Scenario("variance x2", False, Arm(sigma_factor=math.sqrt(2))),
        Scenario("errors 0 -> 0.5%", False, Arm(error_rate=0.005), Arm(error_rate=0.0)),
        Scenario("errors 1% -> 2%", False, Arm(error_rate=0.02), Arm(error_rate=0.01)),
        Scenario("2% of calls 5x slower", False, Arm(slow_share=0.02)),
        # Beyond the goals: a wider latency hides a slow 2% (within max_tail_ratio here).
        Scenario(
            "median +20%, sigma 1.0",
            False,
            Arm(sigma=1.0, median_factor=1.2),
            Arm(sigma=1.0),
            goal=False,
        ),
        Scenario(
            "2% 5x slower, sigma 1.0",
            False,
            Arm(sigma=1.0, slow_share=0.02),
            Arm(sigma=1.0),
            goal=False,
        ),
        Scenario("disagrees on 5% (400 pairs)", False, Arm(disagreement=0.05), base, goal=False),
    ]
    return out


def one_window(scenario: Scenario, runs: int, seed: int, n: int = 2000) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    gates = RolloutGates()
    counts = {"pass": 0, "marginal": 0, "fail": 0}
    pairs = n // 5
    for _ in range(runs):
        canary = scenario.canary.draw(rng, n)
        stable = scenario.stable.draw(rng, n)
        differ = int(rng.binomial(pairs, scenario.canary.disagreement))
        counts[judge(canary, stable, differ, pairs, gates).verdict] += 1
    return {k: v / runs for k, v in counts.items()}


T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Evidence:
    """Every call of one arm since the rollout began, as agent/rollout_judge.py gathers it."""

    chunks: list[np.ndarray] = field(default_factory=list)
    blocks: list[np.ndarray] = field(default_factory=list)
    errors: int = 0

    def add(
        self, arm: Arm, rng: np.random.Generator, n: int, load: float = 1.0, block: int = 0
    ) -> None:
        self.chunks.append(arm.latencies(rng, n, load))
        self.blocks.append(np.full(n, block))
        self.errors += int(rng.binomial(n, arm.error_rate))

    def sample(self, blocked: bool = True) -> VersionSample:
        if not self.chunks:
            return VersionSample(latencies_ms=np.empty(0), errors=self.errors)
        return VersionSample(
            latencies_ms=np.concatenate(self.chunks),
            errors=self.errors,
            blocks=np.concatenate(self.blocks) if blocked else None,
        )


@dataclass(frozen=True)
class Outcome:
    state: str  # done, rolled_back, paused (or running: out of time)
    seconds: float  # from the start to the decision
    since_users: float | None  # from the first step users see (None: decided before it)


@dataclass(frozen=True)
class Host:
    """How the host's load moves every call's latency: by a factor that changes with each
    block of `BLOCK_S` seconds, its log an AR(1) series with standard deviation `load_sigma`
    and `memory` the correlation of one block with the next (0: a steady host; measured on
    this machine under 50 requests/s, 0.24 to 0.3 from one half-minute to the next, in spells of a
    minute or two). The judge compares within those blocks unless `blocked` is off (as it
    did before it had them)."""

    load_sigma: float = 0.0
    memory: float = 0.7
    blocked: bool = True

    def next_load(self, log_load: float, rng: np.random.Generator) -> float:
        if not self.load_sigma:
            return 0.0
        step = self.load_sigma * math.sqrt(1 - self.memory**2)
        return self.memory * log_load + float(rng.normal(0.0, step))


def whole_rollout(
    scenario: Scenario,
    rps: float,
    rng: np.random.Generator,
    limit_s: float = 3600,
    host: Host = Host(),
) -> Outcome:
    """One rollout under the default policy, driven by the real state machine and judge:
    calls arrive (Poisson, `rps` in all) between looks, split by the step's weight, with
    `shadow_fraction` of stable's calls copied to the canary (at 100%, the canary's to
    stable); copies are paired answers, and those the canary answered count as its calls
    (as agent/local_log.py's call_part counts them)."""
    policy = RolloutPolicy()
    r, _ = start("m", "canary", "stable", policy, T0, "sim")
    canary, stable = Evidence(), Evidence()
    pairs = disagreements = 0
    t, users_at = 0.0, None
    log_load = float(rng.normal(0.0, host.load_sigma)) if host.load_sigma else 0.0
    load_block = 0
    while r.state == "running" and t < limit_s:
        step = policy.look_every_s
        block = int(t // BLOCK_S)
        if block != load_block:
            log_load, load_block = host.next_load(log_load, rng), block
        load = math.exp(log_load)
        n = int(rng.poisson(rps * step))
        share = r.weight / 100
        to_canary = int(rng.binomial(n, share))
        canary.add(scenario.canary, rng, to_canary, load, block)
        stable.add(scenario.stable, rng, n - to_canary, load, block)
        copied = int(
            rng.binomial(n - to_canary if share < 1 else to_canary, policy.shadow_fraction)
        )
        if share < 1:  # copies answered by the canary are its evidence; stable's are pairs
            canary.add(scenario.canary, rng, copied, load, block)
        pairs += copied
        disagreements += int(rng.binomial(copied, scenario.canary.disagreement))
        if users_at is None and share > 0:
            users_at = t
        t += step
        now = T0 + timedelta(seconds=t)
        if not due(r, now):
            continue
        look = Look(fail=r.looks + 1, passing=r.pass_looks + 1)
        j = judge(
            canary.sample(host.blocked),
            stable.sample(host.blocked),
            disagreements,
            pairs,
            policy.gates,
            look=look,
        )
        r, _ = judged(r, j.verdict, j.metrics, now)
    return Outcome(r.state, t, None if users_at is None else t - users_at)


def rollouts(
    scenario: Scenario, rps: float, runs: int, seed: int, host: Host = Host()
) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    outcomes = [whole_rollout(scenario, rps, rng, host=host) for _ in range(runs)]
    out: dict[str, float] = {
        s: sum(o.state == s for o in outcomes) / runs for s in ("done", "rolled_back", "paused")
    }
    for state in ("done", "rolled_back"):
        times = [o.seconds for o in outcomes if o.state == state]
        out[f"{state}_median_s"] = float(np.median(times)) if times else math.nan
        out[f"{state}_p95_s"] = float(np.percentile(times, 95)) if times else math.nan
    after = [o.since_users or 0.0 for o in outcomes if o.state == "rolled_back"]
    out["rolled_back_after_users_p95_s"] = float(np.percentile(after, 95)) if after else math.nan
    # The "1% -> 100%": from the first step users see to the promotion.
    walk = [o.since_users or 0.0 for o in outcomes if o.state == "done"]
    out["walk_median_s"] = float(np.median(walk)) if walk else math.nan
    out["walk_p95_s"] = float(np.percentile(walk, 95)) if walk else math.nan
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2000, help="windows per scenario")
    parser.add_argument("--rollouts", type=int, default=300, help="whole rollouts per case")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"one window, 2,000 calls per arm, default gates, {args.runs} windows each")
    print(f"{'scenario':40} {'pass':>7} {'marginal':>9} {'fail':>7}")
    worst = {"healthy_pass": 1.0, "healthy_fail": 0.0, "harmful_pass": 0.0, "harmful_fail": 1.0}
    for i, sc in enumerate(scenarios()):
        r = one_window(sc, args.runs, args.seed + i)
        mark = "" if sc.goal else "  (not a goal)"
        print(f"{sc.name:40} {r['pass']:7.1%} {r['marginal']:9.1%} {r['fail']:7.1%}{mark}")
        if not sc.goal:
            continue
        if sc.healthy:
            worst["healthy_pass"] = min(worst["healthy_pass"], r["pass"])
            worst["healthy_fail"] = max(worst["healthy_fail"], r["fail"])
        else:
            worst["harmful_pass"] = max(worst["harmful_pass"], r["pass"])
            worst["harmful_fail"] = min(worst["harmful_fail"], r["fail"])
    print(f"({time.perf_counter() - started:.0f} s)")
    policy = RolloutPolicy()
    print(
        f"\nwhole rollouts, default policy (shadow stage, then {policy.steps}%, a look every"
        f" {policy.look_every_s:g} s, dwell {policy.min_dwell_s:g} s), {args.rollouts} each"
    )
    print(
        f"{'scenario':34} {'rps':>4} {'promoted':>9} {'rolled back':>12} {'paused':>7}"
        f" {'promote med/p95 s':>18} {'1%->100% med/p95':>17} {'roll back med/p95 s':>20}"
    )
    cases = [
        ("healthy: errors 0.1%, sigma 0.5", 50.0, Scenario("", True, Arm(), Arm())),
        ("healthy: errors 1%, sigma 0.5", 50.0, Scenario("", True, Arm(0.01), Arm(0.01))),
        (
            "healthy: errors 0.1%, sigma 1.0",
            50.0,
            Scenario("", True, Arm(sigma=1.0), Arm(sigma=1.0)),
        ),
        ("healthy at 5 rps", 5.0, Scenario("", True, Arm(), Arm())),
        # 10 requests/s in all: half of stable's copied, 5/s on the canary from the start.
        ("canary fails 5% (5 rps on it)", 10.0, Scenario("", False, Arm(0.05), Arm())),
        ("canary fails 5%, 50 rps", 50.0, Scenario("", False, Arm(0.05), Arm())),
        ("canary median +20%", 50.0, Scenario("", False, Arm(median_factor=1.2), Arm())),
        ("canary errors 0 -> 0.5%", 50.0, Scenario("", False, Arm(0.005), Arm(0.0))),
        ("canary errors 1% -> 2%", 50.0, Scenario("", False, Arm(0.02), Arm(0.01))),
        ("2% of canary calls 5x slower", 50.0, Scenario("", False, Arm(slow_share=0.02), Arm())),
    ]
    # A host whose load moves latency by ~30% from one half-minute to the next (as measured
    # here under load), judged in blocks and, the anchor, on all calls at once.
    moving = [
        ("healthy, moving load, blocks", 50.0, Scenario("", True, Arm(), Arm()), Host(0.3)),
        (
            "  the same, one block (before)",
            50.0,
            Scenario("", True, Arm(), Arm(), goal=False),
            Host(0.3, blocked=False),
        ),
        (
            "median +20%, moving load",
            50.0,
            Scenario("", False, Arm(median_factor=1.2), Arm()),
            Host(0.3),
        ),
    ]
    figures: dict[str, float] = {}
    all_cases = [(name, rps, sc, Host()) for name, rps, sc in cases] + moving
    for i, (name, rps, sc, host) in enumerate(all_cases):
        r = rollouts(sc, rps, args.rollouts, args.seed + 100 + i, host)
        print(
            f"{name:34} {rps:4.0f} {r['done']:9.1%} {r['rolled_back']:12.1%} {r['paused']:7.1%}"
            f" {r['done_median_s']:8.0f}/{r['done_p95_s']:<9.0f}"
            f" {r['walk_median_s']:7.0f}/{r['walk_p95_s']:<9.0f}"
            f" {r['rolled_back_median_s']:9.0f}/{r['rolled_back_p95_s']:<9.0f}"
        )
        if not sc.goal:
            figures["moving_load_false_rollback_unblocked"] = r["rolled_back"]
        elif sc.healthy:
            figures["false_rollback"] = max(figures.get("false_rollback", 0.0), r["rolled_back"])
        else:
            figures["harmful_promoted"] = max(figures.get("harmful_promoted", 0.0), r["done"])
        if i == 0:
            figures["promote_p95_s"] = r["done_p95_s"]
            figures["walk_1_to_100_p95_s"] = r["walk_p95_s"]
        if i == 4:
            figures["rollback_p95_s"] = r["rolled_back_p95_s"]
            figures["rollback_after_users_p95_s"] = r["rolled_back_after_users_p95_s"]
    print(f"({time.perf_counter() - started:.0f} s)")
    print(
        "RESULT judge_sim "
        + " ".join(f"{k}={v:.3f}" for k, v in worst.items())
        + " "
        + " ".join(f"{k}={v:.3f}" for k, v in figures.items())
        + f" runs={args.runs} rollouts={args.rollouts}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
